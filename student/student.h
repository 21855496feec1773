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

typedef struct {
    float temperature, alpha;
    int student_tap, teacher_tap; /* layer indexes; student_tap < 0: no hint */
    float hint_weight;
} student_distill_opts;

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

/* Fills h's loss, step and tap fields so that train_fit distils. */
void student_distiller_hooks(student_distiller *d, train_hooks *h);

/* The adapter's training state (NULL without a hint), for checkpoints. */
nn_model *student_distiller_adapter(student_distiller *d);
nn_optim *student_distiller_adapter_opt(student_distiller *d);

#endif
