// Fused bias + activation + gain + clamp: element math shared by the CUDA kernels (bias_act.cu)
// and the CPU loops of bias_act.cpp (which let the tests check this math without a GPU).
//
//   forward:  y = clamp(act(x + b[i along dim]) * gain, -clamp, clamp)        (clamp < 0: none)
//   backward: dL/dx = dL/dy * gain * act'(x + b) * [|act(x + b) * gain| <= clamp]   ("from x")
//             dL/dx = dL/dy * gain * (y > 0 ? 1 : alpha) * [|y| < clamp]            ("from y";
//             only for linear/relu/lrelu with gain > 0 and alpha >= 0, where the sign of y is the
//             sign of x + b, so the output alone determines the local derivative)
//
// Activation codes match clipstyle/kernels/bias_act/ref.py (ACTIVATIONS[...].code).
#pragma once

#include <cstdint>
#include <cmath>

#ifndef CS_HD
#ifdef __CUDACC__
#define CS_HD __host__ __device__ __forceinline__
#else
#define CS_HD inline
#endif
#endif

namespace clipstyle {
namespace bias_act {

enum Act : int { LINEAR = 1, RELU = 2, LRELU = 3, TANH = 4, SIGMOID = 5, ELU = 6, SELU = 7, SOFTPLUS = 8, SWISH = 9 };

struct Params {
    int64_t numel;       // elements of x
    int64_t stride_dim;  // memory stride of the bias dimension (x is dense, any permutation of dims)
    int64_t size_dim;    // x.shape[dim]
    int act;             // Act code
    double alpha;        // lrelu slope
    double gain;         // multiplier after the activation
    double clamp;        // < 0: no clamp
    bool has_bias;
    bool from_y;         // backward mode (see above)
};

CS_HD float cs_exp(float v) { return expf(v); }
CS_HD double cs_exp(double v) { return exp(v); }
CS_HD float cs_tanh(float v) { return tanhf(v); }
CS_HD double cs_tanh(double v) { return tanh(v); }
CS_HD float cs_log1p(float v) { return log1pf(v); }
CS_HD double cs_log1p(double v) { return log1p(v); }

// SELU constants (Klambauer et al. 2017, "Self-Normalizing Neural Networks"), as torch.nn.functional.selu.
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSoftplusThreshold = 20.0;  // torch's default: softplus(t) = t above it

template <typename A>
CS_HD A act_value(A t, int act, A alpha) {
    switch (act) {
        case RELU: return t > A(0) ? t : A(0);
        case LRELU: return t > A(0) ? t : t * alpha;
        case TANH: return cs_tanh(t);
        case SIGMOID: return A(1) / (A(1) + cs_exp(-t));
        case ELU: return t > A(0) ? t : cs_exp(t) - A(1);
        case SELU: return t > A(0) ? A(kSeluScale) * t : A(kSeluScale * kSeluAlpha) * (cs_exp(t) - A(1));
        case SOFTPLUS: return t > A(kSoftplusThreshold) ? t : cs_log1p(cs_exp(t));
        case SWISH: return t / (A(1) + cs_exp(-t));
        default: return t;  // LINEAR
    }
}

// d act(t) / dt
template <typename A>
CS_HD A act_slope(A t, int act, A alpha) {
    switch (act) {
        case RELU: return t > A(0) ? A(1) : A(0);
        case LRELU: return t > A(0) ? A(1) : alpha;
        case TANH: { A y = cs_tanh(t); return A(1) - y * y; }
        case SIGMOID: { A s = A(1) / (A(1) + cs_exp(-t)); return s * (A(1) - s); }
        case ELU: return t > A(0) ? A(1) : cs_exp(t);
        case SELU: return t > A(0) ? A(kSeluScale) : A(kSeluScale * kSeluAlpha) * cs_exp(t);
        case SOFTPLUS: { if (t > A(kSoftplusThreshold)) return A(1); A z = cs_exp(t); return z / (z + A(1)); }
        case SWISH: { A s = A(1) / (A(1) + cs_exp(-t)); return s * (A(1) + t * (A(1) - s)); }
        default: return A(1);
    }
}

// Index of the bias element for memory offset i of a dense tensor.
CS_HD int64_t bias_index(const Params& p, int64_t i) { return (i / p.stride_dim) % p.size_dim; }

// y for one element; A is the arithmetic type (float for half/bfloat16/float, double for double).
template <typename A>
CS_HD A forward_one(const Params& p, A x, A b) {
    A v = act_value<A>(x + b, p.act, A(p.alpha)) * A(p.gain);
    if (p.clamp >= 0.0) {
        A c = A(p.clamp);
        v = v > c ? c : (v < -c ? -c : v);
    }
    return v;
}

// dL/dx for one element. ``r`` is x (from_y == false; ``b`` its bias) or y (from_y == true).
template <typename A>
CS_HD A backward_one(const Params& p, A g, A r, A b) {
    if (p.from_y) {
        if (p.clamp >= 0.0 && !(r < A(p.clamp) && r > -A(p.clamp))) return A(0);
        A s = p.act == LINEAR ? A(1) : (r > A(0) ? A(1) : (p.act == RELU ? A(0) : A(p.alpha)));
        return g * s * A(p.gain);
    }
    A t = r + b;
    if (p.clamp >= 0.0) {
        A v = act_value<A>(t, p.act, A(p.alpha)) * A(p.gain);
        if (v > A(p.clamp) || v < -A(p.clamp)) return A(0);
    }
    return g * act_slope<A>(t, p.act, A(p.alpha)) * A(p.gain);
}

}  // namespace bias_act
}  // namespace clipstyle

#ifdef CLIPSTYLE_WITH_CUDA
#include <ATen/core/Tensor.h>
namespace clipstyle {
namespace bias_act {
// Launchers (bias_act.cu). Tensors are dense, same strides, on one CUDA device; ``b`` may be undefined.
void launch_forward(const Params& p, const at::Tensor& x, const at::Tensor& b, at::Tensor& y);
void launch_backward(const Params& p, const at::Tensor& g, const at::Tensor& r, const at::Tensor& b, at::Tensor& gx);
}  // namespace bias_act
}  // namespace clipstyle
#endif
