#pragma once
// Branch-free fp32 exp and erf that GCC vectorises (libm's expf/erff are calls, which
// keep softmax and GELU loops scalar). Used by the fp32 ops only; the double build used by
// the gradient checks keeps libm (kernels/cpu/ops_f64.c).
//
// exp: Cephes' expf — x = n ln2 + r with |r| <= ln2/2, a degree-6 polynomial for e^r,
//      2^n through the exponent bits; within 1 ulp of expf on [-87.3, 88]. Inputs are
//      clamped to that range (e^-87.3 ~ 1.2e-38: 0 for every use here; every caller
//      passes x <= 0: softmax after the max shift, GELU's and erf's Gaussians); NaN
//      stays NaN so a diverged model still shows in the loss.
// erf: Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7 — the formula PyTorch's vectorised
//      CPU erf uses, so GELU matches PyTorch's own CPU GELU at least as closely as libm.
#include <stdint.h>
#include <string.h>

static inline float fast_expf(float x) {
    // Range handling on the bit pattern, not with float compares: a float compare feeding
    // the float-to-int conversion keeps GCC (-ftrapping-math, the default) from
    // vectorising. Read as int32, negative floats grow as the value falls and positive
    // ones grow with the value, so the clamps to [-87.3, 88] are integer compares
    // (-inf and +inf included). NaN takes a harmless path and is passed through.
    const float lo = -87.3f, hi = 88.0f;
    int32_t xb, lob, hib;
    memcpy(&xb, &x, sizeof xb);
    memcpy(&lob, &lo, sizeof lob);
    memcpy(&hib, &hi, sizeof hib);
    int32_t xin = xb;
    // selects as bit masks (all ones where the condition holds): no branch to if-convert
    int32_t nan = -(int32_t)((xb & 0x7fffffff) > 0x7f800000);
    xb &= ~nan;
    int32_t below = -(int32_t)((xb < 0) & (xb > lob));
    xb = (xb & ~below) | (lob & below);
    int32_t above = -(int32_t)(xb > hib);
    xb = (xb & ~above) | (hib & above);
    float xc;
    memcpy(&xc, &xb, sizeof xc);
    // n = round(xc / ln2): fx + 128.5 > 0, so truncation is floor
    float fx = xc * 1.44269504088896341f;
    int32_t n = (int32_t)(fx + 128.5f) - 128;
    float nf = (float)n;
    float r = xc - nf * 0.693359375f - nf * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * (r * r) + r + 1.0f;
    int32_t bits = (n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float e = y * scale;
    int32_t eb;
    memcpy(&eb, &e, sizeof eb);
    eb = (eb & ~nan) | (xin & nan);
    memcpy(&e, &eb, sizeof e);
    return e;
}

// erf(ax) for ax >= 0 given its Gaussian exp(-ax^2): Abramowitz & Stegun 7.1.26.
static inline float fast_erf_nonneg(float ax, float gauss) {
    float t = 1.0f / (1.0f + 0.3275911f * ax);
    float r = 1.061405429f;
    r = r * t - 1.453152027f;
    r = r * t + 1.421413741f;
    r = r * t - 0.284496736f;
    r = r * t + 0.254829592f;
    return 1.0f - r * t * gauss;
}

static inline float fast_erff(float x) {
    float ax = x < 0.0f ? -x : x;
    float y = fast_erf_nonneg(ax, fast_expf(-ax * ax));
    return x < 0.0f ? -y : y;
}

// d/dx of GELU(x) = 0.5 x (1 + erf(x/sqrt2)): Phi(x) + x phi(x). erf's Gaussian at
// x/sqrt2, exp(-x^2/2), is phi's own, so one exp serves both (fast_erff's formula with
// that exp shared): GELU backward is the costliest element-wise op of training.
static inline float fast_gelu_grad(float x) {
    float e = fast_expf(-0.5f * x * x);
    float erf_abs = fast_erf_nonneg((x < 0.0f ? -x : x) * 0.70710678118654752440f, e);
    float cdf = 0.5f * (1.0f + (x < 0.0f ? -erf_abs : erf_abs));
    return cdf + x * e * 0.39894228040143267794f;
}
