// Embedding gather: out[t, :] = table[ids[t], :] * scale, from a quantized (MLX affine) or dense
// table. One thread per output element. Geometry: KernelGeometry.Embed.

struct EmbedParams {
    uint cols;
    uint tokens;
    uint quantized;     // 1: packed codes + scales/biases; 0: dense of dense_type
    uint bits;
    uint group_size;
    uint scale_type;
    uint dense_type;
    float scale;
};

kernel void embed(device const uchar* table [[buffer(0)]],
                  device const uchar* scales [[buffer(1)]],
                  device const uchar* biases [[buffer(2)]],
                  constant int* ids [[buffer(3)]],
                  device float* out [[buffer(4)]],
                  constant EmbedParams& p [[buffer(5)]],
                  uint2 gid [[thread_position_in_grid]]) {
    uint col = gid.x;
    uint t = gid.y;
    if (col >= p.cols || t >= p.tokens) return;
    ulong row = ulong(ids[t]);
    float v;
    if (p.quantized != 0) {
        uint words_per_row = p.cols * p.bits / 32;
        uint groups_per_row = p.cols / p.group_size;
        uint code = extract_code((device const uint*)table + row * words_per_row, col, p.bits);
        ulong g = row * groups_per_row + col / p.group_size;
        v = float(code) * load_scalar(scales, g, p.scale_type) + load_scalar(biases, g, p.scale_type);
    } else {
        v = load_scalar(table, row * p.cols + col, p.dense_type);
    }
    out[ulong(t) * p.cols + col] = v * p.scale;
}
