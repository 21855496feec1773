/* Fused, numerically stable softmax cross-entropy and accuracy counting. */
#include <math.h>

#include "nn.h"

float nn_softmax_xent(const float *logits, const uint8_t *labels, int n, int k, float *dlogits)
{
    double total = 0;
    const float inv_n = 1.0f / (float)(n > 0 ? n : 1);
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * k;
        float mx = z[0];
        for (int j = 1; j < k; j++)
            mx = z[j] > mx ? z[j] : mx;
        double sum = 0;
        for (int j = 0; j < k; j++)
            sum += exp((double)(z[j] - mx));
        /* relative to mx: mx + log(sum) would lose log(sum) when |mx| is huge */
        double ls = log(sum);
        total += ls - (double)(z[labels[i]] - mx);
        if (dlogits) {
            float *d = dlogits + (size_t)i * k;
            for (int j = 0; j < k; j++)
                d[j] = (float)(exp((double)(z[j] - mx) - ls)) * inv_n;
            d[labels[i]] -= inv_n;
        }
    }
    return (float)(total / (n > 0 ? n : 1));
}

int nn_count_correct(const float *logits, const uint8_t *labels, int n, int k)
{
    int ok = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * k;
        int best = 0;
        for (int j = 1; j < k; j++)
            if (z[j] > z[best])
                best = j;
        ok += best == labels[i];
    }
    return ok;
}
