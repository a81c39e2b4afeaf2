// The fp32 CPU ops the backend runs (bodies in ops_template.h).
#include "kernels/cpu/fast_math.h"
#define REAL float
#define OPS(name) cpu_f32_##name
#define GEMM cblas_sgemm
#define EXP fast_expf
#define ERF fast_erff
#include "kernels/cpu/ops_template.h"
