// CUDA build of upfirdn2d: the gather kernel of upfirdn2d.h (one thread per output sample, in the
// output's memory order so that writes coalesce), dispatched over float16/bfloat16/float32/float64.

#include "upfirdn2d.h"

namespace clipstyle {
namespace resample {

void launch_cuda(const Params& p, const at::Tensor& x, const at::Tensor& f, const at::Tensor& bias,
                 const at::Tensor& in_mask, at::Tensor& y, at::Tensor& out_mask) {
    launch_cuda_impl(p, x, f, bias, in_mask, y, out_mask);
}

}  // namespace resample
}  // namespace clipstyle
