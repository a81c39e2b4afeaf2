// The fp32 CPU ops the backend runs (bodies in ops_template.h).
#define REAL float
#define OPS(name) cpu_f32_##name
#define GEMM cblas_sgemm
#include "kernels/cpu/ops_template.h"
