// CUDA build of filtered_lrelu: both passes and both adjoints run the gather kernel of
// upfirdn2d/upfirdn2d.h (bias prologue, mask prologue and lrelu/clamp epilogue switched by Params).

#include "filtered_lrelu.h"

namespace clipstyle {
namespace resample {

void launch_cuda(const Params& p, const at::Tensor& x, const at::Tensor& f, const at::Tensor& bias,
                 const at::Tensor& in_mask, at::Tensor& y, at::Tensor& out_mask) {
    launch_cuda_impl(p, x, f, bias, in_mask, y, out_mask);
}

}  // namespace resample
}  // namespace clipstyle
