// The same ops in double precision, for the finite-difference gradient checks
// (tests/unit/kernels): they test the very code the fp32 backend runs, with libm's exp
// and erf where the fp32 build uses kernels/cpu/fast_math.h.
#define REAL double
#define OPS(name) cpu_f64_##name
#define GEMM cblas_dgemm
#define EXP exp
#define ERF erf
#define OPS_CLONES
#include "kernels/cpu/ops_template.h"
