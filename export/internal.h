/* export's private shared declarations; never included from outside export/. */
#ifndef KD_EXPORT_INTERNAL_H
#define KD_EXPORT_INTERNAL_H

#include <stdint.h>

#include "export.h"

/* Helpers the generated model.c may need; each is emitted only when a layer
 * uses it (-Wunused-function would reject the file otherwise). */
enum {
    CG_DENSE = 1u << 0,
    CG_CSR8 = 1u << 1,  /* fp32 CSR with uint8_t / uint16_t / uint32_t columns */
    CG_CSR16 = 1u << 2,
    CG_CSR32 = 1u << 3,
    CG_Q8 = 1u << 4,    /* static int8 */
    CG_DQ8 = 1u << 5,   /* dynamic int8 */
    CG_Q4 = 1u << 6,
    CG_QCSR = 1u << 7,
    CG_CONV = 1u << 8,
    CG_POOL = 1u << 9,
    CG_BN = 1u << 10,
    CG_RELU = 1u << 11,
    CG_QL = 1u << 12,   /* int3, int2 */
    CG_QCSRS8 = 1u << 13, /* csr-int8-static */
    CG_QCSRD8 = 1u << 14, /* csr-int8-dyn */
};

/* The generator: model.c's arrays (data) and the body of PREFIX_logits
 * (run), which moves the activation between two static buffers. */
typedef struct {
    kd_buf data, run;
    unsigned need;   /* CG_* helpers used */
    size_t max_act;  /* floats in the largest activation */
    size_t max_q;    /* bytes of int8 input scratch */
    int cur;         /* buffer (0 or 1) holding the current activation */
    int bad;         /* a value could not be written (non-finite weight) */
    char bad_what[128];
} cg;

/* printf appended to b (failure: b->failed). */
void cg_printf(kd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A float as the shortest decimal C literal that reads back to the same
 * float ("0.1f", "-3e-05f", "0"); NaN/inf set g->bad (what names it). */
void cg_float(cg *g, kd_buf *b, float v, const char *what);
/* static const arrays, 16 to 24 values per line. */
void cg_floats(cg *g, const char *name, const float *v, size_t n, const char *what);
typedef enum { CG_I8, CG_U8, CG_U16, CG_I32, CG_U32 } cg_int_type;
void cg_ints(cg *g, cg_int_type t, const char *name, const void *v, size_t n);

/* Emits layer i of m (arrays into data, calls into run); the caller checked
 * it with cg_layer_check.  KD_ENOMEM / KD_EFORMAT (payload unreadable). */
int cg_layer(cg *g, const nn_model *m, int i, kd_err *e);
/* A compressed layer (cg_layer_check passed) from its payload. */
int cg_payload(cg *g, const nn_layer *l, int i, kd_err *e);
/* Appends ", kd_act[cur], kd_act[1 - cur]);" to the run and swaps. */
void cg_io_swap(cg *g);
/* 0, or KD_ECONFIG naming why layer i cannot be exported. */
int cg_layer_check(const nn_model *m, int i, kd_err *e);
/* main.c, the example program, for prefix p (P upper case). */
void cg_main(kd_buf *b, const char *p, const char *P);
/* The helper functions of g->need, as C text, appended to b. */
void cg_helpers(kd_buf *b, unsigned need);

/* ---- shared by both exports ------------------------------------------------------ */

/* An int8 / int8-dyn layer's payload (payload_q8.c), plus what the C needs
 * derived from it: row sums and the requantization multipliers. */
typedef struct {
    uint32_t m, k, flags; /* flags: 1 int8 output, 2 relu fused */
    float in_scale, out_scale;
    int32_t in_zero, out_zero;
    float *w_scale;
    int32_t *bias, *row_sum, *mult, *shift;
    int8_t *w; /* m x k row-major */
} export_q8;

/* Reads l's payload through l->ops->save (what names the layer in
 * messages); KD_EFORMAT / KD_ENOMEM, q zeroed on failure.  Free with
 * export_q8_free (accepts a zeroed q). */
int export_q8_read(const nn_layer *l, const char *what, export_q8 *q, kd_err *e);
void export_q8_free(export_q8 *q);

/* A csr-int8 payload's arrays (payload_q8.c): offsets from the row lengths,
 * delta-coded columns, values, row scales, and each row's sum of values
 * (mod 2^32, what csr-int8-static's kind derives at load). */
typedef struct {
    uint32_t m, k, nnz;
    uint8_t *delta;
    int8_t *val;
    float *scale;
    int32_t *rp, *row_sum;
} export_qcsr;

/* Parses csr-int8's payload from r (zlib streams; KD_EFORMAT naming what
 * is wrong, a zeroed a on failure); free with export_qcsr_free. */
int export_qcsr_parse(const nn_layer *l, const char *what, kd_rd *r, export_qcsr *a, kd_err *e);
/* csr-int8-static's: its input quantizer (*xs, *xz), then csr-int8's. */
int export_qcsr_s8_parse(const nn_layer *l, const char *what, kd_rd *r, float *xs, int32_t *xz,
                         export_qcsr *a, kd_err *e);
/* The same from l's own payload (ops->save), as export_q8_read. */
int export_qcsr_s8_read(const nn_layer *l, const char *what, float *xs, int32_t *xz,
                        export_qcsr *a, kd_err *e);
/* csr-int8's (or csr-int8-dyn's, the same payload) from l's own payload. */
int export_qcsr_read(const nn_layer *l, const char *what, export_qcsr *a, kd_err *e);
void export_qcsr_free(export_qcsr *a);

/* ---- ONNX (onnx_model.c, onnx_layers.c) ---------------------------------------- */

struct onnx_graph;
struct Onnx__NodeProto;

/* The graph being built and where the activation stands. */
typedef struct {
    struct onnx_graph *g;
    char cur[96];                /* the current activation's tensor name */
    int rank;                    /* 2 ([N, F]) or 4 ([N, C, H, W]) */
    nn_shape shape;              /* its per-sample shape */
    struct Onnx__NodeProto *last; /* the node that produced cur */
    export_onnx_notes *notes;
} ox;

/* 0, or KD_ECONFIG naming why layer i cannot be exported to ONNX. */
int ox_layer_check(const nn_model *m, int i, kd_err *e);
/* Emits layer i (checked); KD_ENOMEM / KD_EFORMAT. */
int ox_layer(ox *x, const nn_model *m, int i, kd_err *e);
/* Flattens a rank-4 activation to [N, C*H*W] (nothing when rank 2). */
void ox_flatten(ox *x, const char *name);

#endif
