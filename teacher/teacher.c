/* Teacher construction from a validated config. */
#include "teacher.h"

nn_model *teacher_build(const cfg_model *spec, nn_shape in, uint64_t seed, kd_err *e)
{
    nn_model *m = nn_model_new(in, spec->layers, spec->nlayers, NULL, e);
    if (m)
        nn_model_init(m, seed);
    return m;
}

train_opts teacher_train_opts(const cfg_model *spec, uint64_t seed)
{
    train_opts o = {
        .epochs = spec->train.epochs,
        .batch_size = spec->train.batch_size,
        .opt = spec->train.opt,
        .sched = spec->train.sched,
        .seed = seed,
    };
    return o;
}
