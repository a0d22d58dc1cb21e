// Dense (f32 / f16 / bf16) matrix-vector product: y[t, r] = sum_k W[r, k] x[t, k].
// Same shape as qmv: 2 simdgroups * 4 rows per threadgroup (KernelGeometry.Dmv); a lane takes 4
// consecutive columns of every 128-column block, so any column count works (tail lanes idle).

static constant constexpr uint kDmvSimdgroups = 2;
static constant constexpr uint kDmvRowsPerSimdgroup = 4;

template <uint T>
inline float dmv_load(device const uchar* w, ulong i) {
    if (T == kScalarBF16) return bf16_to_float(((device const ushort*)w)[i]);
    if (T == kScalarF16) return float(((device const half*)w)[i]);
    return ((device const float*)w)[i];
}

template <uint T>
inline void dmv_impl(device const uchar* w, device const float* x, device float* y, constant LinearParams& p,
                     uint2 tg, uint sg, uint lane) {
    const uint token = tg.y;
    const uint first_row = (tg.x * kDmvSimdgroups + sg) * kDmvRowsPerSimdgroup;
    device const float* xt = x + ulong(token) * p.cols;
    ulong rows[kDmvRowsPerSimdgroup];
    for (uint r = 0; r < kDmvRowsPerSimdgroup; r++) rows[r] = ulong(min(first_row + r, p.out_rows - 1));

    float result[kDmvRowsPerSimdgroup] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (uint k0 = 0; k0 < p.cols; k0 += 128) {
        const uint k = k0 + lane * 4;
        const uint n = k < p.cols ? min(4u, p.cols - k) : 0u;
        float xv[4];
        for (uint j = 0; j < 4; j++) xv[j] = j < n ? xt[k + j] : 0.0f;
        for (uint r = 0; r < kDmvRowsPerSimdgroup; r++) {
            const ulong base = rows[r] * p.cols + k;
            for (uint j = 0; j < n; j++) result[r] += dmv_load<T>(w, base + j) * xv[j];
        }
    }
    for (uint r = 0; r < kDmvRowsPerSimdgroup; r++) {
        float total = simd_sum(result[r]);
        if (lane == 0 && first_row + r < p.out_rows) y[ulong(token) * p.out_rows + first_row + r] = total;
    }
}

#define DMV_KERNEL(NAME, T)                                                                        \
    kernel void dmv_##NAME(device const uchar* w [[buffer(0)]], device const float* x [[buffer(3)]], \
                           device float* y [[buffer(4)]], constant LinearParams& p [[buffer(5)]],      \
                           uint2 tg [[threadgroup_position_in_grid]],                                  \
                           uint sg [[simdgroup_index_in_threadgroup]],                                 \
                           uint lane [[thread_index_in_simdgroup]]) {                                  \
        dmv_impl<T>(w, x, y, p, tg, sg, lane);                                                         \
    }

DMV_KERNEL(f32, kScalarF32)
DMV_KERNEL(f16, kScalarF16)
DMV_KERNEL(bf16, kScalarBF16)
