// Prefill matmul with simdgroup matrices: y[t, r] = sum_k x[t, k] W[r, k] for several tokens,
// W quantized (MLX affine, mm_q<bits>) or dense (mm_<type>).
//
// A threadgroup (4 simdgroups, 128 threads) computes a 32-token x 32-row tile of y
// (KernelGeometry.Matmul). Per 32-wide K step the threads stage x[32 tokens, 32] and the
// dequantized W[32 rows, 32] in threadgroup memory (8 values per thread each), then simdgroup s
// multiplies its 16x16 quarter (tokens (s/2)*16.., rows (s%2)*16..) as 2x2 8x8 blocks:
// A = x block, B = W block loaded transposed (B[k][n] = W[n][k]). Out-of-range tokens/rows/columns
// are staged as zeros (rows clamp) and never stored.

static constant constexpr uint kMmTile = 32;
static constant constexpr uint kMmStride = 36;   // padded row stride of the staged tiles, in floats

template <bool Quantized, int B, uint T>
inline float mm_weight(device const uchar* w, device const uchar* scales, device const uchar* biases,
                       constant LinearParams& p, ulong row, uint col) {
    if (Quantized) {
        uint words_per_row = p.cols * uint(B) / 32;
        uint code = extract_code((device const uint*)w + row * words_per_row, col, uint(B));
        ulong g = row * (p.cols / p.group_size) + col / p.group_size;
        return float(code) * load_scalar(scales, g, p.scale_type) + load_scalar(biases, g, p.scale_type);
    }
    return load_scalar(w, row * p.cols + col, T);
}

// Tile is `threadgroup float*`: threadgroup arrays are declared in the kernels (MSL allows them
// only at kernel scope) and passed in; the pointer type is deduced, address space included.
template <bool Quantized, int B, uint T, class Tile>
inline void mm_impl(device const uchar* w, device const uchar* scales, device const uchar* biases,
                    device const float* x, device float* y, constant LinearParams& p, uint2 tg, uint tid,
                    uint sg, Tile xs, Tile ws) {

    const uint row0 = tg.x * kMmTile;      // output rows (W rows)
    const uint token0 = tg.y * kMmTile;    // tokens
    const uint stage_row = tid / 4;        // 0..31
    const uint stage_col = (tid % 4) * 8;  // 0, 8, 16, 24
    const uint tm = (sg / 2) * 16;
    const uint tn = (sg % 2) * 16;

    simdgroup_float8x8 acc[2][2];
    for (uint i = 0; i < 2; i++)
        for (uint j = 0; j < 2; j++) acc[i][j] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);

    const uint token = token0 + stage_row;
    const ulong w_row = ulong(min(row0 + stage_row, p.out_rows - 1));
    for (uint k0 = 0; k0 < p.cols; k0 += kMmTile) {
        for (uint c = 0; c < 8; c++) {
            uint col = k0 + stage_col + c;
            bool in_k = col < p.cols;
            xs[stage_row * kMmStride + stage_col + c] =
                in_k && token < p.tokens ? x[ulong(token) * p.cols + col] : 0.0f;
            ws[stage_row * kMmStride + stage_col + c] =
                in_k ? mm_weight<Quantized, B, T>(w, scales, biases, p, w_row, col) : 0.0f;
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
        for (uint kk = 0; kk < kMmTile; kk += 8) {
            simdgroup_float8x8 a[2];
            simdgroup_float8x8 b[2];
            for (uint i = 0; i < 2; i++) simdgroup_load(a[i], xs + (tm + 8 * i) * kMmStride + kk, kMmStride);
            for (uint j = 0; j < 2; j++)
                simdgroup_load(b[j], ws + (tn + 8 * j) * kMmStride + kk, kMmStride, ulong2(0), true);
            for (uint i = 0; i < 2; i++)
                for (uint j = 0; j < 2; j++) simdgroup_multiply_accumulate(acc[i][j], a[i], b[j], acc[i][j]);
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }

    // Through threadgroup memory, so that only in-range elements are written to y.
    for (uint i = 0; i < 2; i++)
        for (uint j = 0; j < 2; j++) simdgroup_store(acc[i][j], xs + (tm + 8 * i) * kMmStride + tn + 8 * j, kMmStride);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint c = 0; c < 8; c++) {
        uint out_row = row0 + stage_col + c;
        if (token < p.tokens && out_row < p.out_rows)
            y[ulong(token) * p.out_rows + out_row] = xs[stage_row * kMmStride + stage_col + c];
    }
}

#define MM_Q_KERNEL(B)                                                                             \
    kernel void mm_q##B(device const uchar* w [[buffer(0)]], device const uchar* scales [[buffer(1)]],  \
                        device const uchar* biases [[buffer(2)]], device const float* x [[buffer(3)]],  \
                        device float* y [[buffer(4)]], constant LinearParams& p [[buffer(5)]],        \
                        uint2 tg [[threadgroup_position_in_grid]],                                    \
                        uint tid [[thread_index_in_threadgroup]],                                     \
                        uint sg [[simdgroup_index_in_threadgroup]]) {                                 \
        threadgroup float xs[kMmTile * kMmStride];                                                    \
        threadgroup float ws[kMmTile * kMmStride];                                                    \
        mm_impl<true, B, kScalarF32>(w, scales, biases, x, y, p, tg, tid, sg, xs, ws);                \
    }

#define MM_DENSE_KERNEL(NAME, T)                                                                   \
    kernel void mm_##NAME(device const uchar* w [[buffer(0)]], device const float* x [[buffer(3)]],   \
                          device float* y [[buffer(4)]], constant LinearParams& p [[buffer(5)]],       \
                          uint2 tg [[threadgroup_position_in_grid]],                                   \
                          uint tid [[thread_index_in_threadgroup]],                                    \
                          uint sg [[simdgroup_index_in_threadgroup]]) {                                \
        threadgroup float xs[kMmTile * kMmStride];                                                     \
        threadgroup float ws[kMmTile * kMmStride];                                                     \
        mm_impl<false, 0, T>(w, w, w, x, y, p, tg, tid, sg, xs, ws);                                   \
    }

MM_Q_KERNEL(2)
MM_Q_KERNEL(3)
MM_Q_KERNEL(4)
MM_Q_KERNEL(5)
MM_Q_KERNEL(6)
MM_Q_KERNEL(8)
MM_DENSE_KERNEL(f32, kScalarF32)
MM_DENSE_KERNEL(f16, kScalarF16)
MM_DENSE_KERNEL(bf16, kScalarBF16)
