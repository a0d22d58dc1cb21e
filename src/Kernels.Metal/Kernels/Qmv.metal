// Quantized matrix-vector product for decode: y[t, r] = sum_k W[r, k] x[t, k], W in MLX's packed
// affine layout (w = scale * q + bias per group).
//
// Threadgroup = 2 simdgroups; a simdgroup computes 4 consecutive output rows; so a threadgroup
// covers 8 rows of one token (KernelGeometry.Qmv). A lane owns 16 consecutive values of the
// K-block it is in (a block is 32 lanes * 16 = 512 values), loads its 16 x values once and reuses
// them for the 4 rows. 16 values of b bits are exactly b 16-bit words, so a lane reads b ushorts
// per row and needs exactly one scale and one bias per row (16 divides every group size).
//
// No shifts: code j of the lane sits at bit offset o_j inside its 16-bit word, so
// (word & (mask << o_j)) == q_j << o_j; multiplying by x_j * 2^-o_j (pre-scaled once per block)
// gives q_j * x_j. A code straddling two words adds its high part times x_j * 2^(16 - o_j).
// Then sum_j (scale q_j + bias) x_j = scale * sum_j q_j x_j + bias * sum_j x_j.

static constant constexpr uint kQmvSimdgroups = 2;
static constant constexpr uint kQmvRowsPerSimdgroup = 4;
static constant constexpr uint kQmvValuesPerLane = 16;

template <int B>
inline float qmv_dot16(device const ushort* w, thread const float* xs) {
    const uint mask = (1u << B) - 1u;
    float acc = 0.0f;
    for (int j = 0; j < 16; j++) {
        const int bit = j * B;
        const int u = bit / 16;
        const int o = bit % 16;
        acc += float(uint(w[u]) & ((mask << o) & 0xFFFFu)) * xs[j];
        if (o + B > 16) acc += float(uint(w[u + 1]) & (mask >> (16 - o))) * (xs[j] * 65536.0f);
    }
    return acc;
}

template <int B>
inline void qmv_impl(device const ushort* w, device const uchar* scales, device const uchar* biases,
                     device const float* x, device float* y, constant LinearParams& p, uint2 tg, uint sg,
                     uint lane) {
    const uint token = tg.y;
    const uint first_row = (tg.x * kQmvSimdgroups + sg) * kQmvRowsPerSimdgroup;
    const uint ushorts_per_row = p.cols * B / 16;
    const uint groups_per_row = p.cols / p.group_size;
    device const float* xt = x + ulong(token) * p.cols;

    // Rows past the end read the last row (in bounds) and are not stored.
    uint rows[kQmvRowsPerSimdgroup];
    for (uint r = 0; r < kQmvRowsPerSimdgroup; r++) rows[r] = min(first_row + r, p.out_rows - 1);

    float result[kQmvRowsPerSimdgroup] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (uint k0 = 0; k0 < p.cols; k0 += 32 * kQmvValuesPerLane) {
        const uint k = k0 + lane * kQmvValuesPerLane;
        if (k < p.cols) {
            float xs[16];
            float x_sum = 0.0f;
            for (int j = 0; j < 16; j++) {
                float v = xt[k + j];
                x_sum += v;
                xs[j] = v / float(1u << ((j * B) % 16));
            }
            const uint group = k / p.group_size;
            for (uint r = 0; r < kQmvRowsPerSimdgroup; r++) {
                device const ushort* wl = w + ulong(rows[r]) * ushorts_per_row + (k / 16) * B;
                const ulong g = ulong(rows[r]) * groups_per_row + group;
                float s = load_scalar(scales, g, p.scale_type);
                float b = load_scalar(biases, g, p.scale_type);
                result[r] += s * qmv_dot16<B>(wl, xs) + b * x_sum;
            }
        }
    }
    for (uint r = 0; r < kQmvRowsPerSimdgroup; r++) {
        float total = simd_sum(result[r]);
        if (lane == 0 && first_row + r < p.out_rows) y[ulong(token) * p.out_rows + first_row + r] = total;
    }
}

#define QMV_KERNEL(B)                                                                             \
    kernel void qmv_b##B(device const ushort* w [[buffer(0)]], device const uchar* scales [[buffer(1)]], \
                         device const uchar* biases [[buffer(2)]], device const float* x [[buffer(3)]], \
                         device float* y [[buffer(4)]], constant LinearParams& p [[buffer(5)]],       \
                         uint2 tg [[threadgroup_position_in_grid]],                                   \
                         uint sg [[simdgroup_index_in_threadgroup]],                                  \
                         uint lane [[thread_index_in_simdgroup]]) {                                   \
        qmv_impl<B>(w, scales, biases, x, y, p, tg, sg, lane);                                        \
    }

QMV_KERNEL(2)
QMV_KERNEL(3)
QMV_KERNEL(4)
QMV_KERNEL(5)
QMV_KERNEL(6)
QMV_KERNEL(8)
