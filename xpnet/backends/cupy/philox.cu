// Philox4x32-10 uniforms for xpnet/backends/cupy/philox.py (whose NumPy mirror matches them bit for bit).
#include "math.cuh"

// Philox4x32-10 (Salmon et al. 2011, Random123): 10 rounds, key bumped by the Weyl constants between rounds.
__device__ __forceinline__ void philox4x32_10(unsigned int c[4], unsigned int k0, unsigned int k1) {
    for (int r = 0; r < 10; ++r) {
        if (r > 0) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
        const unsigned int hi0 = __umulhi(0xD2511F53u, c[0]), lo0 = 0xD2511F53u * c[0];
        const unsigned int hi1 = __umulhi(0xCD9E8D57u, c[2]), lo1 = 0xCD9E8D57u * c[2];
        c[0] = hi1 ^ c[1] ^ k0; c[1] = lo1; c[2] = hi0 ^ c[3] ^ k1; c[3] = lo0;
    }
}

// The 4 words of block j: counter (j_lo, j_hi, ctr_lo, ctr_hi) under key (k0, k1).
__device__ __forceinline__ void philox_block(unsigned int w[4], long long j, const unsigned int* ctr,
                                             const unsigned int* key) {
    w[0] = (unsigned int)j;
    w[1] = (unsigned int)((unsigned long long)j >> 32);
    w[2] = ctr[0];
    w[3] = ctr[1];
    philox4x32_10(w, key[0], key[1]);
}

// Block j = counter words (j_lo, j_hi, ctr_lo, ctr_hi) under key (k0, k1) gives 4 words: float32 element
// 4j+t is word t; float64 element 2j+t is the 64-bit (word 2t+1 << 32 | word 2t). The call counter is read
// from the device (ctr[0] low word, ctr[1] high: a 0-d uint64 or a 2-element uint32 array alike), and so
// is the key: a captured graph then follows a reseeding between replays instead of keeping the old seed.
extern "C" __global__ void xpnet_philox_uniform_f32(float* out, long long size, const unsigned int* ctr,
                                                    const unsigned int* key) {
    XP_FOR(j, (size + 3) / 4) {
        unsigned int w[4];
        philox_block(w, j, ctr, key);
        for (int t = 0; t < 4; ++t)
            if (4 * j + t < size) out[4 * j + t] = (float)(w[t] >> 8) * 0x1p-24f;  // 24 bits: exact, < 1
    }
}
extern "C" __global__ void xpnet_philox_uniform_f64(double* out, long long size, const unsigned int* ctr,
                                                    const unsigned int* key) {
    XP_FOR(j, (size + 1) / 2) {
        unsigned int w[4];
        philox_block(w, j, ctr, key);
        for (int t = 0; t < 2; ++t) {
            const unsigned long long bits = ((unsigned long long)w[2 * t + 1] << 32) | w[2 * t];
            if (2 * j + t < size) out[2 * j + t] = (double)(bits >> 11) * 0x1p-53;  // 53 bits: exact, < 1
        }
    }
}
// Launched after the draw on the same stream, so every replay of a captured graph draws new numbers.
// Two 32-bit words with a carry: a 2-element uint32 view need not be 8-byte aligned.
extern "C" __global__ void xpnet_philox_counter_increment(unsigned int* ctr) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        const unsigned int lo = ctr[0] + 1u;
        ctr[0] = lo;
        if (lo == 0u) ctr[1] += 1u;
    }
}
