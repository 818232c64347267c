// Elementwise kernels of xpnet/backends/cupy/kernels.py: the activations' fused passes.
#include "math.cuh"

// The 0/1 mask as a float, and y = x * mask (not max(x, 0)): NaN and -0.0 come out as the reference's.
template <typename T>
__device__ void relu_forward(const T* x, T* y, T* mask, long long n) {
    XP_FOR(i, n) { const T xi = x[i], mi = xi > (T)0 ? (T)1 : (T)0; mask[i] = mi; y[i] = xi * mi; }
}
// z = y + b over the rows of (n, f) y; out may be y itself (each element is read before it is written).
template <typename T>
__device__ void bias_relu_forward(const T* y, const T* b, T* out, T* mask, long long n, long long f) {
    XP_FOR(i, n) { const T z = y[i] + b[i % f], mi = z > (T)0 ? (T)1 : (T)0; mask[i] = mi; out[i] = z * mi; }
}
template <typename T>
__device__ void sigmoid_backward(const T* dy, const T* y, T* dx, long long n) {
    XP_FOR(i, n) { const T yi = y[i]; dx[i] = (dy[i] * yi) * ((T)1 - yi); }
}
template <typename T>
__device__ void tanh_backward(const T* dy, const T* y, T* dx, long long n) {
    XP_FOR(i, n) { const T yi = y[i]; dx[i] = dy[i] * ((T)1 - yi * yi); }
}

// The extern "C" entry points xpnet_<op>_f32 / _f64: plain names, no C++ mangling to look up.
#define XPNET_ELEMENTWISE(SFX, T)                                                                          \
    extern "C" __global__ void xpnet_relu_forward_##SFX(const T* x, T* y, T* mask, long long n) {         \
        relu_forward<T>(x, y, mask, n);                                                                    \
    }                                                                                                      \
    extern "C" __global__ void xpnet_bias_relu_forward_##SFX(const T* y, const T* b, T* out, T* mask,     \
                                                             long long n, long long f) {                   \
        bias_relu_forward<T>(y, b, out, mask, n, f);                                                       \
    }                                                                                                      \
    extern "C" __global__ void xpnet_sigmoid_backward_##SFX(const T* dy, const T* y, T* dx, long long n) { \
        sigmoid_backward<T>(dy, y, dx, n);                                                                 \
    }                                                                                                      \
    extern "C" __global__ void xpnet_tanh_backward_##SFX(const T* dy, const T* y, T* dx, long long n) {   \
        tanh_backward<T>(dy, y, dx, n);                                                                    \
    }

XPNET_ELEMENTWISE(f32, float)
XPNET_ELEMENTWISE(f64, double)
