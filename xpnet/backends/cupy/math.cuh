// The prelude of xpnet's CUDA kernels: launch.cuda_source() pastes it where a .cu file includes it, so
// each source reaches NVRTC (and the tests' host build) as one self-contained text.

// Overloads so one template body serves float and double.
__device__ __forceinline__ float xp_exp(float x) { return expf(x); }
__device__ __forceinline__ double xp_exp(double x) { return exp(x); }
__device__ __forceinline__ float xp_log(float x) { return logf(x); }
__device__ __forceinline__ double xp_log(double x) { return log(x); }
__device__ __forceinline__ float xp_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double xp_sqrt(double x) { return sqrt(x); }

// Grid-stride loop over 0 <= i < n with an index of type I: correct for any grid size, so launch() may cap
// its grid. A 32-bit I is the caller's promise that n plus the whole grid's thread count fits in it.
#define XP_FOR_AS(I, i, n) for (I i = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; i < (n); \
                                i += (I)blockDim.x * (I)gridDim.x)
#define XP_FOR(i, n) XP_FOR_AS(long long, i, n)
