#pragma once
// bf16 linear layers for the CPU backend's inference passes (--precision bf16,
// docs/kernels.md "bf16 inference on the CPU"), through oneDNN's matmul (its
// avx512_core_bf16 and AMX kernels; Debian's OpenBLAS 0.3.21 has no sbgemm).
//
// What is bf16: the two GEMM operands only. Inputs are rounded to bf16 (nearest even) at
// every call, weights once (kept in a cache, see below); products are accumulated in
// fp32 and written as fp32, the bias is added in fp32 and GELU is the fp32 op of
// kernels/cpu/ops.h. Activations stay fp32 (act_dtype F32).
//
// Determinism: the output is cut into the tiles of kernels/cpu/gemm_split.h (shape only)
// and each tile is one single-threaded oneDNN matmul, created and run inside the OpenMP
// region with one OpenMP thread asked for (so oneDNN neither splits the tile across
// threads nor sizes its blocking by the thread count): results are bitwise the same for
// any thread count on one CPU.
//
// Weight cache: the bf16 copy of a weight matrix is made on its first use and kept until
// the fp32 values change. The CPU backend reports every write into its memory that could
// touch parameters (copies, memset, AdamW, scale) through cpu_bf16_written and every
// free through cpu_bf16_freed, so a copy is never used after its source changed.
// Like every CPU op, none of these may be called from two threads at once.
#include <stdbool.h>
#include <stddef.h>

// oneDNN's name for the instruction set its kernels dispatch to on this CPU
// ("avx512_core_bf16", "avx512_core_amx", "avx512_core", "avx2", ...), or
// "none (built without oneDNN)". ONEDNN_MAX_CPU_ISA lowers it.
const char *cpu_bf16_isa(void);
// Whether bf16 GEMMs run on bf16 instructions here (avx512_core_bf16 or AMX, and a
// build with oneDNN); when not, `why` (may be NULL) receives a one-line reason.
bool cpu_bf16_supported(char *why, size_t size);
// out (N,OC) = inp (N,IC) W^T (OC,IC) + bias (OC), then GELU into `out` with the
// pre-activation in `pre` when gelu != 0 (as cpu_f32_matmul_forward); bias may be NULL.
// Where cpu_bf16_supported is false this is cpu_f32_matmul_forward.
void cpu_bf16_matmul_forward(float *out, float *pre, const float *inp, const float *weight,
                             const float *bias, int N, int IC, int OC, int gelu);
// 0, or the exit code of the first failure of a bf16 GEMM since the last call (out of
// memory, a oneDNN error; reason via error_set), which is then forgotten. The backend's
// synchronize returns it: a failing op inside an OpenMP region cannot return one itself.
int cpu_bf16_take_error(void);
// [p, p + bytes) was written: bf16 copies of weights overlapping it are stale.
void cpu_bf16_written(const void *p, size_t bytes);
// The block at p (from cpu_alloc) is about to be freed: copies of weights in it go.
void cpu_bf16_freed(void *p);
// Release the cache, the primitives and the scratch buffers (last CPU backend destroyed).
void cpu_bf16_release(void);
