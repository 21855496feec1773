/* Shared fixtures of the serve suites (header-only, static): small models,
 * a server on an ephemeral loopback port, requests, JSON answers. */
#ifndef KD_TEST_SFIX_H
#define KD_TEST_SFIX_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "../../reports/reports.h"
#include "../../serve/serve.h"
#include "../compress/qtest.h"

#define S_IN 32
#define S_OUT 5

/* An fp32 MLP S_IN -> 24 -> 16 -> S_OUT with a non-trivial input normalisation. */
static inline nn_model *sf_model(uint64_t seed)
{
    nn_model *m = qt_mlp(S_IN, 24, 16, S_OUT, seed);
    m->in_mean = 0.25f;
    m->in_std = 0.5f;
    return m;
}

static inline serve_opts sf_opts(void)
{
    serve_opts o = SERVE_DEFAULT_OPTS;
    o.port = 0;
    o.timeout_s = 5;
    return o;
}

/* Starts a server with models[i] named names[i] (takes the models). */
static inline serve_server *sf_start(const serve_opts *o, nn_model **models, const char **names,
                                     int n)
{
    kd_err e = {0};
    serve_server *s = serve_server_new(o, &e);
    ck_assert_msg(s != NULL, "%s", e.msg);
    for (int i = 0; i < n; i++)
        ck_assert_msg(serve_server_add(s, names[i], models[i], 1000 + i, i == 0 ? 0.5 : -1, &e) ==
                          KD_OK, "%s", e.msg);
    ck_assert_msg(serve_server_start(s, &e) == KD_OK, "%s", e.msg);
    ck_assert_int_gt(serve_server_port(s), 0);
    return s;
}

/* One request on a fresh connection; returns the status, the body in ans
 * (may be NULL; kd_buf_free it).  Fails the test when there is no answer. */
static inline int sf_req(int port, const char *method, const char *path, const char *hdr,
                         const char *body, kd_buf *ans)
{
    kd_err e = {0};
    serve_client *c = serve_client_new("127.0.0.1", port, 5, &e);
    ck_assert_msg(c != NULL, "%s", e.msg);
    int status = 0;
    int rc = serve_client_request(c, method, path, hdr, body, body ? strlen(body) : 0, &status,
                                  ans, &e);
    serve_client_free(c);
    ck_assert_msg(rc == KD_OK, "%s %s: %s", method, path, e.msg);
    return status;
}

/* Softmax of one row of m's forward on normalised input x (the reference). */
static inline void sf_reference(nn_model *m, const float *raw, float *p)
{
    float x[S_IN];
    for (int i = 0; i < S_IN; i++)
        x[i] = (raw[i] - m->in_mean) / m->in_std;
    nn_ctx c = {0};
    const float *z = nn_model_forward(m, x, 1, &c);
    ck_assert_ptr_nonnull(z);
    float mx = z[0], s = 0;
    for (int i = 1; i < S_OUT; i++)
        mx = z[i] > mx ? z[i] : mx;
    for (int i = 0; i < S_OUT; i++)
        s += p[i] = expf(z[i] - mx);
    for (int i = 0; i < S_OUT; i++)
        p[i] /= s;
}

/* Row r of a deterministic input set: values in [0, 1] that are k/255. */
static inline void sf_row(int r, float *x)
{
    nn_rng g = nn_rng_stream(100 + (uint64_t)r, NN_STREAM_TEST);
    for (int i = 0; i < S_IN; i++)
        x[i] = (float)nn_rng_below(&g, 256) / 255.0f;
}

/* Ends b's text with a NUL (not counted in len): rep_bprintf does not. */
static inline void sf_nul(kd_buf *b)
{
    kd_buf_put(b, "", 1);
    ck_assert(!b->failed);
    b->len--;
}

/* A v2 infer body for rows rows starting at row r0, FP32 or UINT8. */
static inline void sf_infer_body(kd_buf *b, int r0, int rows, int u8)
{
    b->len = 0;
    rep_bprintf(b, "{\"id\":\"t%d\",\"inputs\":[{\"name\":\"input\",\"shape\":[%d,%d],"
                   "\"datatype\":\"%s\",\"data\":[", r0, rows, S_IN, u8 ? "UINT8" : "FP32");
    for (int r = 0; r < rows; r++) {
        float x[S_IN];
        sf_row(r0 + r, x);
        for (int i = 0; i < S_IN; i++)
            if (u8)
                rep_bprintf(b, "%s%d", r || i ? "," : "", (int)lrintf(x[i] * 255.0f));
            else
                rep_bprintf(b, "%s%.9g", r || i ? "," : "", (double)x[i]);
    }
    rep_bprintf(b, "]}]}");
    sf_nul(b);
}

/* The probabilities (rows x S_OUT) of a v2 answer; classes into cls when not NULL. */
static inline void sf_infer_probs(const char *json, float *p, int rows, int *cls)
{
    cJSON *j = cJSON_Parse(json);
    ck_assert_msg(j != NULL, "not JSON: %s", json);
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(j, "outputs");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(outs, 0), "data");
    const cJSON *cdat = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(outs, 1), "data");
    ck_assert_int_eq(cJSON_GetArraySize(data), rows * S_OUT);
    ck_assert_int_eq(cJSON_GetArraySize(cdat), rows);
    for (int i = 0; i < rows * S_OUT; i++)
        p[i] = (float)cJSON_GetArrayItem(data, i)->valuedouble;
    for (int i = 0; cls && i < rows; i++)
        cls[i] = cJSON_GetArrayItem(cdat, i)->valueint;
    cJSON_Delete(j);
}

/* The value of a Prometheus sample line "metric{labels} value" in text, or -1. */
static inline double sf_metric(const char *text, const char *series)
{
    const char *p = text;
    size_t n = strlen(series);
    while ((p = strstr(p, series))) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return atof(p + n + 1);
        p += n;
    }
    return -1;
}

#endif
