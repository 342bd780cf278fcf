// Python bindings of the fused bias + activation op: argument checks, output allocation, and the
// choice between the CUDA launchers (built with -DCLIPSTYLE_WITH_CUDA) and plain CPU loops over the
// same element math (bias_act.h). The CPU loops exist so that the kernels' arithmetic can be tested
// on machines without a GPU; the library's CPU path is the PyTorch reference (ref.py).
//
//   forward(x, b, dim, act, alpha, gain, clamp) -> y
//   backward(g, r, b, dim, act, alpha, gain, clamp, from_y) -> dL/dx      (r = x, or y when from_y)
// x: any shape, float16/bfloat16/float32/float64; b: [x.shape[dim]] of x's dtype or an empty tensor;
// clamp < 0 means none. dL/db is the sum of dL/dx over every dim but ``dim`` (done in Python).

#include <torch/extension.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include "bias_act.h"

namespace clipstyle {
namespace bias_act {
namespace {

at::Tensor dense(const at::Tensor& t) { return t.is_non_overlapping_and_dense() ? t : t.contiguous(); }

// ``t`` with exactly the strides of ``like`` (a copy when they differ).
at::Tensor same_layout(const at::Tensor& t, const at::Tensor& like) {
    if (t.strides() == like.strides()) return t;
    return at::empty_like(like).copy_(t);
}

Params make_params(const at::Tensor& x, const at::Tensor& b, int64_t dim, int64_t act, double alpha, double gain,
                   double clamp, bool from_y) {
    TORCH_CHECK(x.is_floating_point(), "bias_act: x must be floating point, got ", x.scalar_type());
    TORCH_CHECK(act >= LINEAR && act <= SWISH, "bias_act: unknown activation code ", act);
    Params p{};
    p.numel = x.numel();
    p.has_bias = b.defined() && b.numel() > 0;
    if (x.dim() > 0) {
        TORCH_CHECK(dim >= 0 && dim < x.dim(), "bias_act: dim ", dim, " out of range for a ", x.dim(), "-d tensor");
        p.stride_dim = x.stride(dim) > 0 ? x.stride(dim) : 1;
        p.size_dim = x.size(dim) > 0 ? x.size(dim) : 1;
    } else {
        p.stride_dim = 1;
        p.size_dim = 1;
    }
    if (p.has_bias) {
        TORCH_CHECK(b.dim() == 1 && b.size(0) == x.size(dim), "bias_act: bias must have shape [", x.size(dim), "]");
        TORCH_CHECK(b.scalar_type() == x.scalar_type(), "bias_act: bias dtype must match x");
        TORCH_CHECK(b.device() == x.device(), "bias_act: bias must be on x's device");
    }
    p.act = int(act);
    p.alpha = alpha;
    p.gain = gain;
    p.clamp = clamp;
    p.from_y = from_y;
    return p;
}

template <typename T>
void cpu_forward(const Params& p, const T* x, const T* b, T* y) {
    using A = at::opmath_type<T>;
    at::parallel_for(0, p.numel, 4096, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i)
            y[i] = T(forward_one<A>(p, A(x[i]), p.has_bias ? A(b[bias_index(p, i)]) : A(0)));
    });
}

template <typename T>
void cpu_backward(const Params& p, const T* g, const T* r, const T* b, T* gx) {
    using A = at::opmath_type<T>;
    at::parallel_for(0, p.numel, 4096, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) {
            A bias = (p.has_bias && !p.from_y) ? A(b[bias_index(p, i)]) : A(0);
            gx[i] = T(backward_one<A>(p, A(g[i]), A(r[i]), bias));
        }
    });
}

}  // namespace

at::Tensor forward(const at::Tensor& x_in, const at::Tensor& b_in, int64_t dim, int64_t act, double alpha,
                   double gain, double clamp) {
    at::Tensor x = dense(x_in);
    at::Tensor b = b_in.defined() && b_in.numel() > 0 ? b_in.contiguous() : at::Tensor();
    Params p = make_params(x, b, dim, act, alpha, gain, clamp, false);
    at::Tensor y = at::empty_like(x);  // dense input: same strides
    if (x.is_cuda()) {
#ifdef CLIPSTYLE_WITH_CUDA
        launch_forward(p, x, b, y);
#else
        TORCH_CHECK(false, "bias_act: this build of the extension has no CUDA support");
#endif
    } else if (p.numel > 0) {
        AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bias_act_forward_cpu", [&] {
            cpu_forward<scalar_t>(p, x.data_ptr<scalar_t>(), p.has_bias ? b.data_ptr<scalar_t>() : nullptr,
                                  y.data_ptr<scalar_t>());
        });
    }
    return y;
}

at::Tensor backward(const at::Tensor& g_in, const at::Tensor& r_in, const at::Tensor& b_in, int64_t dim, int64_t act,
                    double alpha, double gain, double clamp, bool from_y) {
    at::Tensor r = dense(r_in);
    TORCH_CHECK(g_in.sizes() == r.sizes(), "bias_act: gradient shape ", g_in.sizes(), " != ", r.sizes());
    TORCH_CHECK(g_in.scalar_type() == r.scalar_type(), "bias_act: gradient dtype must match the saved tensor");
    TORCH_CHECK(!from_y || act == LINEAR || act == RELU || act == LRELU,
                "bias_act: backward from y is only valid for linear/relu/lrelu");
    at::Tensor g = same_layout(g_in, r);
    at::Tensor b = b_in.defined() && b_in.numel() > 0 ? b_in.contiguous() : at::Tensor();
    Params p = make_params(r, b, dim, act, alpha, gain, clamp, from_y);
    at::Tensor gx = at::empty_like(r);
    if (r.is_cuda()) {
#ifdef CLIPSTYLE_WITH_CUDA
        launch_backward(p, g, r, b, gx);
#else
        TORCH_CHECK(false, "bias_act: this build of the extension has no CUDA support");
#endif
    } else if (p.numel > 0) {
        AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, r.scalar_type(), "bias_act_backward_cpu", [&] {
            cpu_backward<scalar_t>(p, g.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(),
                                   (p.has_bias && !from_y) ? b.data_ptr<scalar_t>() : nullptr,
                                   gx.data_ptr<scalar_t>());
        });
    }
    return gx;
}

}  // namespace bias_act
}  // namespace clipstyle

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "clipstyle fused bias + activation + gain + clamp";
    m.def("forward", &clipstyle::bias_act::forward, "y = clamp(act(x + b) * gain)");
    m.def("backward", &clipstyle::bias_act::backward, "dL/dx of bias_act");
    m.attr("has_cuda") = py::bool_(
#ifdef CLIPSTYLE_WITH_CUDA
        true
#else
        false
#endif
    );
}
