/* The storage choice of compress_to_sparse: every dense layer's decision
 * comes with its reason, consistent with what was built; the SMALLER policy
 * and the margin rule (which layers win on time is timing, so not asserted). */
#include <string.h>

#include "../../compress/compress.h"
#include "../kdtest.h"

static nn_model *two_layers(float sparsity0)
{
    const nn_layer_spec s[] = {{.kind = NN_DENSE, .units = 64}, {.kind = NN_RELU},
                               {.kind = NN_DENSE, .units = 10}};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){96, 1, 1}, s, 3, NULL, &e);
    ck_assert_msg(m != NULL, "%s", e.msg);
    nn_model_init(m, 5);
    compress_override ov = {.pattern = "dense1", .sparsity = sparsity0};
    compress_prune_spec ps = {.sparsity = 0.0f, .overrides = &ov, .noverrides = 1};
    ck_assert_int_eq(compress_prune_magnitude(m, &ps, NULL, &e), KD_OK);
    return m;
}

START_TEST(test_smaller_policy_reasons)
{
    kd_err e = {0};
    nn_model *m = two_layers(0.9f);
    compress_sparse_opts o = {.policy = COMPRESS_SPARSE_SMALLER};
    compress_choice ch[3];
    nn_model *s = compress_to_sparse(m, &o, ch, &e);
    ck_assert_msg(s != NULL, "%s", e.msg);
    ck_assert_int_eq(ch[0].converted, 1); /* 90% zeros: CSR is smaller */
    ck_assert_str_eq(ch[0].why, "csr (smaller)");
    ck_assert_int_eq(ch[2].converted, 0); /* dense: CSR would be larger */
    ck_assert_str_eq(ch[2].why, "kept dense: CSR would not be smaller");
    ck_assert_str_eq(nn_layer_format(&s->layers[0]), "csr-fp32");
    ck_assert_str_eq(nn_layer_format(&s->layers[2]), "fp32");
    ck_assert_str_eq(ch[1].why, ""); /* relu: nothing to decide */
    nn_model_free(s);
    nn_model_free(m);
}
END_TEST

START_TEST(test_measured_reasons_match_models)
{
    kd_err e = {0};
    nn_model *m = two_layers(0.95f);
    compress_sparse_opts o = {.policy = COMPRESS_SPARSE_MEASURE, .reps = 10};
    compress_choice ch[3];
    nn_model *s = compress_to_sparse(m, &o, ch, &e);
    ck_assert_msg(s != NULL, "%s", e.msg);
    for (int i = 0; i < 3; i += 2) {
        ck_assert(ch[i].dense_us[0] > 0 && ch[i].sparse_us[1] > 0);
        int csr = !strcmp(nn_layer_format(&s->layers[i]), "csr-fp32");
        ck_assert_int_eq(csr, ch[i].converted);
        ck_assert_msg(!strncmp(ch[i].why, csr ? "csr: " : "kept dense: CSR ", csr ? 5 : 16),
                      "layer %d: \"%s\"", i, ch[i].why);
        /* the margin rule: a smaller CSR loses only when dense is faster by it */
        if (!csr && i == 0)
            ck_assert(ch[i].sparse_us[0] > ch[i].dense_us[0] * (1 + COMPRESS_SPARSE_MARGIN) ||
                      ch[i].sparse_us[1] > ch[i].dense_us[1] * (1 + COMPRESS_SPARSE_MARGIN));
    }
    nn_model_free(s);
    nn_model_free(m);
}
END_TEST

Suite *suite_compress_convert(void)
{
    Suite *s = suite_create("compress_convert");
    TCase *t = tcase_create("convert");
    tcase_add_test(t, test_smaller_policy_reasons);
    tcase_add_test(t, test_measured_reasons_match_models);
    suite_add_tcase(s, t);
    return s;
}
