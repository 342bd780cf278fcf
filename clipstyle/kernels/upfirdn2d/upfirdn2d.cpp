// Python bindings of upfirdn2d: checks and allocation (upfirdn2d.h: prepare), then the CUDA launcher
// (builds with -DCLIPSTYLE_WITH_CUDA) or CPU loops over the same element function. The CPU loops let
// the tests check the kernel arithmetic without a GPU; the library's CPU path is ref.py.
//
//   upfirdn2d(x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip, gain) -> y
// x: [N, C, H, W] float16/bfloat16/float32/float64, any strides; f: float32 [fh, fw], or [T] for a
// separable filter (run as an x pass then a y pass). y: [N, C, OH, OW] in x's suggested memory format
// with OH = (H*upy + py0 + py1 - fh) / downy + 1 and OW likewise.

#include <torch/extension.h>

#include "upfirdn2d.h"

namespace clipstyle {
namespace resample {

at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& f, int64_t upx, int64_t upy, int64_t downx, int64_t downy,
                     int64_t px0, int64_t px1, int64_t py0, int64_t py1, bool flip, double gain) {
    const at::Tensor none;
    at::Tensor y = x;
    for (const Pass& s : plan_passes(f, int(upx), int(upy), int(downx), int(downy), int(px0), int(px1), int(py0),
                                     int(py1), gain)) {
        Prepared r = prepare(y, s.f, s.upx, s.upy, s.downx, s.downy, s.px0, s.px1, s.py0, s.py1, flip, s.gain, none,
                             none, 0.0, 0.0, false, 0.0, 0.0, -1.0);
        if (y.is_cuda()) {
#ifdef CLIPSTYLE_WITH_CUDA
            launch_cuda(r.p, r.x, r.f, r.bias, r.in_mask, r.y, r.out_mask);
#else
            TORCH_CHECK(false, "upfirdn2d: this build of the extension has no CUDA support");
#endif
        } else {
            run_cpu(r);
        }
        y = r.y;
    }
    return y;
}

}  // namespace resample
}  // namespace clipstyle

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "clipstyle upfirdn2d: upsample, pad, FIR filter, downsample";
    m.def("upfirdn2d", &clipstyle::resample::upfirdn2d, "upfirdn2d (see upfirdn2d.cpp)");
    m.attr("has_cuda") = py::bool_(
#ifdef CLIPSTYLE_WITH_CUDA
        true
#else
        false
#endif
    );
}
