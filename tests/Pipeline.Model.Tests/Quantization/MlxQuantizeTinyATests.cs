using System.Runtime.InteropServices;
using Pipeline.Kernels;
using Pipeline.Kernels.Quantization;
using Pipeline.Model.Checkpoint;
using Pipeline.Model.Tests.Checkpoint;

namespace Pipeline.Model.Tests.Quantization;

/// <summary>
/// tiny-a's ud-q2kxl folder was made by quantizing its bf16 folder exactly as MLX does; Pipeline's
/// quantizer must reproduce it byte for byte.
/// </summary>
public class MlxQuantizeTinyATests
{
    private const string Mlx = "language_model.model.";
    private const string Hf = "model.language_model.";

    [Fact]
    public void QuantizingTheBf16Weights_ReproducesEveryQuantizedTensorByteForByte()
    {
        using var bf16 = SafetensorsSet.Open(CheckpointFixtures.TinyA("bf16"));
        using var quantized = Gemma4Checkpoint.Open(CheckpointFixtures.TinyA("ud-q2kxl"));
        var bitsSeen = new Dictionary<string, int>();

        foreach (string module in QuantizedModules(quantized.Tensors))
        {
            var source = bf16.Get(Hf + module[Mlx.Length..] + ".weight");
            int rows = (int)source.Shape[0], cols = (int)source.Shape[1];
            var bits = quantized.Quantization!.Resolve(module, scalesPresent: true)!.Value;

            var result = MlxAffine.Quantize(ToFloats(bf16.Bytes(source.Name)), rows, cols, bits.Bits, bits.GroupSize, ScalarType.BF16);

            AssertSameBytes(quantized.Tensors.Bytes(module + ".weight"), result.PackedBytes(), module + ".weight");
            AssertSameBytes(quantized.Tensors.Bytes(module + ".scales"), result.Scales, module + ".scales");
            AssertSameBytes(quantized.Tensors.Bytes(module + ".biases"), result.Biases, module + ".biases");
            bitsSeen[RoleOf(module)] = bits.Bits;
        }

        Assert.Equal(35, QuantizedModules(quantized.Tensors).Count()); // embed + 6 x (q, k, gate, up, down) + 4 sliding v
        Assert.Equal(
            new Dictionary<string, int>
            {
                ["embed_tokens"] = 4,
                ["q_proj"] = 4,
                ["k_proj"] = 4,
                ["v_proj"] = 4,
                ["gate_proj"] = 2,
                ["up_proj"] = 2,
                ["down_proj"] = 3,
            },
            bitsSeen);
    }

    [Fact]
    public void EveryDequantizedWeight_LiesWithinOneStepOfItsBf16Original()
    {
        using var bf16 = SafetensorsSet.Open(CheckpointFixtures.TinyA("bf16"));
        using var quantized = Gemma4Checkpoint.Open(CheckpointFixtures.TinyA("ud-q2kxl"));
        var weights = new List<(string Module, LinearWeight Weight)> { (Mlx + "embed_tokens", quantized.Embedding) };
        for (int i = 0; i < quantized.Text.NumHiddenLayers; i++)
        {
            var layer = quantized.Layer(i);
            string p = $"{Mlx}layers.{i}.";
            weights.Add((p + "self_attn.q_proj", layer.QProj));
            weights.Add((p + "self_attn.k_proj", layer.KProj));
            if (layer.VProj is not null)
                weights.Add((p + "self_attn.v_proj", layer.VProj));
            weights.Add((p + "mlp.gate_proj", layer.Gate));
            weights.Add((p + "mlp.up_proj", layer.Up));
            weights.Add((p + "mlp.down_proj", layer.Down));
        }

        foreach (var (module, linear) in weights)
        {
            var w = Assert.IsType<QuantizedWeight>(linear);
            var original = ToFloats(bf16.Bytes(Hf + module[Mlx.Length..] + ".weight")); // [rows, cols]
            var row = new float[w.Cols];
            for (int r = 0; r < w.Rows; r++)
            {
                MlxAffine.DequantizeRow(w, r, row);
                for (int g = 0; g < w.GroupsPerRow; g++)
                {
                    float step = MathF.Abs(Scalars.Load(w.Scales, (long)r * w.GroupsPerRow + g, w.ScaleType));
                    for (int c = g * w.GroupSize; c < (g + 1) * w.GroupSize; c++)
                    {
                        float error = MathF.Abs(row[c] - original[r * w.Cols + c]);
                        if (error > step)
                            Assert.Fail($"{module}[{r}, {c}]: dequantized {row[c]}, bf16 {original[r * w.Cols + c]}, step {step}");
                    }
                }
            }
        }
    }

    private static IEnumerable<string> QuantizedModules(SafetensorsSet tensors) =>
        tensors.Names.Where(n => n.EndsWith(".scales", StringComparison.Ordinal)).Select(n => n[..^".scales".Length]).Order(StringComparer.Ordinal);

    private static string RoleOf(string module) => module[(module.LastIndexOf('.') + 1)..];

    private static float[] ToFloats(ReadOnlySpan<byte> bf16)
    {
        var bits = MemoryMarshal.Cast<byte, ushort>(bf16);
        var values = new float[bits.Length];
        for (int i = 0; i < bits.Length; i++)
            values[i] = Scalars.Bf16ToFloat(bits[i]);
        return values;
    }

    private static void AssertSameBytes(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual, string name)
    {
        Assert.True(expected.Length == actual.Length, $"{name}: {actual.Length} bytes, expected {expected.Length}");
        int mismatch = expected.CommonPrefixLength(actual);
        Assert.True(mismatch == expected.Length, $"{name}: first differing byte at offset {mismatch}");
    }
}
