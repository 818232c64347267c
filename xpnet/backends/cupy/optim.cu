// The optimizers' updates of xpnet/backends/cupy/kernels.py: one launch over the flat parameter buffer.
#include "math.cuh"

// A scalar given either by value (ptr null, kind 0) or as a device 0-d array that a CUDA graph replay
// may have changed since capture: kind says its dtype.
__device__ __forceinline__ double read_scalar(const void* ptr, int kind, double value) {
    switch (kind) {
        case 1: return (double)*(const float*)ptr;
        case 2: return *(const double*)ptr;
        case 3: return (double)*(const long long*)ptr;
        case 4: return (double)*(const int*)ptr;
        default: return value;
    }
}

// core.update_math.sgd_update; vel null when momentum == 0. gate (a device bool) false: change nothing.
template <typename T>
__device__ void sgd_update(T* p, const T* g, T* vel, long long n, const void* lr_ptr, int lr_kind,
                           double lr_value, double momentum, int nesterov, double wd, const bool* gate) {
    if (gate != nullptr && !*gate) return;
    const T lr = (T)read_scalar(lr_ptr, lr_kind, lr_value), mu = (T)momentum, wd_t = (T)wd;
    XP_FOR(i, n) {
        T gi = g[i];
        if (wd != 0.0) gi = gi + wd_t * p[i];
        if (vel != nullptr) {
            const T vi = vel[i] * mu + gi;
            vel[i] = vi;
            gi = nesterov ? gi + mu * vi : vi;
        }
        p[i] = p[i] - lr * gi;
    }
}

// core.update_math.adam_update with torch's bias correction; c1, c2 in double from the (device) step.
template <typename T>
__device__ void adam_update(T* p, const T* g, T* m, T* v, long long n, const void* lr_ptr, int lr_kind,
                            double lr_value, const void* step_ptr, int step_kind, double step_value,
                            double beta1, double beta2, double eps, double wd, int decoupled, const bool* gate) {
    if (gate != nullptr && !*gate) return;
    const double lr = read_scalar(lr_ptr, lr_kind, lr_value), step = read_scalar(step_ptr, step_kind, step_value);
    const double c1 = 1.0 - pow(beta1, step), c2 = 1.0 - pow(beta2, step);
    const T decay = (T)(1.0 - lr * wd), wd_t = (T)wd, b1 = (T)beta1, b2 = (T)beta2;
    const T one_b1 = (T)(1.0 - beta1), one_b2 = (T)(1.0 - beta2);
    const T inv_sqrt_c2 = (T)(1.0 / sqrt(c2)), eps_t = (T)eps, step_size = (T)(lr / c1);
    XP_FOR(i, n) {
        T pi = p[i], gi = g[i];
        if (decoupled) pi = pi * decay;
        else if (wd != 0.0) gi = gi + wd_t * pi;
        const T mi = m[i] * b1 + one_b1 * gi;
        const T vi = v[i] * b2 + one_b2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * (mi / (xp_sqrt(vi) * inv_sqrt_c2 + eps_t));
    }
}

// The extern "C" entry points xpnet_<op>_f32 / _f64: plain names, no C++ mangling to look up.
#define XPNET_OPTIM(SFX, T)                                                                                \
    extern "C" __global__ void xpnet_sgd_update_##SFX(T* p, const T* g, T* vel, long long n,              \
                                                      const void* lr_ptr, int lr_kind, double lr_value,    \
                                                      double momentum, int nesterov, double wd,            \
                                                      const bool* gate) {                                  \
        sgd_update<T>(p, g, vel, n, lr_ptr, lr_kind, lr_value, momentum, nesterov, wd, gate);              \
    }                                                                                                      \
    extern "C" __global__ void xpnet_adam_update_##SFX(T* p, const T* g, T* m, T* v, long long n,         \
                                                       const void* lr_ptr, int lr_kind, double lr_value,   \
                                                       const void* step_ptr, int step_kind,                \
                                                       double step_value, double beta1, double beta2,      \
                                                       double eps, double wd, int decoupled,               \
                                                       const bool* gate) {                                 \
        adam_update<T>(p, g, m, v, n, lr_ptr, lr_kind, lr_value, step_ptr, step_kind, step_value, beta1,   \
                       beta2, eps, wd, decoupled, gate);                                                   \
    }

XPNET_OPTIM(f32, float)
XPNET_OPTIM(f64, double)
