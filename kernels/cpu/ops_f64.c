// The same ops in double precision, for the finite-difference gradient checks
// (tests/unit/kernels): they test the very code the fp32 backend runs.
#define REAL double
#define OPS(name) cpu_f64_##name
#define GEMM cblas_dgemm
#include "kernels/cpu/ops_template.h"
