// Python bindings of filtered_lrelu (see filtered_lrelu.h): the gather passes of the forward pass
// and their adjoints in reverse order, on CUDA (builds with -DCLIPSTYLE_WITH_CUDA) or as CPU loops over the same
// element functions (so the tests can check the arithmetic without a GPU; the library's CPU path is
// ref.py).

#include <torch/extension.h>

#include "filtered_lrelu.h"

namespace clipstyle {
namespace filtered_lrelu {
namespace {

using resample::Prepared;
using resample::prepare;

void run(Prepared& r) {
    if (r.x.is_cuda()) {
#ifdef CLIPSTYLE_WITH_CUDA
        resample::launch_cuda(r.p, r.x, r.f, r.bias, r.in_mask, r.y, r.out_mask);
#else
        TORCH_CHECK(false, "filtered_lrelu: this build of the extension has no CUDA support");
#endif
    } else {
        resample::run_cpu(r);
    }
}

const at::Tensor kNone;

// The resampling passes of the op: up (1 or 2, see plan_passes) and down (0, 1 or 2).
struct Plan {
    std::vector<resample::Pass> ups, downs;
};

Plan plan(const at::Tensor& fu, const at::Tensor& fd, int64_t up, int64_t down, int64_t px0, int64_t px1, int64_t py0,
          int64_t py1, bool has_down) {
    TORCH_CHECK(up >= 1 && down >= 1, "filtered_lrelu: up and down must be >= 1");
    Plan p;
    p.ups = resample::plan_passes(fu, int(up), int(up), 1, 1, int(px0), int(px1), int(py0), int(py1), double(up * up));
    if (has_down) p.downs = resample::plan_passes(fd, 1, 1, int(down), int(down), 0, 0, 0, 0, 1.0);
    return p;
}

Prepared prepare_pass(const at::Tensor& x, const resample::Pass& s, bool flip, const at::Tensor& bias,
                      const at::Tensor& in_mask, double mask_gain, double mask_slope, bool act, double slope,
                      double gain, double clamp) {
    return prepare(x, s.f, s.upx, s.upy, s.downx, s.downy, s.px0, s.px1, s.py0, s.py1, flip, s.gain, bias, in_mask,
                   mask_gain, mask_slope, act, slope, gain, clamp);
}

}  // namespace

std::vector<at::Tensor> forward(const at::Tensor& x, const at::Tensor& fu, const at::Tensor& fd, const at::Tensor& b,
                                int64_t up, int64_t down, int64_t px0, int64_t px1, int64_t py0, int64_t py1, bool flip,
                                double slope, double gain, double clamp, bool has_down) {
    const Plan p = plan(fu, fd, up, down, px0, px1, py0, py1, has_down);
    at::Tensor y = x, mask;
    for (size_t i = 0; i < p.ups.size(); ++i) {
        const bool first = i == 0, last = i + 1 == p.ups.size();  // bias on the first read, act on the last write
        Prepared r = prepare_pass(y, p.ups[i], flip, first ? b : kNone, kNone, 0.0, 0.0, last, slope, gain, clamp);
        run(r);
        y = r.y;
        if (last) mask = r.out_mask;
    }
    for (const auto& s : p.downs) {
        Prepared r = prepare_pass(y, s, flip, kNone, kNone, 0.0, 0.0, false, 0.0, 0.0, -1.0);
        run(r);
        y = r.y;
    }
    return {y, mask};
}

at::Tensor backward(const at::Tensor& grad, const at::Tensor& mask, const at::Tensor& fu, const at::Tensor& fd,
                    int64_t in_h, int64_t in_w, int64_t up, int64_t down, int64_t px0, int64_t px1, int64_t py0,
                    int64_t py1, bool flip, double slope, double gain, bool has_down) {
    TORCH_CHECK(mask.dim() == 4 && mask.scalar_type() == at::kByte, "filtered_lrelu: bad mask");
    const Plan p = plan(fu, fd, up, down, px0, px1, py0, py1, has_down);
    // Input size of every pass, as in forward.
    std::vector<std::pair<int64_t, int64_t>> sizes{{in_h, in_w}};
    for (const auto& s : p.ups) sizes.push_back(resample::pass_output(s, sizes.back().first, sizes.back().second));
    for (const auto& s : p.downs) sizes.push_back(resample::pass_output(s, sizes.back().first, sizes.back().second));
    const size_t n_up = p.ups.size();
    TORCH_CHECK(mask.size(2) == sizes[n_up].first && mask.size(3) == sizes[n_up].second,
                "filtered_lrelu: the mask does not match the upsampled size");
    at::Tensor g = grad;
    for (size_t i = p.downs.size(); i-- > 0;) {
        const auto& in = sizes[n_up + i];
        Prepared r = prepare_pass(g, resample::adjoint_pass(p.downs[i], in.first, in.second), !flip, kNone, kNone,
                                  0.0, 0.0, false, 0.0, 0.0, -1.0);
        run(r);
        g = r.y;
    }
    for (size_t i = n_up; i-- > 0;) {
        const bool last = i + 1 == n_up;  // the activation's derivative is read through the mask there
        const auto& in = sizes[i];
        Prepared r = prepare_pass(g, resample::adjoint_pass(p.ups[i], in.first, in.second), !flip, kNone,
                                  last ? mask : kNone, gain, slope, false, 0.0, 0.0, -1.0);
        run(r);
        g = r.y;
    }
    TORCH_CHECK(g.size(2) == in_h && g.size(3) == in_w, "filtered_lrelu: internal size mismatch in backward");
    return g;
}

}  // namespace filtered_lrelu
}  // namespace clipstyle

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "clipstyle filtered_lrelu: upsample, leaky ReLU, clamp, downsample";
    m.def("forward", &clipstyle::filtered_lrelu::forward, "returns (y, mask)");
    m.def("backward", &clipstyle::filtered_lrelu::backward, "dL/dx");
    m.attr("has_cuda") = py::bool_(
#ifdef CLIPSTYLE_WITH_CUDA
        true
#else
        false
#endif
    );
}
