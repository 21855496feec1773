/* student — knowledge distillation: Hinton soft-target loss, FitNets hint
 * loss through a learned linear adapter, the teacher's logits computed once,
 * and the training hooks that distil one student.
 * Depends on util, nn, data, train. */
#ifndef KD_STUDENT_H
#define KD_STUDENT_H

#include "../data/data.h"
#include "../nn/nn.h"
#include "../train/train.h"

/* Hinton et al. 2015: mean over n rows of
 *   alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)
 * for student logits s and teacher logits t (n x k).  Writes the gradient
 * w.r.t. s into ds when not NULL: alpha*T*(softmax(s/T) - softmax(t/T))/n +
 * (1-alpha)*(softmax(s) - onehot(y))/n.  T > 0, alpha in [0, 1]. */
float student_kd_loss(const float *s, const float *t, const uint8_t *y, int n, int k, float T,
                      float alpha, float *ds);

/* Hint loss: weight * mean over the n*d elements of (a - t)^2; writes
 * da = weight * 2 (a - t) / (n*d) when not NULL. */
float student_hint_loss(const float *a, const float *t, size_t count, float weight, float *da);

/* The teacher's logits (eval mode) for every sample of d, in d's order:
 * a new d->n x teacher->nclasses array (kd_afree it), or NULL with e set. */
float *student_teacher_logits(nn_model *teacher, const data_set *d, int batch, kd_err *e);

/* DKD (Zhao et al., CVPR 2022, Eq. 7 with alpha, beta; the T^2 factor of
 * their code): mean over n rows of
 *   T^2 (alpha KL(b_T || b_S) + beta KL(phat_T || phat_S))
 * where b = (p_y, 1 - p_y) is the target/rest split of softmax(z/T) and phat
 * the softmax of z/T over the non-target classes.  No cross-entropy and no
 * warm-up here (student_logit_loss adds them).  ds when not NULL:
 *   T/n (alpha (b_S,y - b_T,y) at y;  alpha phat_S,j (b_T,y - b_S,y)
 *        + beta (phat_S,j - phat_T,j) at j != y).  k < 2 gives 0. */
float student_dkd_loss(const float *s, const float *t, const uint8_t *y, int n, int k, float T,
                       float alpha, float beta, float *ds);

/* DIST (Huang et al., NeurIPS 2022, Eqs. 6-9 with their code's T^2):
 *   T^2 (beta/n sum_i (1 - rho(Y_S[i,:], Y_T[i,:]))
 *        + gamma/k sum_j (1 - rho(Y_S[:,j], Y_T[:,j])))
 * with Y = softmax(z/T) per row and rho the Pearson correlation
 * <a-mean a, b-mean b> / (|a-mean a| |b-mean b| + 1e-8).  No cross-entropy.
 * work holds 3*n*k floats.  ds (gradient w.r.t. s) when not NULL. */
float student_dist_loss(const float *s, const float *t, int n, int k, float T, float beta,
                        float gamma, float *ds, float *work);

/* Logit standardization (Sun et al., CVPR 2024, Eq. 4 / Algorithm 1): each
 * row of z (n x k) into zs as (z - mean) / (std + 1e-7), std with k - 1 as
 * torch.std.  _backward turns g = dL/dzs into dL/dz in place. */
void student_zscore(const float *z, int n, int k, float *zs);
void student_zscore_backward(const float *z, float *g, int n, int k);

typedef enum { STUDENT_KD = 0, STUDENT_DKD, STUDENT_DIST } student_method;

typedef struct {
    student_method method;    /* 0 = kd */
    float temperature, alpha; /* kd: alpha weighs the soft term; dkd: the TCKD weight */
    float beta, gamma;        /* dkd: beta = NCKD weight; dist: beta inter, gamma intra */
    int warmup;               /* dkd: epochs over which its weight rises linearly to 1 */
    int standardize;          /* kd, dkd: z-score both logits before softmax(./T) */
    int student_tap, teacher_tap; /* layer indexes; student_tap < 0: no hint */
    float hint_weight;
} student_distill_opts;

/* The weight of DKD's term in (1-based) epoch: min(epoch / warmup, 1). */
float student_dkd_weight(const student_distill_opts *o, int epoch);

/* Floats of work student_logit_loss needs for n rows of k. */
size_t student_logit_work(int n, int k);

/* The logit loss of method o at (1-based) epoch, mean over the batch, with
 * its gradient w.r.t. s in ds when not NULL:
 *   kd:   alpha * T^2 KL(softmax(t'/T) || softmax(s'/T)) + (1 - alpha) CE(s, y)
 *         (without standardize: exactly student_kd_loss)
 *   dkd:  CE(s, y) + min(epoch / warmup, 1) * student_dkd_loss(s', t')
 *   dist: CE(s, y) + student_dist_loss(s, t)
 * where s', t' are the logits, z-scored per row when o->standardize (the
 * cross-entropy always sees the raw logits).  work: student_logit_work floats. */
float student_logit_loss(const student_distill_opts *o, int epoch, const float *s,
                         const float *t, const uint8_t *y, int n, int k, float *ds, float *work);

/* What one distilled training needs besides the train loop's own state.
 * Borrows the teacher, its logits and the training set; owns the adapter. */
typedef struct student_distiller student_distiller;

/* A distiller for student (trained on tr in batches of at most batch, whose
 * teacher logits are tlogits, tr->n x k).  With a hint, builds the adapter
 * from the student tap's shape to the teacher tap's (initialised from seed,
 * trained with opt at the student's learning rate).  NULL and
 * e set on failure (KD_ECONFIG when the adapter cannot be built). */
student_distiller *student_distiller_new(nn_model *student, nn_model *teacher,
                                         const float *tlogits, const data_set *tr,
                                         const student_distill_opts *o, const nn_opt_spec *opt,
                                         int batch, uint64_t seed, kd_err *e);
void student_distiller_free(student_distiller *d);

/* Fills h's loss, step, epoch and tap fields so that train_fit distils. */
void student_distiller_hooks(student_distiller *d, train_hooks *h);

/* The adapter's training state (NULL without a hint), for checkpoints. */
nn_model *student_distiller_adapter(student_distiller *d);
nn_optim *student_distiller_adapter_opt(student_distiller *d);

#endif
