/* teacher — builds a network from its config and gives its training options.
 * Depends on util, nn, config, train. */
#ifndef KD_TEACHER_H
#define KD_TEACHER_H

#include "../config/config.h"
#include "../train/train.h"

/* A new model for spec on inputs of shape in, initialised from seed. */
nn_model *teacher_build(const cfg_model *spec, nn_shape in, uint64_t seed, kd_err *e);
/* The training options of spec (epochs, batch, optimiser, schedule, seed). */
train_opts teacher_train_opts(const cfg_model *spec, uint64_t seed);

#endif
