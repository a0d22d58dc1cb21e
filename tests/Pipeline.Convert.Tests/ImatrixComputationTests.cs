using Pipeline.Kernels;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Convert.Tests;

public class ImatrixComputationTests
{
    /// <summary>
    /// Layer 0's attention input is RMSNorm(embed[id] * bf16(sqrt(hidden)); input_layernorm), computable
    /// straight from the checkpoint: the observed sums of squares must match it, for q, k and v alike.
    /// </summary>
    [Fact]
    public void LayerZeroAttentionInput_MatchesADirectComputation()
    {
        int[] text = [.. FixtureSequences.Ids("text_short").Skip(1)]; // 10 tokens after BOS
        const int bos = 2, chunkSize = 4;                            // chunks: BOS + 3 tokens (x3), BOS + 1 token
        var imatrix = ImatrixComputation.Run(TestPaths.TinyBf16, text, bos, "text_short", chunkSize, threads: 2);

        Assert.Equal(4, imatrix.ChunkCount);
        Assert.Equal(chunkSize, imatrix.ChunkSize);
        var q = imatrix.Entries["blk.0.attn_q.weight"];
        Assert.Equal(14f, q.Count); // 10 tokens + 4 BOS
        Assert.Equal(q.SumOfSquares, imatrix.Entries["blk.0.attn_k.weight"].SumOfSquares);
        Assert.Equal(q.SumOfSquares, imatrix.Entries["blk.0.attn_v.weight"].SumOfSquares);
        Assert.False(imatrix.Entries.ContainsKey("blk.2.attn_v.weight")); // full layer: K = V, no v_proj
        Assert.Equal(6 * 7 - 2, imatrix.Entries.Count);
        Assert.Equal(128, imatrix.Entries["blk.5.ffn_down.weight"].SumOfSquares.Length);

        using var set = SafetensorsSet.Open(TestPaths.TinyBf16);
        var embed = set.Get("model.language_model.embed_tokens.weight");
        var norm = AwqFoldingTests.Load(set.Get("model.language_model.layers.0.input_layernorm.weight"));
        float embedScale = Scalars.RoundToBf16(MathF.Sqrt(64));
        var expected = new double[64];
        int[] fed = [bos, .. text[0..3], bos, .. text[3..6], bos, .. text[6..9], bos, text[9]];
        foreach (int id in fed)
        {
            var h = new float[64];
            for (int j = 0; j < 64; j++)
                h[j] = Scalars.Load(embed.Data, (long)id * 64 + j, ScalarType.BF16) * embedScale;
            double meanSquare = h.Sum(v => (double)v * v) / 64;
            float inv = 1 / MathF.Sqrt((float)meanSquare + 1e-6f);
            for (int j = 0; j < 64; j++)
            {
                double x = h[j] * inv * norm[j];
                expected[j] += x * x;
            }
        }
        for (int j = 0; j < 64; j++)
            Assert.True(Math.Abs(expected[j] - q.SumOfSquares[j]) <= 1e-4 * expected[j] + 1e-6, $"channel {j}: {q.SumOfSquares[j]} vs {expected[j]}");
    }

    [Fact]
    public void ComputedImatrix_WrittenAndRead_DrivesAwqForEveryLayer()
    {
        using var temp = TestPaths.NewTempFolder();
        var imatrix = ImatrixComputation.Run(TestPaths.TinyBf16, FixtureSequences.Ids("random_3w"), 2, "random_3w", 32, threads: 2);
        string path = Path.Combine(temp.Path, "imatrix.gguf");
        imatrix.Write(path);
        var warnings = new List<string>();
        using var prepared = Converter.Prepare(new ConvertOptions
        {
            InputDir = TestPaths.TinyBf16,
            OutputDir = Path.Combine(temp.Path, "unused"),
            Quantize = true,
            Recipe = "unsloth",
            Bits = 2,
            ImatrixPath = path,
        }, warnings.Add);
        Assert.Empty(warnings);
        // Every (layer, group) had its exponent searched; the searched ones scale at most as hard as the formula.
        Assert.Equal(6 * 3, prepared.Folding.Exponents.Count);
        Assert.All(prepared.Folding.Exponents.Values, e => Assert.InRange(e, 0f, 0.5f));
        Assert.Equal(prepared.Folding.Exponents.Values.Count(e => e > 0), prepared.Folding.FoldedGroups);
        Assert.Equal(["random_3w"], ImatrixFile.Read(path).Datasets);
    }

    [Fact]
    public void EmptyCalibration_IsRefused()
    {
        var e = Assert.Throws<ConvertException>(() => ImatrixComputation.Run(TestPaths.TinyBf16, [], 2, "empty"));
        Assert.Equal("the calibration text produced no tokens", e.Message);
    }
}
