/* onnx/proto — bounded ONNX ModelProto reading and atomic writing. */
#include "proto.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* Each block carries its size in a header, so freeing gives the budget back. */
typedef union {
    size_t n;
    max_align_t align;
} onnx_hdr;

struct onnx_file {
    Onnx__ModelProto *model;
    ProtobufCAllocator alloc; /* protobuf-c frees through the allocator it unpacked with */
    size_t used, limit;
    int over; /* an allocation was refused for the budget */
};

static void *budget_alloc(void *ctx, size_t n)
{
    onnx_file *f = ctx;
    if (n > f->limit - f->used || n > SIZE_MAX - sizeof(onnx_hdr)) {
        f->over = 1;
        return NULL;
    }
    onnx_hdr *h = kd_malloc(sizeof *h + n);
    if (!h)
        return NULL;
    h->n = n;
    f->used += n;
    return h + 1;
}

static void budget_free(void *ctx, void *p)
{
    onnx_file *f = ctx;
    if (!p)
        return;
    onnx_hdr *h = (onnx_hdr *)p - 1;
    f->used -= h->n;
    kd_free(h);
}

onnx_file *onnx_file_unpack(const uint8_t *buf, size_t n, size_t max_alloc, kd_err *e)
{
    if (!buf || n == 0) {
        kd_err_set(e, KD_EFORMAT, "onnx: empty file (not an ONNX model)");
        return NULL;
    }
    onnx_file *f = kd_calloc(1, sizeof *f);
    if (!f) {
        kd_err_set(e, KD_ENOMEM, "onnx: out of memory");
        return NULL;
    }
    if (max_alloc)
        f->limit = max_alloc;
    else
        f->limit = n > (SIZE_MAX - ((size_t)1 << 20)) / 8 ? SIZE_MAX : 8 * n + ((size_t)1 << 20);
    f->alloc.alloc = budget_alloc;
    f->alloc.free = budget_free;
    f->alloc.allocator_data = f;
    f->model = onnx__model_proto__unpack(&f->alloc, n, buf);
    if (!f->model) {
        if (f->over)
            kd_err_set(e, KD_EFORMAT,
                       "onnx: parsing would need more than %zu bytes of memory (corrupt or hostile file)",
                       f->limit);
        else
            kd_err_set(e, KD_EFORMAT,
                       "onnx: not a valid ONNX model (protobuf parse failed: truncated, corrupt or not ONNX)");
        kd_free(f);
        return NULL;
    }
    return f;
}

onnx_file *onnx_file_read(const char *path, kd_err *e)
{
    uint8_t *buf = NULL;
    size_t n = 0;
    if (kd_read_file(path, ONNX_MAX_FILE, &buf, &n, e) != KD_OK)
        return NULL;
    onnx_file *f = onnx_file_unpack(buf, n, 0, e);
    kd_free(buf);
    if (!f && e)
        snprintf(e->file, sizeof e->file, "%s", path); /* printed as "PATH: msg" */
    return f;
}

const Onnx__ModelProto *onnx_file_model(const onnx_file *f)
{
    return f->model;
}

void onnx_file_free(onnx_file *f)
{
    if (!f)
        return;
    onnx__model_proto__free_unpacked(f->model, &f->alloc);
    kd_free(f);
}

int onnx_model_write(const char *path, const Onnx__ModelProto *m, kd_err *e)
{
    size_t n = onnx__model_proto__get_packed_size(m);
    uint8_t *buf = kd_malloc(n ? n : 1);
    if (!buf)
        return kd_err_set(e, KD_ENOMEM, "onnx: out of memory serializing %zu bytes", n);
    size_t w = onnx__model_proto__pack(m, buf);
    int rc = w == n ? kd_write_atomic(path, buf, n, e)
                    : kd_err_set(e, KD_ERUNTIME, "onnx: serializer wrote %zu of %zu bytes", w, n);
    kd_free(buf);
    return rc;
}
