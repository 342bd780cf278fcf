// filtered_lrelu (StyleGAN3's alias-free nonlinearity, Karras et al. 2021, §3.2) as passes of the
// upfirdn2d gather (upfirdn2d/upfirdn2d.h); a separable (1-D) filter runs as an x pass then a y pass,
// the bias read in the first up pass, the activation written by the last:
//
//   pass 1 (up):   u = gather(x, fu, up, padding, gain = up²) with the bias added to every input
//                  sample read, then the epilogue a = clamp(lrelu(u, slope) * gain), which also writes
//                  one mask byte per upsampled sample (bit 0: u > 0; bit 1: not clipped by the clamp);
//   pass 2 (down): y = gather(a, fd, down)                       (skipped when down == 1 and no fd)
//
// Backward (first derivatives): the adjoint of pass 2 (an upfirdn2d with up/down swapped, see
// upfirdn2d/cuda.py), then the adjoint of pass 1 reading the gradient through the mask:
// g · (bit 1 ? (bit 0 ? gain : slope · gain) : 0). Only the mask (1 byte per upsampled sample) is
// kept between forward and backward; the upsampled activations are freed after the forward pass.
//
// Filters are float32: [fh, fw], or [T] for a separable filter; "no filter" is [[1]].
#pragma once

#include "upfirdn2d/upfirdn2d.h"

#ifndef __CUDACC__
#include <vector>

namespace clipstyle {
namespace filtered_lrelu {

// Returns {y, mask}. b: [C] of x's dtype or an empty tensor; clamp < 0: none.
std::vector<at::Tensor> forward(const at::Tensor& x, const at::Tensor& fu, const at::Tensor& fd, const at::Tensor& b,
                                int64_t up, int64_t down, int64_t px0, int64_t px1, int64_t py0, int64_t py1, bool flip,
                                double slope, double gain, double clamp, bool has_down);

// dL/dx from dL/dy, the mask of forward() and the input size.
at::Tensor backward(const at::Tensor& grad, const at::Tensor& mask, const at::Tensor& fu, const at::Tensor& fd,
                    int64_t in_h, int64_t in_w, int64_t up, int64_t down, int64_t px0, int64_t px1, int64_t py0,
                    int64_t py1, bool flip, double slope, double gain, bool has_down);

}  // namespace filtered_lrelu
}  // namespace clipstyle
#endif
