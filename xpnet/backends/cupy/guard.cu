// The device guard's per-step bookkeeping for xpnet/backends/cupy/guard.py, in one CUDA thread, with
// DeviceState.watch's contract: sums = [loss_sum, seen, skipped, died_at, steps]; alive, gate 0-d bools.
template <typename T>
__device__ void watch(const T* value, double* sums, bool* alive, bool* gate, double rows, int stop) {
    double v = (double)value[0];
    bool ok = isfinite(v);
    bool g = stop ? (alive[0] && ok) : ok;
    double here = sums[4] + 1.0;
    if (stop && alive[0] && !ok) sums[3] = here;  // the first non-finite step, counted from the start
    sums[4] = here;
    if (g) { sums[0] += v * rows; sums[1] += rows; } else { sums[2] += 1.0; }
    if (stop) alive[0] = g;  // sticky: once dead, every later update in the window is dropped too
    gate[0] = g;
}
extern "C" __global__ void xpnet_guard_watch_f32(const float* value, double* sums, bool* alive, bool* gate,
                                                 double rows, int stop) { watch(value, sums, alive, gate, rows, stop); }
extern "C" __global__ void xpnet_guard_watch_f64(const double* value, double* sums, bool* alive, bool* gate,
                                                 double rows, int stop) { watch(value, sums, alive, gate, rows, stop); }
