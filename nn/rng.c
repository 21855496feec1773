/* Seeded RNG streams: xoshiro256** seeded through splitmix64(seed, stream). */
#include "nn.h"

#include <math.h>
#include <string.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

nn_rng nn_rng_stream(uint64_t seed, uint64_t stream)
{
    nn_rng r;
    uint64_t x = seed ^ (stream * 0xd1b54a32d192ed03ULL);
    for (int i = 0; i < 4; i++)
        r.s[i] = splitmix64(&x);
    return r;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t nn_rng_u64(nn_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* scale where u >= thresh, else +0, without a branch: the draws are random,
 * so a branch here mispredicted often enough to take 2.6x as long (issue 12) */
static inline uint32_t keep_bits(uint32_t u, uint32_t thresh, uint32_t scale_bits)
{
    return scale_bits & (0u - (uint32_t)(u >= thresh));
}

void nn_rng_keep_mask(nn_rng *r, float *mask, size_t m, uint32_t thresh, float scale)
{
    nn_rng s = *r; /* a local copy stays in registers */
    uint32_t sb, b[2];
    memcpy(&sb, &scale, sizeof sb);
    for (size_t i = 0; i + 1 < m; i += 2) {
        uint64_t x = nn_rng_u64(&s);
        b[0] = keep_bits((uint32_t)x, thresh, sb);
        b[1] = keep_bits((uint32_t)(x >> 32), thresh, sb);
        memcpy(mask + i, b, sizeof b);
    }
    if (m % 2) {
        b[0] = keep_bits((uint32_t)nn_rng_u64(&s), thresh, sb);
        memcpy(mask + m - 1, b, sizeof b[0]);
    }
    *r = s;
}

uint32_t nn_rng_below(nn_rng *r, uint32_t n)
{
    /* Lemire's multiply-shift with rejection: unbiased */
    uint64_t m = (uint64_t)(uint32_t)(nn_rng_u64(r) >> 32) * n;
    uint32_t lo = (uint32_t)m;
    if (lo < n) {
        uint32_t t = (uint32_t)(-n) % n;
        while (lo < t) {
            m = (uint64_t)(uint32_t)(nn_rng_u64(r) >> 32) * n;
            lo = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

float nn_rng_uniform(nn_rng *r) { return (float)(nn_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

float nn_rng_normal(nn_rng *r)
{
    /* Box-Muller; one value per call keeps the stream position simple */
    double u1 = ((double)(nn_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(nn_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void nn_rng_shuffle(nn_rng *r, int *a, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)nn_rng_below(r, (uint32_t)i + 1);
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

void nn_fill_he(float *w, size_t n, int fan_in, nn_rng *r)
{
    float sd = sqrtf(2.0f / (float)(fan_in > 0 ? fan_in : 1));
    for (size_t i = 0; i < n; i++)
        w[i] = sd * nn_rng_normal(r);
}

void nn_fill_xavier(float *w, size_t n, int fan_in, int fan_out, nn_rng *r)
{
    float a = sqrtf(6.0f / (float)(fan_in + fan_out > 0 ? fan_in + fan_out : 1));
    for (size_t i = 0; i < n; i++)
        w[i] = a * (2.0f * nn_rng_uniform(r) - 1.0f);
}
