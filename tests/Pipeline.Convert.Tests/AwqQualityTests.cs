using System.Runtime.InteropServices;
using Pipeline.Kernels;
using Pipeline.Model.Checkpoint;
using Xunit.Abstractions;

namespace Pipeline.Convert.Tests;

/// <summary>
/// AWQ's purpose: with an imatrix computed by Pipeline's own engine on calibration text, the quantized model
/// is closer to the bf16 one (mean KL over the positions of held-out text) than the same recipe without AWQ.
/// </summary>
public class AwqQualityTests(ITestOutputHelper output)
{
    private static readonly string[] HeldOut = ["random_6w", "chat_template", "chat_brief_example", "text_short"];

    /// <summary>
    /// tiny-a's random weights have no salient channels (norm weights uniform in [0.5, 1.5]), so there is little
    /// for AWQ to protect. Real models have a few loud activation channels; this copy of tiny-a gets them
    /// through its norm weights (channels x8 in every input and pre-feed-forward norm), which is where AWQ
    /// must pay off.
    /// </summary>
    [Fact]
    public void ImatrixAwq_LowersKl_OnAModelWithSalientChannels()
    {
        using var temp = TestPaths.NewTempFolder();
        string model = WithSalientChannels(TestPaths.TinyBf16, Path.Combine(temp.Path, "salient"), [3, 17, 40], 8f);
        var (plain, awq) = MeanKl(model, temp.Path, bits: 2);
        output.WriteLine($"salient tiny, unsloth 2-bit: mean KL(bf16 || quantized) no AWQ {plain:F4}, AWQ {awq:F4}");
        Assert.True(awq < 0.9 * plain, $"AWQ KL {awq} is not clearly below the plain KL {plain}");
    }

    /// <summary>On tiny-a itself the searched exponents keep AWQ from doing harm where it has nothing to gain (4-bit).</summary>
    [Fact]
    public void ImatrixAwq_DoesNotRaiseKl_OnTinyA()
    {
        using var temp = TestPaths.NewTempFolder();
        var (plain, awq) = MeanKl(TestPaths.TinyBf16, temp.Path, bits: 4);
        output.WriteLine($"tiny-a, unsloth 4-bit: mean KL(bf16 || quantized) no AWQ {plain:F4}, AWQ {awq:F4}");
        Assert.True(awq <= plain * 1.005, $"AWQ KL {awq} is above the plain KL {plain}");
    }

    /// <summary>Mean KL to the bf16 model over the held-out positions, without and with AWQ from a computed imatrix.</summary>
    private (double Plain, double Awq) MeanKl(string model, string work, int bits)
    {
        int[] calibration = [.. FixtureSequences.Ids("chat_multiturn").Skip(1), .. FixtureSequences.Ids("random_3w").Skip(1)];
        var imatrix = ImatrixComputation.Run(model, calibration, 2, "calibration", 64, threads: 2);
        string imatrixPath = Path.Combine(work, $"imatrix-{bits}.gguf");
        imatrix.Write(imatrixPath);

        ConvertOptions Options(string name, string? imatrixFile) => new()
        {
            InputDir = model,
            OutputDir = Path.Combine(work, $"{name}-{bits}"),
            Quantize = true,
            Recipe = "unsloth",
            Bits = bits,
            ImatrixPath = imatrixFile,
        };
        using (var prepared = Converter.Prepare(Options("unused", imatrixPath), _ => { }))
            output.WriteLine("exponents: " + string.Join(", ", prepared.Folding.Exponents.Select(e => $"{e.Key} {e.Value}")));
        string plain = Converter.Run(Options("plain", null), null, _ => { });
        string awq = Converter.Run(Options("awq", imatrixPath), null, _ => { });

        double klPlain = 0, klAwq = 0;
        int positions = 0;
        foreach (var name in HeldOut)
        {
            int[] ids = FixtureSequences.Ids(name);
            var reference = AwqLogitsTests.AllLogits(model, ids);
            klPlain += KlSum(reference, AwqLogitsTests.AllLogits(plain, ids), ids.Length);
            klAwq += KlSum(reference, AwqLogitsTests.AllLogits(awq, ids), ids.Length);
            positions += ids.Length;
        }
        return (klPlain / positions, klAwq / positions);
    }

    /// <summary>A copy of a bf16 model folder whose input and pre-feed-forward norm weights are multiplied by <paramref name="factor"/> at <paramref name="channels"/>.</summary>
    private static string WithSalientChannels(string source, string destination, int[] channels, float factor)
    {
        Directory.CreateDirectory(destination);
        foreach (string file in Directory.GetFiles(source).Where(f => !f.EndsWith(".safetensors", StringComparison.Ordinal)))
            File.Copy(file, Path.Combine(destination, Path.GetFileName(file)));
        using var set = SafetensorsSet.Open(source);
        var tensors = new List<(TensorSpec, byte[])>();
        foreach (string name in set.Names)
        {
            var info = set.Get(name);
            byte[] bytes = new byte[info.ByteLength];
            Marshal.Copy(info.Data, bytes, 0, bytes.Length);
            if (name.EndsWith("input_layernorm.weight", StringComparison.Ordinal) || name.EndsWith("pre_feedforward_layernorm.weight", StringComparison.Ordinal))
            {
                var bf16 = MemoryMarshal.Cast<byte, ushort>(bytes.AsSpan());
                foreach (int c in channels)
                    bf16[c] = Scalars.FloatToBf16(Scalars.Bf16ToFloat(bf16[c]) * factor);
            }
            tensors.Add((new TensorSpec(name, info.DType, info.Shape), bytes));
        }
        SafetensorsWriter.Write(Path.Combine(destination, "model.safetensors"), tensors);
        return destination;
    }

    /// <summary>Sum over positions of KL(softmax(p) || softmax(q)), logits [positions, vocab] flattened.</summary>
    private static double KlSum(float[] p, float[] q, int positions)
    {
        int vocab = p.Length / positions;
        double total = 0;
        for (int t = 0; t < positions; t++)
        {
            var lp = LogSoftmax(p.AsSpan(t * vocab, vocab));
            var lq = LogSoftmax(q.AsSpan(t * vocab, vocab));
            double kl = 0;
            for (int i = 0; i < vocab; i++)
                kl += Math.Exp(lp[i]) * (lp[i] - lq[i]);
            total += kl;
        }
        return total;
    }

    private static double[] LogSoftmax(ReadOnlySpan<float> logits)
    {
        double max = double.NegativeInfinity;
        foreach (float v in logits)
            max = Math.Max(max, v);
        double sum = 0;
        foreach (float v in logits)
            sum += Math.Exp(v - max);
        double logSum = max + Math.Log(sum);
        var result = new double[logits.Length];
        for (int i = 0; i < logits.Length; i++)
            result[i] = logits[i] - logSum;
        return result;
    }
}
