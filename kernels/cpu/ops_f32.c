// The fp32 CPU ops the backend runs (bodies in ops_template.h).
#include "kernels/cpu/fast_math.h"
#define REAL float
#define OPS(name) cpu_f32_##name
#define GEMM cblas_sgemm
#define EXP fast_expf
#define ERF fast_erff
#define GELU_GRAD fast_gelu_grad
// The release build targets baseline x86-64 (SSE2) so that one binary runs on any host.
// The ops' own loops (GELU, LayerNorm, softmax, AdamW, ...) are compiled three times and
// the loader picks the widest the CPU has (GCC's target_clones: AVX-512 = x86-64-v4,
// AVX2 + FMA = x86-64-v3, baseline). The results are the same in every clone: the build
// is ISO C (-ffp-contract=off, so no clone fuses a multiply and an add), floating-point
// sums are never reassociated (the row sums' lanes are explicit), and +, *, /, sqrt are
// correctly rounded at any vector width.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define OPS_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define OPS_CLONES
#endif
#include "kernels/cpu/ops_template.h"
