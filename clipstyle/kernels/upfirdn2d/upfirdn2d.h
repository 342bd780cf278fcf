// upfirdn2d as a gather: one output sample = the taps of the FIR filter that land on real (not
// inserted-zero, not padding) input samples. Shared by the CUDA kernels of upfirdn2d.cu and
// filtered_lrelu.cu, and by the CPU loops of the .cpp files (which test this arithmetic without a GPU).
//
// Per axis (input length L, factors up/down, left padding pad0, taps T; g = f flipped when
// flip == false (true convolution), f itself when flip == true (correlation)):
//
//   out[i] = gain * sum_{t in [0,T), (i*down + t - pad0) % up == 0}  g[t] * x[(i*down + t - pad0) / up]
//
// (x = 0 outside [0, L)), which is "insert up-1 zeros after each sample, pad, correlate with g, keep
// every down-th sample" without touching a zero. The first tap that hits a real sample is
// t0 = (-(i*down - pad0)) mod up; the next ones are t0 + up, t0 + 2 up, ...
//
// Options used by filtered_lrelu (all off for upfirdn2d):
//   bias     a per-channel value added to every input sample read (x + b before upsampling);
//   in_mask  every input sample read is multiplied by factor(mask) (backward of the activation);
//   act      epilogue: v -> clamp(lrelu(v, slope) * act_gain), writing a mask byte per output.
// Mask byte: bit 0 = v > 0, bit 1 = not clipped by the clamp (|lrelu(v)*act_gain| <= clamp).
// factor(m) = (m & 2) ? ((m & 1) ? gain : slope * gain) : 0.
#pragma once

#include <cstdint>

#ifndef CS_HD
#ifdef __CUDACC__
#define CS_HD __host__ __device__ __forceinline__
#else
#define CS_HD inline
#endif
#endif

namespace clipstyle {
namespace resample {

struct Params {
    int64_t N, C, H, W;   // input sizes
    int64_t xs[4];        // input strides (n, c, h, w), in elements
    int64_t OH, OW;       // output sizes
    int64_t ys[4];        // output strides
    int fh, fw;           // filter taps along y and x; the filter is float32 [fh, fw], contiguous
    int upx, upy, downx, downy;
    int padx0, pady0;     // left/top padding of the upsampled image (negative crops)
    bool flip;            // true: correlation with f; false: convolution
    double gain;
    bool channels_last;   // the linear output index runs over c fastest (else over x fastest)
    bool has_bias;
    bool has_in_mask;
    int64_t ms[4];        // strides of in_mask (the input's shape)
    double mask_gain, mask_slope;
    bool act;
    double act_slope, act_gain, act_clamp;  // act_clamp < 0: no clamp
    int64_t oms[4];       // strides of out_mask (the output's shape)
    int64_t total;        // N * C * OH * OW
};

CS_HD int pos_mod(int64_t a, int m) {
    int r = int(a % m);
    return r < 0 ? r + m : r;
}

CS_HD void decompose(const Params& p, int64_t i, int64_t& n, int64_t& c, int64_t& oy, int64_t& ox) {
    if (p.channels_last) {
        c = i % p.C; i /= p.C;
        ox = i % p.OW; i /= p.OW;
        oy = i % p.OH; n = i / p.OH;
    } else {
        ox = i % p.OW; i /= p.OW;
        oy = i % p.OH; i /= p.OH;
        c = i % p.C; n = i / p.C;
    }
}

template <typename A>
CS_HD A mask_factor(const Params& p, uint8_t m) {
    if (!(m & 2)) return A(0);
    return (m & 1) ? A(p.mask_gain) : A(p.mask_slope * p.mask_gain);
}

// The filtered value of output (n, c, oy, ox), before any epilogue. A: arithmetic type.
template <typename T, typename A>
CS_HD A gather_one(const Params& p, const T* x, const float* f, const T* bias, const uint8_t* in_mask,
                   int64_t n, int64_t c, int64_t oy, int64_t ox) {
    const int64_t ky0 = oy * p.downy - p.pady0;  // upsampled-grid index under tap 0
    const int64_t kx0 = ox * p.downx - p.padx0;
    const int ty0 = pos_mod(-ky0, p.upy);
    const int tx0 = pos_mod(-kx0, p.upx);
    const T* xc = x + n * p.xs[0] + c * p.xs[1];
    const uint8_t* mc = p.has_in_mask ? in_mask + n * p.ms[0] + c * p.ms[1] : nullptr;
    const A b = p.has_bias ? A(bias[c]) : A(0);
    A acc = A(0);
    for (int ty = ty0; ty < p.fh; ty += p.upy) {
        const int64_t iy = (ky0 + ty) / p.upy;  // exact: ky0 + ty is a multiple of upy
        if (iy < 0 || iy >= p.H) continue;
        const float* frow = f + int64_t(p.flip ? ty : p.fh - 1 - ty) * p.fw;
        for (int tx = tx0; tx < p.fw; tx += p.upx) {
            const int64_t ix = (kx0 + tx) / p.upx;
            if (ix < 0 || ix >= p.W) continue;
            A v = A(xc[iy * p.xs[2] + ix * p.xs[3]]) + b;
            if (mc) v *= mask_factor<A>(p, mc[iy * p.ms[2] + ix * p.ms[3]]);
            acc += v * A(frow[p.flip ? tx : p.fw - 1 - tx]);
        }
    }
    return acc * A(p.gain);
}

// The leaky-ReLU/gain/clamp epilogue; returns the value and sets the mask byte.
template <typename A>
CS_HD A act_one(const Params& p, A v, uint8_t& m) {
    const bool pos = v > A(0);
    A a = (pos ? v : v * A(p.act_slope)) * A(p.act_gain);
    m = pos ? 1 : 0;
    if (p.act_clamp >= 0.0) {
        const A c = A(p.act_clamp);
        if (a > c) a = c;
        else if (a < -c) a = -c;
        else m |= 2;
    } else {
        m |= 2;
    }
    return a;
}

// Everything for output number i (linear index in the order of Params::channels_last).
template <typename T, typename A>
CS_HD void run_one(const Params& p, int64_t i, const T* x, const float* f, const T* bias, const uint8_t* in_mask,
                   T* y, uint8_t* out_mask) {
    int64_t n, c, oy, ox;
    decompose(p, i, n, c, oy, ox);
    A v = gather_one<T, A>(p, x, f, bias, in_mask, n, c, oy, ox);
    if (p.act) {
        uint8_t m;
        v = act_one<A>(p, v, m);
        out_mask[n * p.oms[0] + c * p.oms[1] + oy * p.oms[2] + ox * p.oms[3]] = m;
    }
    y[n * p.ys[0] + c * p.ys[1] + oy * p.ys[2] + ox * p.ys[3]] = T(v);
}

}  // namespace resample
}  // namespace clipstyle

#ifdef __CUDACC__
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace clipstyle {
namespace resample {

template <typename T>
__global__ void resample_kernel(Params p, const T* __restrict__ x, const float* __restrict__ f,
                                const T* __restrict__ bias, const uint8_t* __restrict__ in_mask, T* __restrict__ y,
                                uint8_t* __restrict__ out_mask) {
    using A = at::opmath_type<T>;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < p.total; i += int64_t(gridDim.x) * blockDim.x)
        run_one<T, A>(p, i, x, f, bias, in_mask, y, out_mask);
}

// Launch on ``stream`` with enough blocks to fill the device (grid-stride loop for the rest).
template <typename T>
void launch_resample(const Params& p, const T* x, const float* f, const T* bias, const uint8_t* in_mask, T* y,
                     uint8_t* out_mask, cudaStream_t stream) {
    if (p.total == 0) return;
    constexpr int threads = 256;
    int device = 0, sms = 80;
    C10_CUDA_CHECK(cudaGetDevice(&device));
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    int64_t blocks = (p.total + threads - 1) / threads;
    const int64_t cap = int64_t(sms) * 32;
    if (blocks > cap) blocks = cap;
    resample_kernel<T><<<int(blocks), threads, 0, stream>>>(p, x, f, bias, in_mask, y, out_mask);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Dtype dispatch + launch on the current stream of x's device (tensors from prepare()).
inline void launch_cuda_impl(const Params& p, const at::Tensor& x, const at::Tensor& f, const at::Tensor& bias,
                             const at::Tensor& in_mask, at::Tensor& y, at::Tensor& out_mask) {
    const c10::cuda::CUDAGuard guard(x.device());
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "upfirdn2d_cuda", [&] {
        launch_resample<scalar_t>(p, x.data_ptr<scalar_t>(), f.data_ptr<float>(),
                                  p.has_bias ? bias.data_ptr<scalar_t>() : nullptr,
                                  p.has_in_mask ? in_mask.data_ptr<uint8_t>() : nullptr, y.data_ptr<scalar_t>(),
                                  p.act ? out_mask.data_ptr<uint8_t>() : nullptr, stream);
    });
}

}  // namespace resample
}  // namespace clipstyle
#endif  // __CUDACC__

#ifndef __CUDACC__
// ---------------------------------------------------------------------------------------------
// Host side (compiled by the C++ compiler only): argument checks, output allocation, CPU loops.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <utility>
#include <vector>

namespace clipstyle {
namespace resample {

// Tensors and parameters of one resampling call, checked and allocated.
struct Prepared {
    Params p;
    at::Tensor x, f, bias, in_mask, y, out_mask;  // bias / in_mask / out_mask undefined when unused
};

inline int64_t output_length(int64_t length, int up, int down, int pad0, int pad1, int taps, const char* axis) {
    const int64_t span = length * up + pad0 + pad1 - taps;
    TORCH_CHECK(span >= 0, "upfirdn2d: the padded ", axis, " extent (", length * up + pad0 + pad1,
                ") is smaller than the filter (", taps, " taps)");
    return span / down + 1;
}

inline void strides_of(const at::Tensor& t, int64_t* s) {
    for (int d = 0; d < 4; ++d) s[d] = t.stride(d);
}

// x [N, C, H, W] floating point (any strides); f float32 [fh, fw] on x's device; bias [C] of x's
// dtype or undefined; in_mask uint8 of x's shape or undefined. The output (and out_mask when
// ``act``) has x's suggested memory format.
inline Prepared prepare(const at::Tensor& x, const at::Tensor& f, int upx, int upy, int downx, int downy, int px0,
                        int px1, int py0, int py1, bool flip, double gain, const at::Tensor& bias,
                        const at::Tensor& in_mask, double mask_gain, double mask_slope, bool act, double act_slope,
                        double act_gain, double act_clamp) {
    TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be [N, C, H, W], got ", x.dim(), " dims");
    TORCH_CHECK(x.is_floating_point(), "upfirdn2d: x must be floating point, got ", x.scalar_type());
    TORCH_CHECK(f.dim() == 2 && f.numel() > 0, "upfirdn2d: the filter must be a non-empty 2-D tensor");
    TORCH_CHECK(f.scalar_type() == at::kFloat, "upfirdn2d: the filter must be float32");
    TORCH_CHECK(f.device() == x.device(), "upfirdn2d: the filter must be on x's device");
    TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1, "upfirdn2d: up and down must be >= 1");
    Prepared r;
    r.x = x;
    r.f = f.contiguous();
    Params& p = r.p;
    p = Params{};
    p.N = x.size(0); p.C = x.size(1); p.H = x.size(2); p.W = x.size(3);
    strides_of(x, p.xs);
    p.fh = int(f.size(0)); p.fw = int(f.size(1));
    p.upx = upx; p.upy = upy; p.downx = downx; p.downy = downy;
    p.padx0 = px0; p.pady0 = py0;
    p.flip = flip;
    p.gain = gain;
    p.OH = output_length(p.H, upy, downy, py0, py1, p.fh, "height");
    p.OW = output_length(p.W, upx, downx, px0, px1, p.fw, "width");
    const auto fmt = x.suggest_memory_format();
    p.channels_last = fmt == at::MemoryFormat::ChannelsLast;
    r.y = at::empty({p.N, p.C, p.OH, p.OW}, x.options().memory_format(fmt));
    strides_of(r.y, p.ys);
    p.total = p.N * p.C * p.OH * p.OW;
    if (bias.defined() && bias.numel() > 0) {
        TORCH_CHECK(bias.dim() == 1 && bias.size(0) == p.C, "upfirdn2d: bias must have shape [", p.C, "]");
        TORCH_CHECK(bias.scalar_type() == x.scalar_type() && bias.device() == x.device(),
                    "upfirdn2d: bias must have x's dtype and device");
        r.bias = bias.contiguous();
        p.has_bias = true;
    }
    if (in_mask.defined() && in_mask.numel() > 0) {
        TORCH_CHECK(in_mask.sizes() == x.sizes() && in_mask.scalar_type() == at::kByte && in_mask.device() == x.device(),
                    "upfirdn2d: in_mask must be uint8 with x's shape and device");
        r.in_mask = in_mask;
        strides_of(in_mask, p.ms);
        p.has_in_mask = true;
        p.mask_gain = mask_gain;
        p.mask_slope = mask_slope;
    }
    if (act) {
        p.act = true;
        p.act_slope = act_slope;
        p.act_gain = act_gain;
        p.act_clamp = act_clamp;
        r.out_mask = at::empty({p.N, p.C, p.OH, p.OW}, x.options().dtype(at::kByte).memory_format(fmt));
        strides_of(r.out_mask, p.oms);
    }
    return r;
}

// One gather pass: filter [fh, fw] with its factors, paddings and gain.
struct Pass {
    at::Tensor f;
    int upx, upy, downx, downy, px0, px1, py0, py1;
    double gain;
};

// A 2-D filter is one pass; a 1-D (separable) filter [T] is an x pass ([1, T], carrying the gain)
// then a y pass ([T, 1]): 2T/up taps per output instead of (T/up)².
inline std::vector<Pass> plan_passes(const at::Tensor& f, int upx, int upy, int downx, int downy, int px0, int px1,
                                     int py0, int py1, double gain) {
    TORCH_CHECK((f.dim() == 1 || f.dim() == 2) && f.numel() > 0, "upfirdn2d: the filter must be 1-D or 2-D");
    if (f.dim() == 2) return {Pass{f, upx, upy, downx, downy, px0, px1, py0, py1, gain}};
    const at::Tensor fc = f.contiguous();
    const int64_t t = fc.size(0);
    return {Pass{fc.view({1, t}), upx, 1, downx, 1, px0, px1, 0, 0, gain},
            Pass{fc.view({t, 1}), 1, upy, 1, downy, 0, 0, py0, py1, 1.0}};
}

// Output (h, w) of a pass for an input of (h, w).
inline std::pair<int64_t, int64_t> pass_output(const Pass& p, int64_t h, int64_t w) {
    return {output_length(h, p.upy, p.downy, p.py0, p.py1, int(p.f.size(0)), "height"),
            output_length(w, p.upx, p.downx, p.px0, p.px1, int(p.f.size(1)), "width")};
}

// The adjoint of a pass (its backward w.r.t. the input; run it with the filter flip negated). Per
// axis, input length L, output length O, T taps: up' = down, down' = up, pad0' = T - 1 - pad0,
// pad1' = L*up - O*down + pad0 - up + 1 (so that the result is exactly L long).
inline Pass adjoint_pass(const Pass& p, int64_t in_h, int64_t in_w) {
    const auto out = pass_output(p, in_h, in_w);
    const int th = int(p.f.size(0)), tw = int(p.f.size(1));
    return Pass{p.f, p.downx, p.downy, p.upx, p.upy,
                tw - 1 - p.px0, int(in_w * p.upx - out.second * p.downx + p.px0 - p.upx + 1),
                th - 1 - p.py0, int(in_h * p.upy - out.first * p.downy + p.py0 - p.upy + 1), p.gain};
}

// The CPU loops over the same element function as the CUDA kernel.
inline void run_cpu(Prepared& r) {
    if (r.p.total == 0) return;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, r.x.scalar_type(), "upfirdn2d_cpu", [&] {
        using A = at::opmath_type<scalar_t>;
        const Params p = r.p;
        const scalar_t* x = r.x.data_ptr<scalar_t>();
        const float* f = r.f.data_ptr<float>();
        const scalar_t* bias = p.has_bias ? r.bias.data_ptr<scalar_t>() : nullptr;
        const uint8_t* in_mask = p.has_in_mask ? r.in_mask.data_ptr<uint8_t>() : nullptr;
        scalar_t* y = r.y.data_ptr<scalar_t>();
        uint8_t* out_mask = p.act ? r.out_mask.data_ptr<uint8_t>() : nullptr;
        at::parallel_for(0, p.total, 1024, [&](int64_t lo, int64_t hi) {
            for (int64_t i = lo; i < hi; ++i) run_one<scalar_t, A>(p, i, x, f, bias, in_mask, y, out_mask);
        });
    });
}

}  // namespace resample
}  // namespace clipstyle
#endif  // !__CUDACC__

#ifdef CLIPSTYLE_WITH_CUDA
#include <ATen/core/Tensor.h>
namespace clipstyle {
namespace resample {
// Launches resample_kernel for tensors prepared by prepare() (defined in each op's .cu).
void launch_cuda(const Params& p, const at::Tensor& x, const at::Tensor& f, const at::Tensor& bias,
                 const at::Tensor& in_mask, at::Tensor& y, at::Tensor& out_mask);
}  // namespace resample
}  // namespace clipstyle
#endif
