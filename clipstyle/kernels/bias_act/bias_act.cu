// CUDA kernels of the fused bias + activation + gain + clamp op. The element math lives in
// bias_act.h (shared with the CPU loops of bias_act.cpp); here only the grid-stride loops.
// Every tensor is dense with the same strides, so element i of x, y, g and gx share memory offset i
// and the bias index is (i / stride_dim) % size_dim.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "bias_act.h"

namespace clipstyle {
namespace bias_act {
namespace {

constexpr int kThreads = 256;

// Enough blocks to fill the device (grid-stride loops cover the rest).
int blocks_for(int64_t n) {
    int device = 0, sms = 80;
    C10_CUDA_CHECK(cudaGetDevice(&device));
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    int64_t blocks = (n + kThreads - 1) / kThreads;
    int64_t cap = int64_t(sms) * 32;
    return int(blocks < cap ? (blocks > 0 ? blocks : 1) : cap);
}

template <typename T>
__global__ void forward_kernel(Params p, const T* __restrict__ x, const T* __restrict__ b, T* __restrict__ y) {
    using A = at::opmath_type<T>;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < p.numel; i += int64_t(gridDim.x) * blockDim.x) {
        A bias = p.has_bias ? A(b[bias_index(p, i)]) : A(0);
        y[i] = T(forward_one<A>(p, A(x[i]), bias));
    }
}

template <typename T>
__global__ void backward_kernel(Params p, const T* __restrict__ g, const T* __restrict__ r, const T* __restrict__ b,
                                T* __restrict__ gx) {
    using A = at::opmath_type<T>;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < p.numel; i += int64_t(gridDim.x) * blockDim.x) {
        A bias = (p.has_bias && !p.from_y) ? A(b[bias_index(p, i)]) : A(0);
        gx[i] = T(backward_one<A>(p, A(g[i]), A(r[i]), bias));
    }
}

}  // namespace

void launch_forward(const Params& p, const at::Tensor& x, const at::Tensor& b, at::Tensor& y) {
    if (p.numel == 0) return;
    const c10::cuda::CUDAGuard guard(x.device());
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bias_act_forward", [&] {
        forward_kernel<scalar_t><<<blocks_for(p.numel), kThreads, 0, stream>>>(
            p, x.data_ptr<scalar_t>(), p.has_bias ? b.data_ptr<scalar_t>() : nullptr, y.data_ptr<scalar_t>());
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void launch_backward(const Params& p, const at::Tensor& g, const at::Tensor& r, const at::Tensor& b, at::Tensor& gx) {
    if (p.numel == 0) return;
    const c10::cuda::CUDAGuard guard(g.device());
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "bias_act_backward", [&] {
        backward_kernel<scalar_t><<<blocks_for(p.numel), kThreads, 0, stream>>>(
            p, g.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(),
            (p.has_bias && !p.from_y) ? b.data_ptr<scalar_t>() : nullptr, gx.data_ptr<scalar_t>());
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace bias_act
}  // namespace clipstyle
