// Shared by every kernel file: each Metal library is compiled from this prelude followed by one
// kernel family file (MetalKernelSources.LibrarySource). Parameter structs mirror the C# structs
// in KernelParams.cs field by field (all 4-byte fields, so both sides lay them out alike).
#include <metal_stdlib>
using namespace metal;

// Pipeline.Kernels.ScalarType codes.
static constant constexpr uint kScalarF32 = 0;
static constant constexpr uint kScalarF16 = 1;
static constant constexpr uint kScalarBF16 = 2;

// bf16 is the upper half of an f32.
inline float bf16_to_float(ushort bits) { return as_type<float>(uint(bits) << 16); }

// Element i of a buffer of scales, biases or dense weights in one of the checkpoint's types.
inline float load_scalar(device const uchar* base, ulong i, uint type) {
    if (type == kScalarBF16) return bf16_to_float(((device const ushort*)base)[i]);
    if (type == kScalarF16) return float(((device const half*)base)[i]);
    return ((device const float*)base)[i];
}

// The unsigned code of element `col` of a packed MLX row: bits [col*bits, (col+1)*bits) of the
// row's LSB-first bitstream; a code may straddle two words.
inline uint extract_code(device const uint* row_words, uint col, uint bits) {
    uint bit = col * bits;
    uint word = bit >> 5;
    uint offset = bit & 31u;
    uint v = row_words[word] >> offset;
    if (offset + bits > 32u) v |= row_words[word + 1] << (32u - offset);
    return v & ((1u << bits) - 1u);
}

// Parameters of every Linear kernel (qmv, qmm, dmv, dmm).
struct LinearParams {
    uint out_rows;     // W.Rows
    uint cols;         // W.Cols
    uint tokens;       // rows of x
    uint group_size;   // quantized only
    uint scale_type;   // quantized: ScalarType of scales/biases
};
