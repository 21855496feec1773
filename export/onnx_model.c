/* export_onnx: the graph around the layers — the input (pixels / 255), the
 * model's standardisation, the layers (onnx_layers.c), logits and softmax
 * probabilities — and the model's metadata. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../onnx/build.h"
#include "internal.h"

enum { T_FLOAT = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT };

int export_onnx_check(const nn_model *m, kd_err *e)
{
    for (int i = 0; i < m->nlayers; i++)
        if (ox_layer_check(m, i, e))
            return KD_ECONFIG;
    if (!isfinite(m->in_mean) || !isfinite(m->in_std) || !(m->in_std > 0))
        return kd_err_set(e, KD_ECONFIG, "the model's input normalisation (mean %g, std %g) is "
                          "not finite", (double)m->in_mean, (double)m->in_std);
    return KD_OK;
}

/* input -> Sub(mean) -> Mul(1 / std): kdbench's data_batch computes
 * (x - mean) * (1 / std) with the reciprocal rounded to float once, so the
 * standardized values are bit-identical to kdbench's. */
static void emit_input(ox *x, const nn_model *m)
{
    const nn_shape s = m->in;
    x->rank = s.h == 1 && s.w == 1 ? 2 : 4;
    x->shape = s;
    const int64_t d4[4] = {ONNX_DIM_N, s.c, s.h, s.w}, d2[2] = {ONNX_DIM_N, s.c};
    onnx_graph_input(x->g, "input", T_FLOAT, x->rank == 4 ? d4 : d2, x->rank);
    onnx_graph_scalar_f32(x->g, "input.mean", m->in_mean);
    onnx_graph_scalar_f32(x->g, "input.inv_std", 1.0f / m->in_std);
    snprintf(x->cur, sizeof x->cur, "input");
    const char *a[2] = {"input", "input.mean"}, *ao[1] = {"input.centered"};
    onnx_graph_node(x->g, "Sub", "standardize.sub", a, 2, ao, 1);
    const char *b[2] = {"input.centered", "input.inv_std"}, *bo[1] = {"input.standardized"};
    x->last = onnx_graph_node(x->g, "Mul", "standardize.mul", b, 2, bo, 1);
    snprintf(x->cur, sizeof x->cur, "input.standardized");
}

/* The last activation renamed "logits" (flattened first if spatial), then
 * Softmax over the classes as "probs". */
static void emit_outputs(ox *x, const nn_model *m)
{
    ox_flatten(x, "logits");
    onnx_node_rename_output(x->g, x->last, 0, "logits");
    const char *in[1] = {"logits"}, *out[1] = {"probs"};
    onnx_node_int(x->g, onnx_graph_node(x->g, "Softmax", "softmax", in, 1, out, 1), "axis", 1);
    const int64_t d[2] = {ONNX_DIM_N, m->nclasses};
    onnx_graph_output(x->g, "probs", T_FLOAT, d, 2);
    onnx_graph_output(x->g, "logits", T_FLOAT, d, 2);
}

/* The layers' formats, "fp32 int8 int8 ...", for the metadata. */
static void formats_of(const nn_model *m, char *buf, size_t n)
{
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < m->nlayers && at + 1 < n; i++) {
        const char *f = nn_layer_format(&m->layers[i]);
        if (!strcmp(f, "-"))
            continue;
        int w = snprintf(buf + at, n - at, "%s%s:%s", at ? " " : "", m->layers[i].spec.name, f);
        at += w > 0 ? (size_t)w : 0;
    }
}

static void emit_meta(ox *x, const nn_model *m, const char *source)
{
    char text[1024];
    onnx_graph_producer(x->g, "kdbench", KD_VERSION);
    snprintf(text, sizeof text,
             "Exported by kdbench from %s.  Input \"input\": float32 pixels scaled x/255 "
             "(%s), standardized inside ((x - %g) / %g).  Outputs \"probs\" (softmax) and "
             "\"logits\", [N, %d].",
             source ? source : "a model in memory",
             x->rank == 4 ? "[N, C, H, W]" : "[N, features]", (double)m->in_mean,
             (double)m->in_std, m->nclasses);
    onnx_graph_doc(x->g, text);
    if (source)
        onnx_graph_meta(x->g, "kdbench.source", source);
    formats_of(m, text, sizeof text);
    onnx_graph_meta(x->g, "kdbench.formats", text);
    snprintf(text, sizeof text, "pixels / 255, then (x - %.9g) / %.9g inside the graph",
             (double)m->in_mean, (double)m->in_std);
    onnx_graph_meta(x->g, "kdbench.input", text);
}

int export_onnx(const nn_model *m, const char *path, const char *source,
                export_onnx_notes *notes, kd_err *e)
{
    if (export_onnx_check(m, e))
        return KD_ECONFIG;
    export_onnx_notes scratch;
    memset(&scratch, 0, sizeof scratch);
    ox x = {.notes = notes ? notes : &scratch};
    memset(x.notes, 0, sizeof *x.notes);
    x.g = onnx_graph_new("kdbench", EXPORT_ONNX_IR, EXPORT_ONNX_OPSET, e);
    if (!x.g)
        return KD_ENOMEM;
    emit_input(&x, m);
    int input_rank = x.rank;
    int rc = KD_OK;
    for (int i = 0; rc == KD_OK && i < m->nlayers; i++)
        rc = ox_layer(&x, m, i, e);
    if (rc == KD_OK) {
        int out_rank = x.rank;
        x.rank = input_rank; /* the doc string describes the input */
        emit_meta(&x, m, source);
        x.rank = out_rank;
        emit_outputs(&x, m);
        rc = onnx_graph_write(x.g, path, e);
    }
    onnx_graph_free(x.g);
    return rc;
}
