/* The small experiment the MPI tests run on 1 and 2 ranks: every kind of job
 * and every dependency — a student in two modes over two seeds, a student
 * taught by it (a teacher assistant), a variant over two seeds from the
 * teacher, one from the student, the sensitivity sweep from the student.
 * %d: the students' epochs.  Needs dataset-fashion-mnist. */
#ifndef KD_TEST_MPI_EXPERIMENT_H
#define KD_TEST_MPI_EXPERIMENT_H

#include <stdio.h>

static inline int kdt_mpi_experiment(const char *path, int epochs)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f,
            "name: m\nseed: 1\nthreads: 1\ncache_dir: \"\"\n"
            "data: {train_subset: 600, test_subset: 300}\n"
            "teacher:\n"
            "  layers: [{type: flatten}, {type: dense, units: 32}, {type: relu},\n"
            "           {type: dense, units: 10}]\n"
            "  train: {epochs: 1, batch_size: 64, optimizer: {kind: adamw, lr: 0.003}}\n"
            "students:\n"
            "  - name: a\n"
            "    layers: [{type: flatten}, {type: dense, units: 16}, {type: relu},\n"
            "             {type: dense, units: 10}]\n"
            "    seeds: [1, 2]\n"
            "    train: {epochs: %d, batch_size: 64, optimizer: {kind: adamw, lr: 0.003}}\n"
            "    distill: {temperature: 4, alpha: 0.9}\n"
            "  - name: b\n"
            "    teacher: a\n"
            "    layers: [{type: flatten}, {type: dense, units: 8}, {type: relu},\n"
            "             {type: dense, units: 10}]\n"
            "    train: {epochs: %d, batch_size: 64, optimizer: {kind: adamw, lr: 0.003}}\n"
            "    distill: {temperature: 4, alpha: 0.9}\n"
            "compress:\n"
            "  - name: p\n"
            "    source: teacher\n"
            "    store: smallest\n" /* `measure` picks CSR by timing: by chance */
            "    seeds: [1, 2]\n"
            "    passes:\n"
            "      - {type: prune, scope: global, sparsity: 0.7}\n"
            "      - {type: finetune, epochs: 1, lr: 0.005, batch_size: 64}\n"
            "  - name: q\n"
            "    source: a/distilled\n"
            "    passes: [{type: quantize, bits: 8, calib_batches: 2}]\n"
            "sensitivity:\n"
            "  source: a/scratch\n"
            "  sparsities: [0.5, 0.9]\n"
            "report: {plots: false}\n",
            epochs, epochs);
    return fclose(f);
}

#endif
