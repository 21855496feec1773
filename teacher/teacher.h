/* teacher — the teacher stage's own parts: build a network from its config,
 * its training options, the cache of trained teachers across runs, and
 * loading a saved teacher.  The run (pipeline) trains it in the run
 * directory with these and measures it.  Depends on util, nn, config, train. */
#ifndef KD_TEACHER_H
#define KD_TEACHER_H

#include "../config/config.h"
#include "../train/train.h"

/* A new model for spec on inputs of shape in, initialised from seed. */
nn_model *teacher_build(const cfg_model *spec, nn_shape in, uint64_t seed, kd_err *e);
/* The training options of spec (epochs, batch, optimiser, schedule, seed). */
train_opts teacher_train_opts(const cfg_model *spec, uint64_t seed);

/* The cache file of spec's teacher trained on threads threads:
 * CACHE_DIR/teacher-<key>.ckpt, key = FNV-1a of the resolved data and
 * teacher sections, CRC-32s of the train and val samples and labels, the
 * seed and the thread count (nothing else). */
int teacher_cache_path(const exp_spec *spec, int threads, const data_set *train,
                       const data_set *val, char *buf, size_t n, kd_err *e);
/* Copies the cached checkpoint to ckpt (the run then resumes from it) unless
 * resume finds ckpt already there; 1 on a cache hit, 0 otherwise (a missing
 * or unreadable cache entry is logged, never an error). */
int teacher_cache_fetch(const char *cached, const char *ckpt, int resume, kd_log *log);
/* Copies a newly trained checkpoint into the cache (a failure is logged). */
void teacher_cache_store(const char *cache_dir, const char *cached, const char *ckpt, kd_log *log);
/* The teacher's file as the run loads it: spec->teacher.model_path, a model
 * of kdbench (nn's kinds) or, with teacher.onnx, an imported ONNX model with
 * the config's input_mean / input_std.  A file that cannot be read (or an
 * ONNX file that cannot be imported) is KD_ECONFIG at the key's position. */
nn_model *teacher_file_load(const exp_spec *spec, kd_err *e);
/* Loads spec->teacher.model_path and checks it takes inputs of in's size,
 * gives nclasses classes and has every layer the students' hints name
 * (KD_ECONFIG at the config position otherwise); NULL with e on failure. */
nn_model *teacher_load(const exp_spec *spec, nn_shape in, int nclasses, kd_log *log, kd_err *e);
/* The hint rule alone: every student's hint names a layer of m that can be
 * tapped (KD_ECONFIG at the hint's position otherwise). */
int teacher_check_hints(const exp_spec *spec, const nn_model *m, kd_err *e);

#endif
