// Elementwise ops over n f32 values. Geometry: KernelGeometry.Elementwise (256 threads per group).

struct ElementwiseParams {
    uint n;
    float value;   // scale factor or softcap
};

kernel void copy_f32(device const float* src [[buffer(0)]],
                     device float* dst [[buffer(1)]],
                     constant ElementwiseParams& p [[buffer(2)]],
                     uint i [[thread_position_in_grid]]) {
    if (i < p.n) dst[i] = src[i];
}

// Upload of host data bound with setBytes (or an upload arena): ordered with the other commands.
kernel void upload_f32(constant float* src [[buffer(0)]],
                       device float* dst [[buffer(1)]],
                       constant ElementwiseParams& p [[buffer(2)]],
                       uint i [[thread_position_in_grid]]) {
    if (i < p.n) dst[i] = src[i];
}

kernel void add_f32(device const float* a [[buffer(0)]],
                    device const float* b [[buffer(1)]],
                    device float* y [[buffer(2)]],
                    constant ElementwiseParams& p [[buffer(3)]],
                    uint i [[thread_position_in_grid]]) {
    if (i < p.n) y[i] = a[i] + b[i];
}

kernel void scale_f32(device float* x [[buffer(0)]],
                      constant ElementwiseParams& p [[buffer(1)]],
                      uint i [[thread_position_in_grid]]) {
    if (i < p.n) x[i] = x[i] * p.value;
}

// x = cap * tanh(x / cap)
kernel void softcap_f32(device float* x [[buffer(0)]],
                        constant ElementwiseParams& p [[buffer(1)]],
                        uint i [[thread_position_in_grid]]) {
    if (i < p.n) x[i] = p.value * precise::tanh(x[i] / p.value);
}

// y = gelu_tanh(gate) * up, gelu_tanh(g) = 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3)))
kernel void geglu_f32(device const float* gate [[buffer(0)]],
                      device const float* up [[buffer(1)]],
                      device float* y [[buffer(2)]],
                      constant ElementwiseParams& p [[buffer(3)]],
                      uint i [[thread_position_in_grid]]) {
    if (i >= p.n) return;
    float g = gate[i];
    float inner = 0.7978845608028654f * (g + 0.044715f * g * g * g);
    y[i] = 0.5f * g * (1.0f + precise::tanh(inner)) * up[i];
}
