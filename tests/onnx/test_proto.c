/* onnx/proto: a ModelProto built here survives write + read; truncated,
 * garbage and over-budget inputs are refused with a message, never a crash. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../onnx/proto.h"
#include "../kdtest.h"

/* A one-node model: Relu from "x" to "y", with one 2x3 float initializer. */
typedef struct {
    Onnx__ModelProto model;
    Onnx__GraphProto graph;
    Onnx__NodeProto node, *nodes[1];
    Onnx__TensorProto init, *inits[1];
    Onnx__OperatorSetIdProto opset, *opsets[1];
    char *in[1], *out[1];
    int64_t dims[2];
    float data[6];
} tiny_model;

static void tiny_build(tiny_model *t)
{
    memset(t, 0, sizeof *t);
    onnx__model_proto__init(&t->model);
    onnx__graph_proto__init(&t->graph);
    onnx__node_proto__init(&t->node);
    onnx__tensor_proto__init(&t->init);
    onnx__operator_set_id_proto__init(&t->opset);
    t->model.has_ir_version = 1;
    t->model.ir_version = 8;
    t->model.producer_name = "kdbench-test";
    t->opset.has_version = 1;
    t->opset.version = 13;
    t->opsets[0] = &t->opset;
    t->model.n_opset_import = 1;
    t->model.opset_import = t->opsets;
    t->in[0] = "x";
    t->out[0] = "y";
    t->node.op_type = "Relu";
    t->node.name = "relu0";
    t->node.n_input = 1;
    t->node.input = t->in;
    t->node.n_output = 1;
    t->node.output = t->out;
    t->nodes[0] = &t->node;
    t->graph.name = "g";
    t->graph.n_node = 1;
    t->graph.node = t->nodes;
    t->dims[0] = 2;
    t->dims[1] = 3;
    for (int i = 0; i < 6; i++)
        t->data[i] = (float)i - 2.5f;
    t->init.name = "w";
    t->init.has_data_type = 1;
    t->init.data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->init.n_dims = 2;
    t->init.dims = t->dims;
    t->init.n_float_data = 6;
    t->init.float_data = t->data;
    t->inits[0] = &t->init;
    t->graph.n_initializer = 1;
    t->graph.initializer = t->inits;
    t->model.graph = &t->graph;
}

START_TEST(round_trip)
{
    tiny_model t;
    tiny_build(&t);
    char dir[512], path[600];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/m.onnx", dir);
    kd_err e = {0};
    ck_assert_int_eq(onnx_model_write(path, &t.model, &e), KD_OK);
    onnx_file *f = onnx_file_read(path, &e);
    ck_assert_msg(f, "%s", e.msg);
    const Onnx__ModelProto *m = onnx_file_model(f);
    ck_assert_int_eq(m->ir_version, 8);
    ck_assert_str_eq(m->producer_name, "kdbench-test");
    ck_assert_ptr_nonnull(m->graph);
    ck_assert_uint_eq(m->graph->n_node, 1);
    ck_assert_str_eq(m->graph->node[0]->op_type, "Relu");
    ck_assert_uint_eq(m->graph->n_initializer, 1);
    const Onnx__TensorProto *w = m->graph->initializer[0];
    ck_assert_uint_eq(w->n_dims, 2);
    ck_assert_int_eq(w->dims[1], 3);
    ck_assert_uint_eq(w->n_float_data, 6);
    ck_assert(memcmp(w->float_data, t.data, sizeof t.data) == 0);
    onnx_file_free(f);
}
END_TEST

/* Every proper prefix of a valid file is refused or parses to a model
 * (protobuf has no end marker, so a prefix ending between fields is a valid
 * smaller message); none crashes and each refusal says why. */
START_TEST(truncated_and_garbage)
{
    tiny_model t;
    tiny_build(&t);
    size_t n = onnx__model_proto__get_packed_size(&t.model);
    uint8_t *buf = malloc(n);
    ck_assert_uint_eq(onnx__model_proto__pack(&t.model, buf), n);
    int refused = 0;
    for (size_t k = 0; k < n; k++) {
        kd_err e = {0};
        onnx_file *f = onnx_file_unpack(buf, k, 0, &e);
        if (!f) {
            refused++;
            ck_assert_int_eq(e.code, KD_EFORMAT);
            ck_assert(strlen(e.msg) > 0);
        }
        onnx_file_free(f);
    }
    ck_assert_int_gt(refused, (int)n / 2); /* cutting inside a field must be caught */
    kd_err e = {0};
    const uint8_t junk[] = "\x89PNG\r\n\x1a\n not an onnx model at all";
    ck_assert_ptr_null(onnx_file_unpack(junk, sizeof junk, 0, &e));
    ck_assert(strstr(e.msg, "not a valid ONNX model") != NULL);
    free(buf);
}
END_TEST

/* A length prefix claiming more bytes than a small budget allows is refused
 * as over budget rather than allocated. */
START_TEST(budget)
{
    tiny_model t;
    tiny_build(&t);
    size_t n = onnx__model_proto__get_packed_size(&t.model);
    uint8_t *buf = malloc(n);
    onnx__model_proto__pack(&t.model, buf);
    kd_err e = {0};
    ck_assert_ptr_null(onnx_file_unpack(buf, n, 64, &e));
    ck_assert(strstr(e.msg, "bytes of memory") != NULL);
    onnx_file *f = onnx_file_unpack(buf, n, 0, &e);
    ck_assert_ptr_nonnull(f);
    onnx_file_free(f);
    free(buf);
}
END_TEST

START_TEST(missing_file)
{
    kd_err e = {0};
    ck_assert_ptr_null(onnx_file_read("/nonexistent/dir/m.onnx", &e));
    ck_assert(strstr(e.file, "m.onnx") != NULL);
    /* a file that is there but is not ONNX names its path too */
    char dir[512], path[600];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/bad.onnx", dir);
    kdt_write(path, "\xff\xff\xff", 3);
    ck_assert_ptr_null(onnx_file_read(path, &e));
    ck_assert(strstr(e.file, "bad.onnx") != NULL);
    ck_assert_int_eq(e.code, KD_EFORMAT);
}
END_TEST

Suite *suite_onnx_proto(void)
{
    Suite *s = suite_create("onnx_proto");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, truncated_and_garbage);
    tcase_add_test(tc, budget);
    tcase_add_test(tc, missing_file);
    suite_add_tcase(s, tc);
    return s;
}
