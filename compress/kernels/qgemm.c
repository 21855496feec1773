/* int8 GEMM: the reference kernel (the specification), packing into the panel
 * layout, the portable kernel over that layout, and run-time dispatch. */
#include "internal.h"

#include <string.h>

void qgemm_ref(const int8_t *w, int m, int k, const int8_t *x, int n, const qgemm_epi *ep,
               void *y)
{
    for (int r = 0; r < m; r++) {
        int32_t rs = 0;
        for (int c = 0; c < k; c++)
            rs += w[(size_t)r * k + c];
        for (int i = 0; i < n; i++) {
            int32_t acc = 0;
            for (int c = 0; c < k; c++)
                acc += (int32_t)x[(size_t)i * k + c] * w[(size_t)r * k + c];
            qgemm_store1(ep, acc, rs, r, y, (size_t)i * m + r);
        }
    }
}

/* ---- packing ------------------------------------------------------------------ */

qgemm_packed *qgemm_pack(const int8_t *w, int m, int k, kd_err *e)
{
    if (m <= 0 || k <= 0 || m > (1 << 24) || k > QGEMM_KMAX || (double)m * k > 1e10) {
        kd_err_set(e, KD_ECONFIG, "qgemm_pack: bad shape %d x %d", m, k);
        return NULL;
    }
    qgemm_packed *p = kd_calloc(1, sizeof *p);
    if (!p) {
        kd_err_set(e, KD_ENOMEM, "qgemm_pack: out of memory");
        return NULL;
    }
    p->m = m;
    p->k = k;
    p->mp = (m + 15) / 16 * 16;
    p->kp = (k + 3) / 4 * 4;
    size_t bytes = (size_t)p->mp * p->kp;
    p->w = (qgemm_block *)kd_afloat((bytes + 3) / 4); /* zeroed, 64-byte aligned */
    p->row_sum = kd_calloc((size_t)p->mp, sizeof *p->row_sum);
    if (!p->w || !p->row_sum) {
        qgemm_packed_free(p);
        kd_err_set(e, KD_ENOMEM, "qgemm_pack: out of memory for %d x %d", m, k);
        return NULL;
    }
    for (int r = 0; r < m; r++)
        for (int c = 0; c < k; c++) {
            int8_t v = w[(size_t)r * k + c];
            p->w[(size_t)(r / 16) * (p->kp / 4) + c / 4].q[r % 16][c % 4] = v;
            p->row_sum[r] += v;
        }
    return p;
}

void qgemm_packed_free(qgemm_packed *p)
{
    if (!p)
        return;
    kd_afree(p->w);
    kd_free(p->row_sum);
    kd_free(p);
}

/* ---- portable kernel ------------------------------------------------------------ */

void qgemm_scalar_part(const qgemm_packed *p, const int8_t *x, int n, const qgemm_epi *ep,
                       void *y, int pb, int pe)
{
    int kg = p->kp / 4, rend = 16 * pe < p->m ? 16 * pe : p->m;
    for (int i = 0; i < n; i++) {
        const int8_t *xi = x + (size_t)i * p->k;
        for (int r = 16 * pb; r < rend; r++) {
            const qgemm_block *b = p->w + (size_t)(r / 16) * kg;
            int32_t acc = 0;
            for (int c = 0; c < p->k; c++)
                acc += (int32_t)xi[c] * b[c / 4].q[r % 16][c % 4];
            qgemm_store1(ep, acc, p->row_sum[r], r, y, (size_t)i * p->m + r);
        }
    }
}

void qgemm_scalar(const qgemm_packed *p, const int8_t *x, int n, const qgemm_epi *ep, void *y)
{
    qgemm_scalar_part(p, x, n, ep, y, 0, p->mp / 16);
}

/* ---- dispatch ---------------------------------------------------------------------- */

/* What the probe allows now (the host capped by KD_ISA / kernels_isa_force). */
int qgemm_isa_supported(qgemm_isa isa)
{
    switch (isa) {
    case QGEMM_SCALAR:
        return 1;
    case QGEMM_AVX2:
        return kernels_isa() >= KD_ISA_AVX2;
    case QGEMM_AVXVNNI:
        return kernels_has_avxvnni();
    case QGEMM_VNNI512:
        return kernels_has_vnni512();
    default:
        return 0;
    }
}

qgemm_isa qgemm_isa_best(void)
{
    for (int i = QGEMM_NISA - 1; i > 0; i--)
        if (qgemm_isa_supported((qgemm_isa)i))
            return (qgemm_isa)i;
    return QGEMM_SCALAR;
}

const char *qgemm_isa_name(qgemm_isa isa)
{
    static const char *const names[QGEMM_NISA] = {"scalar", "avx2", "avx-vnni", "avx512-vnni"};
    return isa >= 0 && isa < QGEMM_NISA ? names[isa] : "?";
}

void qgemm_run_part(qgemm_isa isa, const qgemm_packed *w, const int8_t *x, int n,
                    const qgemm_epi *ep, void *y, int pb, int pe)
{
    if (isa == QGEMM_VNNI512)
        qgemm_vnni512_part(w, x, n, ep, y, pb, pe);
    else if (isa == QGEMM_AVXVNNI)
        qgemm_avxvnni_part(w, x, n, ep, y, pb, pe);
    else if (isa == QGEMM_AVX2)
        qgemm_avx2_part(w, x, n, ep, y, pb, pe);
    else
        qgemm_scalar_part(w, x, n, ep, y, pb, pe); /* (qgemm_store1 applies relu) */
    if (ep->relu && ep->out_f32 && isa != QGEMM_SCALAR) { /* this part's rows, still in L1 */
        int r0 = 16 * pb, r1 = 16 * pe < w->m ? 16 * pe : w->m;
        for (int i = 0; i < n; i++)
            for (float *v = (float *)y + (size_t)i * w->m + r0, *e = v + (r1 - r0); v < e; v++)
                *v = *v > 0 ? *v : 0.0f;
    }
}

void qgemm_run(qgemm_isa isa, const qgemm_packed *w, const int8_t *x, int n,
               const qgemm_epi *ep, void *y)
{
    qgemm_run_part(isa, w, x, n, ep, y, 0, w->mp / 16);
}
