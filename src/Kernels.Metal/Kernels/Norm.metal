// RMSNorm, one threadgroup per row: y = x * rsqrt(mean(x^2) + eps) * w (w plain, or absent).
// Per-head norms are rows = tokens * heads, dim = head_dim. In place (y == x) is allowed: every
// element is read and written by the same thread. Geometry: KernelGeometry.RmsNorm.

struct NormParams {
    uint rows;
    uint dim;
    float eps;
    uint weight_type;   // ScalarType of w
    uint has_weight;
};

kernel void rms_norm(device const float* x [[buffer(0)]],
                     device float* y [[buffer(1)]],
                     device const uchar* w [[buffer(2)]],
                     constant NormParams& p [[buffer(3)]],
                     uint row [[threadgroup_position_in_grid]],
                     uint tid [[thread_index_in_threadgroup]],
                     uint threads [[threads_per_threadgroup]],
                     uint sg [[simdgroup_index_in_threadgroup]],
                     uint lane [[thread_index_in_simdgroup]],
                     uint simdgroups [[simdgroups_per_threadgroup]]) {
    threadgroup float partial[32];
    device const float* xr = x + ulong(row) * p.dim;
    device float* yr = y + ulong(row) * p.dim;

    float squares = 0.0f;
    for (uint i = tid; i < p.dim; i += threads) squares += xr[i] * xr[i];
    squares = simd_sum(squares);
    if (lane == 0) partial[sg] = squares;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (sg == 0) {
        float total = simd_sum(lane < simdgroups ? partial[lane] : 0.0f);
        if (lane == 0) partial[0] = total;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    float inv = precise::rsqrt(partial[0] / float(p.dim) + p.eps);

    for (uint i = tid; i < p.dim; i += threads) {
        float v = xr[i] * inv;
        yr[i] = p.has_weight != 0 ? v * load_scalar(w, i, p.weight_type) : v;
    }
}
