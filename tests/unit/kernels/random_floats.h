#pragma once
// Test inputs: n floats uniform in +-[0.1, 2] — never zero (a relative bound means
// something), both signs, GELU's and exp's interesting range — drawn from the counter RNG
// (kernels/rng.h) on two streams, advancing *counter. Caller frees.
#include <stdint.h>
#include <stdlib.h>

#include "kernels/rng.h"

static inline float *random_floats_from(uint64_t sign_stream, uint64_t magnitude_stream,
                                        uint64_t *counter, size_t n) {
    float *x = malloc(sizeof(float) * n);
    for (size_t i = 0; x && i < n; i++) {
        double u = rng_uniform(sign_stream, (*counter)++);
        double mag = 0.1 + 1.9 * rng_uniform(magnitude_stream, (*counter)++);
        x[i] = (float)(u < 0.5 ? -mag : mag);
    }
    return x;
}
