// Half-split RoPE in place on x[tokens, heads, head_dim]: element j pairs with j + head_dim/2 and
// rotates by positions[t] * inv[j]; inv[j] = 0 leaves the pair unchanged (proportional RoPE).
// The angle is carried as hi + lo (lo = exact rounding error of the f32 product, via fma), so the
// rotation stays accurate at positions in the hundreds of thousands where an f32 angle alone is
// off by ~1e-2 rad. Geometry: KernelGeometry.Elementwise over tokens * heads * head_dim/2 pairs.

struct RopeParams {
    uint tokens;
    uint heads;
    uint head_dim;
};

kernel void rope(device float* x [[buffer(0)]],
                 constant int* positions [[buffer(1)]],
                 device const float* inv [[buffer(2)]],
                 constant RopeParams& p [[buffer(3)]],
                 uint pair [[thread_position_in_grid]]) {
    uint half_dim = p.head_dim / 2;
    if (pair >= p.tokens * p.heads * half_dim) return;
    uint j = pair % half_dim;
    uint head_row = pair / half_dim;   // t * heads + h
    uint t = head_row / p.heads;
    device float* v = x + ulong(head_row) * p.head_dim;

    float position = float(positions[t]);
    float hi = position * inv[j];
    float lo = fma(position, inv[j], -hi);
    float s = precise::sin(hi);
    float c = precise::cos(hi);
    float sl = precise::sin(lo);   // |lo| <= half an ulp of hi: up to ~0.016 rad at 262k positions
    float cl = precise::cos(lo);
    float cos_a = c * cl - s * sl;
    float sin_a = s * cl + c * sl;

    float a = v[j];
    float b = v[j + half_dim];
    v[j] = a * cos_a - b * sin_a;
    v[j + half_dim] = b * cos_a + a * sin_a;
}
