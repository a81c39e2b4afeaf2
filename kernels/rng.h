#pragma once
// Counter-based random numbers for dropout: a pure function of (seed, counter), so the
// CPU and CUDA backends draw the same mask for the same seed, step and element, and a
// resumed run draws what an uninterrupted one would have. SplitMix64's finaliser over
// seed ^ golden-ratio-scrambled counter; 24 high bits give a uniform float in [0, 1).
#include <stdint.h>

#if defined(__CUDACC__)
#define RNG_INLINE __host__ __device__ static inline
#else
#define RNG_INLINE static inline
#endif

RNG_INLINE uint64_t rng_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// Uniform in [0, 1) for element `counter` of stream `seed`.
RNG_INLINE float rng_uniform(uint64_t seed, uint64_t counter) {
    uint64_t bits = rng_mix64(rng_mix64(seed) + counter * 0x9e3779b97f4a7c15ULL);
    return (float)(bits >> 40) * (1.0f / 16777216.0f);
}

// Dropout keeps element `counter` with probability 1 - p.
RNG_INLINE int dropout_keep(uint64_t seed, uint64_t counter, float p) {
    return rng_uniform(seed, counter) >= p;
}
