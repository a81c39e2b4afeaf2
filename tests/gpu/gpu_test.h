#pragma once
// Shared by the files of the GPU test executable (tests/gpu).
#include <stddef.h>

#include "kernels/backend.h"

extern backend *gt_cpu, *gt_gpu;

float gt_uniform(void);
int gt_randint(int lo, int hi);  // [lo, hi)
float gt_round_bf16(float x);
// Host <-> backend buffers; is_act converts through the activation dtype.
void gt_upload(backend *be, void *dst, const void *host, size_t n, int is_act);
void gt_download(backend *be, float *host, const void *src, size_t n, int is_act);
// Relative norm ||got - ref|| / ||ref|| <= tol and no NaN; prints a line, counts a CHECK.
int gt_compare(const char *name, const float *ref, const float *got, size_t n, double tol);
// One training step and 20 steps of loss through runner/model/bert.h on both backends.
void gt_model_tests(void);
