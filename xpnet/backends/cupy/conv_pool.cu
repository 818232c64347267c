// Window kernels for xpnet/backends/cupy/conv.py. Each entry point is a template body instantiated by
// XPNET_CONV_POOL below for T in {float, double} and flat-index type I in {int, long long}: extern "C"
// names (xpnet_im2col_f32_i32, ...) need no C++ name mangling to look up. Each output element is computed
// by one iteration of a grid-stride loop, independently of the others.
#include "math.cuh"

// The windows covering padded position p along one axis are those with output index o, 0 <= o < n_out,
// and offset p - o * stride in [0, k). The first, in the reference's order of ascending offset, has the
// largest o: min(p / stride, n_out - 1). Each next one has offset + stride and o - 1.
template <typename I>
__device__ __forceinline__ I last_window(I p, I stride, I n_out) {
    const I o = p / stride;
    return o < n_out - 1 ? o : n_out - 1;
}

// cols[(c, i, j), (oh, ow, b)] = x[c, oh * stride + i - pad, ow * stride + j - pad, b], 0 in the padding.
// The batch index b is innermost in both arrays, so neighbouring threads read and write neighbouring
// addresses (coalesced) whenever N > 1.
template <typename T, typename I>
__device__ __forceinline__ void im2col_body(const T* __restrict__ x, T* __restrict__ cols, I total,
                                            I h, I w, I n, I ho, I wo, I k, I stride, I pad) {
    XP_FOR_AS(I, t, total) {
        I q = t;
        const I b = q % n; q /= n;
        const I ow = q % wo; q /= wo;
        const I oh = q % ho; q /= ho;
        const I j = q % k; q /= k;
        const I i = q % k;
        const I c = q / k;
        const I hi = oh * stride + i - pad, wi = ow * stride + j - pad;  // in the unpadded input
        cols[t] = (hi >= 0 && hi < h && wi >= 0 && wi < w) ? x[((c * h + hi) * w + wi) * n + b] : T(0);
    }
}

// x[c, hi, wi, b] = the sum of cols over the windows covering (hi, wi): a gather, so no atomics, and
// the additions run in window position (i, j) ascending, the order the reference adds its K*K slices.
template <typename T, typename I>
__device__ __forceinline__ void col2im_body(const T* __restrict__ cols, T* __restrict__ x, I total,
                                            I h, I w, I n, I ho, I wo, I k, I stride, I pad) {
    const I row = ho * wo * n;  // the length of one row (c, i, j) of cols
    XP_FOR_AS(I, t, total) {
        I q = t;
        const I b = q % n; q /= n;
        const I wp = q % w + pad; q /= w;  // positions in the padded input, where windows start at 0
        const I hp = q % h + pad;
        const I c = q / h;
        const I oh0 = last_window(hp, stride, ho), ow0 = last_window(wp, stride, wo);
        T acc = T(0);
        for (I i = hp - oh0 * stride, oh = oh0; i < k && oh >= 0; i += stride, --oh) {
            for (I j = wp - ow0 * stride, ow = ow0; j < k && ow >= 0; j += stride, --ow) {
                acc += cols[((c * k + i) * k + j) * row + (oh * wo + ow) * n + b];
            }
        }
        x[t] = acc;
    }
}

// y[nc, oh, ow] = the window's maximum and index[nc, oh, ow] = i * k + j of its first maximum in
// row-major window order: a later value wins only if strictly greater, so ties keep the first. A NaN
// makes y NaN but moves no index, as the reference's xp.maximum and `part > best` do.
template <typename T, typename I>
__device__ __forceinline__ void max_pool_body(const T* __restrict__ x, T* __restrict__ y,
                                              short* __restrict__ index, I total, I h, I w, I ho, I wo,
                                              I k, I stride) {
    XP_FOR_AS(I, t, total) {
        const I ow = t % wo, oh = (t / wo) % ho, nc = t / (wo * ho);
        const T* win = x + (nc * h + oh * stride) * w + ow * stride;
        T best = win[0];
        int arg = 0;
        for (I i = 0; i < k; ++i) {
            for (I j = 0; j < k; ++j) {
                const T v = win[i * w + j];
                if (v > best) {
                    best = v;
                    arg = (int)(i * k + j);
                } else if (v != v) {
                    best = v;  // NaN: every later comparison is false, so y stays NaN
                }
            }
        }
        y[t] = best;
        index[t] = (short)arg;
    }
}

// dx[nc, hi, wi] = the sum of dy over the windows whose winner (hi, wi) is: each window's gradient goes
// to exactly one element. A gather over the covering windows, in the reference's (i, j) order.
template <typename T, typename I>
__device__ __forceinline__ void max_pool_backward_body(const T* __restrict__ dy,
                                                       const short* __restrict__ index,
                                                       T* __restrict__ dx, I total, I h, I w, I ho,
                                                       I wo, I k, I stride) {
    XP_FOR_AS(I, t, total) {
        const I wi = t % w, hi = (t / w) % h, nc = t / (w * h);
        const I oh0 = last_window(hi, stride, ho), ow0 = last_window(wi, stride, wo);
        T acc = T(0);
        for (I i = hi - oh0 * stride, oh = oh0; i < k && oh >= 0; i += stride, --oh) {
            for (I j = wi - ow0 * stride, ow = ow0; j < k && ow >= 0; j += stride, --ow) {
                const I o = (nc * ho + oh) * wo + ow;
                if (index[o] == i * k + j) acc += dy[o];
            }
        }
        dx[t] = acc;
    }
}

#define XPNET_CONV_POOL(SUFFIX, T, I)                                                                      \
    extern "C" __global__ void xpnet_im2col_##SUFFIX(const T* x, T* cols, I total, I h, I w, I n, I ho,   \
                                                     I wo, I k, I stride, I pad) {                         \
        im2col_body<T, I>(x, cols, total, h, w, n, ho, wo, k, stride, pad);                               \
    }                                                                                                      \
    extern "C" __global__ void xpnet_col2im_##SUFFIX(const T* cols, T* x, I total, I h, I w, I n, I ho,   \
                                                     I wo, I k, I stride, I pad) {                         \
        col2im_body<T, I>(cols, x, total, h, w, n, ho, wo, k, stride, pad);                               \
    }                                                                                                      \
    extern "C" __global__ void xpnet_max_pool_##SUFFIX(const T* x, T* y, short* index, I total, I h, I w, \
                                                       I ho, I wo, I k, I stride) {                        \
        max_pool_body<T, I>(x, y, index, total, h, w, ho, wo, k, stride);                                 \
    }                                                                                                      \
    extern "C" __global__ void xpnet_max_pool_backward_##SUFFIX(const T* dy, const short* index, T* dx,   \
                                                                I total, I h, I w, I ho, I wo, I k,        \
                                                                I stride) {                                \
        max_pool_backward_body<T, I>(dy, index, dx, total, h, w, ho, wo, k, stride);                      \
    }

XPNET_CONV_POOL(f32_i32, float, int)
XPNET_CONV_POOL(f32_i64, float, long long)
XPNET_CONV_POOL(f64_i32, double, int)
XPNET_CONV_POOL(f64_i64, double, long long)
