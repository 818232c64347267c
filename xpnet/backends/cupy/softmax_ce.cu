// Softmax cross-entropy with integer labels for xpnet/backends/cupy/kernels.py: per-row loss and gradient
// in one launch, their mean in a second.
#include "math.cuh"

template <typename T> __device__ __forceinline__ T warp_max(T x) {
    for (int o = 16; o > 0; o >>= 1) { const T y = __shfl_xor_sync(0xffffffffu, x, o); x = y > x ? y : x; }
    return x;
}
template <typename T> __device__ __forceinline__ T warp_sum(T x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// One warp per row (blockDim a multiple of 32, so a warp never straddles rows and exits as a whole):
// the max-shifted logsumexp keeps logits of +-1e4 finite. Writes the row's loss and its gradient row.
// A label outside 0..c-1 gives NaN (loss and gradient row) instead of reading out of bounds.
template <typename T>
__device__ void softmax_ce_rows(const T* logits, const long long* labels, T* grad, T* row_loss, long long n,
                                int c, T inv_n) {
    const long long row = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (row >= n) return;
    const T* x = logits + row * c;
    T* dx = grad + row * c;
    T mx = x[0];
    for (int j = lane; j < c; j += 32) mx = x[j] > mx ? x[j] : mx;
    mx = warp_max(mx);
    T total = 0;
    for (int j = lane; j < c; j += 32) total += xp_exp(x[j] - mx);
    total = warp_sum(total);
    const long long label = labels[row];
    if (label < 0 || label >= c) {
        const T nan = (T)__longlong_as_double(0x7ff8000000000000LL);
        for (int j = lane; j < c; j += 32) dx[j] = nan;
        if (lane == 0) row_loss[row] = nan;
        return;
    }
    for (int j = lane; j < c; j += 32) {
        T prob = xp_exp(x[j] - mx) / total;
        if (j == label) prob = prob - (T)1;
        dx[j] = prob * inv_n;
    }
    if (lane == 0) row_loss[row] = xp_log(total) - (x[label] - mx);
}

// One block: the mean of the per-row losses, accumulated in double.
template <typename T>
__device__ void mean_rows(const T* row_loss, T* out, long long n) {
    __shared__ double partial[32];
    double acc = 0.0;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) acc += (double)row_loss[i];
    acc = warp_sum(acc);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = acc;
    __syncthreads();
    if (threadIdx.x < 32) {
        acc = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : 0.0;
        acc = warp_sum(acc);
        if (threadIdx.x == 0) *out = (T)(acc / (double)n);
    }
}

// The extern "C" entry points xpnet_<op>_f32 / _f64: plain names, no C++ mangling to look up.
#define XPNET_SOFTMAX_CE(SFX, T)                                                                           \
    extern "C" __global__ void xpnet_softmax_ce_rows_##SFX(const T* logits, const long long* labels,      \
                                                           T* grad, T* row_loss, long long n, int c,       \
                                                           T inv_n) {                                      \
        softmax_ce_rows<T>(logits, labels, grad, row_loss, n, c, inv_n);                                   \
    }                                                                                                      \
    extern "C" __global__ void xpnet_mean_rows_##SFX(const T* row_loss, T* out, long long n) {            \
        mean_rows<T>(row_loss, out, n);                                                                    \
    }

XPNET_SOFTMAX_CE(f32, float)
XPNET_SOFTMAX_CE(f64, double)
