// Shared by every kernel file: each Metal library is compiled from this prelude followed by one
// kernel family file (MetalKernelSources.LibrarySource).
#include <metal_stdlib>
using namespace metal;

// The element type codes of Pipeline.Kernels.ScalarType (F32 = 0, F16 = 1, BF16 = 2).
constant uint kScalarF32 = 0;
constant uint kScalarF16 = 1;
constant uint kScalarBF16 = 2;

// bf16 is the upper half of an f32.
inline float bf16_to_float(ushort bits) { return as_type<float>(uint(bits) << 16); }

// Element i of a buffer of scales/biases/dense weights in one of the checkpoint's types.
inline float load_scalar(device const uchar* base, uint i, uint type) {
    if (type == kScalarBF16) return bf16_to_float(((device const ushort*)base)[i]);
    if (type == kScalarF16) return float(((device const half*)base)[i]);
    return ((device const float*)base)[i];
}
