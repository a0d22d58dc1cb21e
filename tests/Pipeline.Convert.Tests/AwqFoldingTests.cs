using Pipeline.Kernels;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Convert.Tests;

public class AwqFoldingTests
{
    [Fact]
    public void Scales_AreRootImportanceOverTheGeometricMeanOfTheExtremes()
    {
        var s = AwqFolding.ScalesFromImportance([4f, 1f, 16f, 0f]);
        // sqrt: 2, 1, 4, 1e-4 (importance floored at 1e-8); norm = sqrt(4 * 1e-4) = 0.02
        Assert.Equal(100f, s[0], 1e-3f);
        Assert.Equal(50f, s[1], 1e-3f);
        Assert.Equal(200f, s[2], 1e-3f);
        Assert.Equal(0.005f, s[3], 1e-7f);
    }

    [Fact]
    public void Apply_MultipliesColumnsAndDividesRows()
    {
        float[] w = [1, 2, 3, 4, 5, 6]; // [2, 3]
        AwqFolding.Apply(new TensorFold([1, 10, 100], null, [1, 2]), w, 0, 3);
        Assert.Equal([1f, 20f, 300f, 2f, 25f, 300f], w);
        float[] norm = [2, 4];
        AwqFolding.Apply(new TensorFold(null, [2, 8], null), norm, 0, 2);
        Assert.Equal([1f, 0.5f], norm);
    }

    /// <summary>
    /// The exactness AWQ relies on, per linear: (norm(x) w / s) (W diag(s))^T = (norm(x) w) W^T in float.
    /// </summary>
    [Theory]
    [InlineData(64, 96, 1)]
    [InlineData(200, 37, 2)]
    public void FoldedLinear_ComputesTheSameOutputs(int width, int outputs, int seed)
    {
        var rng = new Random(seed);
        var x = RandomVector(rng, width, 3);
        var normWeight = RandomVector(rng, width, 1).Select(v => 0.5f + Math.Abs(v)).ToArray();
        var w = RandomVector(rng, outputs * width, 1);
        var importance = RandomVector(rng, width, 1).Select(v => MathF.Exp(4 * v)).ToArray();
        var s = AwqFolding.ScalesFromImportance(importance);

        var foldedNorm = (float[])normWeight.Clone();
        AwqFolding.Apply(new TensorFold(null, s, null), foldedNorm, 0, width);
        var foldedW = (float[])w.Clone();
        AwqFolding.Apply(new TensorFold(s, null, null), foldedW, 0, width);

        var expected = Linear(w, RmsNorm(x, normWeight), outputs);
        var actual = Linear(foldedW, RmsNorm(x, foldedNorm), outputs);
        AssertClose(expected, actual, 1e-5f);
    }

    /// <summary>
    /// The direction of the scaling: channels with large activations get their weights scaled up before
    /// quantization, so after undoing the scale their effective weights are more precise than plain
    /// quantization makes them (and the quiet channels pay for it).
    /// </summary>
    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void SalientChannels_AreQuantizedMorePrecisely(int bits)
    {
        const int rows = 64, cols = 128;
        var rng = new Random(bits);
        var w = RandomVector(rng, rows * cols, 0.1f);
        var importance = new float[cols];
        for (int j = 0; j < cols; j++)
            importance[j] = j % 32 == 5 ? 100f : 1f; // four loud channels, one per half group
        var s = AwqFolding.ScalesFromImportance(importance);

        var plain = Dequantized(w, rows, cols, bits);
        var scaled = (float[])w.Clone();
        AwqFolding.Apply(new TensorFold(s, null, null), scaled, 0, cols);
        var awq = Dequantized(scaled, rows, cols, bits);

        double ErrorOn(Func<int, bool> columns, float[] q, bool unscale)
        {
            double sum = 0;
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++)
                    if (columns(c))
                        sum += Math.Abs(w[r * cols + c] - (unscale ? q[r * cols + c] / s[c] : q[r * cols + c]));
            return sum;
        }
        bool Loud(int c) => c % 32 == 5;
        Assert.True(ErrorOn(Loud, awq, true) < 0.5 * ErrorOn(Loud, plain, false));
        Assert.True(ErrorOn(c => !Loud(c), awq, true) > ErrorOn(c => !Loud(c), plain, false));
    }

    private static float[] Dequantized(float[] w, int rows, int cols, int bits)
    {
        var q = Pipeline.Kernels.Quantization.MlxAffine.Quantize(w, rows, cols, bits, 64, ScalarType.BF16);
        var result = new float[rows * cols];
        for (int r = 0; r < rows; r++)
            Pipeline.Kernels.Quantization.MlxAffine.DequantizeRow(q, r, result.AsSpan(r * cols, cols));
        return result;
    }

    /// <summary>
    /// Converting tiny-a with an imatrix and no quantization, in f32: every folded tensor is the original
    /// rescaled, and each layer's attention inputs and MLP output are unchanged to float precision.
    /// </summary>
    [Fact]
    public void TinyA_FoldedWithoutQuantization_KeepsEveryLayersFunction()
    {
        using var temp = TestPaths.NewTempFolder();
        using var original = SafetensorsSet.Open(TestPaths.TinyBf16);
        string imatrixPath = WriteImatrix(original, temp.Path, new Random(7), skip: null);
        var warnings = new List<string>();
        string output = Converter.Run(new ConvertOptions
        {
            InputDir = TestPaths.TinyBf16,
            OutputDir = Path.Combine(temp.Path, "folded"),
            ImatrixPath = imatrixPath,
            OutputType = ScalarType.F32,
        }, null, warnings.Add);
        Assert.DoesNotContain(warnings, w => w.StartsWith("AWQ", StringComparison.Ordinal));
        using var folded = SafetensorsSet.Open(output);
        Assert.False(File.ReadAllText(Path.Combine(output, "config.json")).Contains("quantization", StringComparison.Ordinal));

        var rng = new Random(11);
        for (int layer = 0; layer < 6; layer++)
        {
            string hf = $"model.language_model.layers.{layer}.";
            string mlx = $"language_model.model.layers.{layer}.";
            var h = RandomVector(rng, 64, 2);

            // Attention inputs: q, k and (on sliding layers) v see norm(h) w.
            foreach (string proj in new[] { "q_proj", "k_proj", "v_proj" })
            {
                if (!original.TryGet(hf + $"self_attn.{proj}.weight", out var w))
                {
                    Assert.True(layer is 2 or 5);
                    continue;
                }
                var expected = Linear(Load(w), RmsNorm(h, Load(original.Get(hf + "input_layernorm.weight"))), (int)w.Shape[0]);
                var actual = Linear(Load(folded.Get(mlx + $"self_attn.{proj}.weight")),
                    RmsNorm(h, Load(folded.Get(mlx + "input_layernorm.weight"))), (int)w.Shape[0]);
                AssertClose(expected, actual, 1e-5f);
            }

            // MLP: down(gelu(gate(n)) * up(n)) with n = norm(h) w_pre.
            var mlpExpected = Mlp(original, hf, h, hf + "pre_feedforward_layernorm.weight");
            var mlpActual = Mlp(folded, mlx, h, mlx + "pre_feedforward_layernorm.weight");
            AssertClose(mlpExpected, mlpActual, 1e-5f);

            // The folds really happened: weights and norms changed.
            Assert.NotEqual(Load(original.Get(hf + "mlp.down_proj.weight"))[0], Load(folded.Get(mlx + "mlp.down_proj.weight"))[0]);
            Assert.NotEqual(Load(original.Get(hf + "input_layernorm.weight"))[0], Load(folded.Get(mlx + "input_layernorm.weight"))[0]);
        }
        // Direction: q_proj's columns are multiplied by s (from the q/k/v importance), the norm divided by it.
        var imatrix = ImatrixFile.Read(imatrixPath);
        var importance = new float[64];
        foreach (string proj in new[] { "attn_q", "attn_k", "attn_v" })
        {
            var values = imatrix.Entries[$"blk.0.{proj}.weight"].Importance();
            for (int j = 0; j < 64; j++)
                importance[j] = Math.Max(importance[j], values[j]);
        }
        var s = AwqFolding.ScalesFromImportance(importance);
        var q0 = Load(original.Get("model.language_model.layers.0.self_attn.q_proj.weight"));
        var q0Folded = Load(folded.Get("language_model.model.layers.0.self_attn.q_proj.weight"));
        var norm0 = Load(original.Get("model.language_model.layers.0.input_layernorm.weight"));
        var norm0Folded = Load(folded.Get("language_model.model.layers.0.input_layernorm.weight"));
        for (int j = 0; j < 64; j++)
        {
            Assert.Equal(q0[3 * 64 + j] * s[j], q0Folded[3 * 64 + j]);
            Assert.Equal(norm0[j] / s[j], norm0Folded[j]);
        }

        // Tensors outside the folds are the bf16 values widened to f32.
        Assert.Equal(Load(original.Get("model.language_model.layers.0.self_attn.o_proj.weight")),
            Load(folded.Get("language_model.model.layers.0.self_attn.o_proj.weight")));
    }

    [Fact]
    public void MissingImportanceInAGroup_SkipsThatGroupWithAWarning()
    {
        using var temp = TestPaths.NewTempFolder();
        using var original = SafetensorsSet.Open(TestPaths.TinyBf16);
        string imatrixPath = WriteImatrix(original, temp.Path, new Random(3), skip: "blk.1.attn_v.weight");
        var warnings = new List<string>();
        using var prepared = Converter.Prepare(new ConvertOptions
        {
            InputDir = TestPaths.TinyBf16,
            OutputDir = Path.Combine(temp.Path, "unused"),
            ImatrixPath = imatrixPath,
        }, warnings.Add);
        Assert.Equal(["AWQ: layer 1 attention input (q/k/v) skipped: the imatrix has no entry for language_model.model.layers.1.self_attn.v_proj"], warnings);
        Assert.Null(prepared.Folding.For("language_model.model.layers.1.self_attn.q_proj.weight"));
        Assert.Null(prepared.Folding.For("language_model.model.layers.1.input_layernorm.weight"));
        Assert.NotNull(prepared.Folding.For("language_model.model.layers.1.mlp.gate_proj.weight"));
        // Full-attention layers have no v_proj: q and k alone make the group.
        Assert.NotNull(prepared.Folding.For("language_model.model.layers.2.self_attn.k_proj.weight"));
        Assert.NotNull(prepared.Folding.For("language_model.model.layers.2.input_layernorm.weight"));
        var up = prepared.Folding.For("language_model.model.layers.2.mlp.up_proj.weight")!;
        Assert.NotNull(up.ColumnMultipliers);
        Assert.NotNull(up.RowDivisors);
        Assert.Equal(6 * 3 - 1, prepared.Folding.FoldedGroups);
        Assert.False(Directory.Exists(Path.Combine(temp.Path, "unused")));
    }

    /// <summary>An imatrix for every decoder linear of tiny-a with random importances spanning several decades.</summary>
    internal static string WriteImatrix(SafetensorsSet model, string folder, Random rng, string? skip)
    {
        var entries = new List<ImatrixEntry>();
        foreach (string name in model.Names)
        {
            var target = TensorNaming.Parse(TensorNaming.ToMlxName(name));
            if (target.Layer is not int layer || target.Role is not (ModuleRole.QProj or ModuleRole.KProj or ModuleRole.VProj
                or ModuleRole.GateProj or ModuleRole.UpProj or ModuleRole.DownProj or ModuleRole.OProj))
                continue;
            string llama = ImatrixNames.ToLlamaName(layer, target.Role);
            if (llama == skip)
                continue;
            int width = (int)model.Get(name).Shape[1];
            entries.Add(new ImatrixEntry(llama, [.. Enumerable.Range(0, width).Select(_ => 40 * MathF.Exp(3 * (float)rng.NextDouble() - 1.5f))], 40));
        }
        string path = Path.Combine(folder, "imatrix.gguf");
        new ImatrixFile(entries, ["test"], 1, 40).Write(path);
        return path;
    }

    private static float[] Mlp(SafetensorsSet set, string prefix, float[] h, string normName)
    {
        var n = RmsNorm(h, Load(set.Get(normName)));
        var gate = Linear(Load(set.Get(prefix + "mlp.gate_proj.weight")), n, 128);
        var up = Linear(Load(set.Get(prefix + "mlp.up_proj.weight")), n, 128);
        var mixed = gate.Select((g, i) => GeluTanh(g) * up[i]).ToArray();
        return Linear(Load(set.Get(prefix + "mlp.down_proj.weight")), mixed, 64);
    }

    private static float GeluTanh(float x) =>
        0.5f * x * (1 + MathF.Tanh(MathF.Sqrt(2 / MathF.PI) * (x + 0.044715f * x * x * x)));

    internal static float[] Load(TensorInfo info)
    {
        var type = TensorDTypes.ToScalarType(info.DType)!.Value;
        var values = new float[info.ElementCount];
        for (int i = 0; i < values.Length; i++)
            values[i] = Scalars.Load(info.Data, i, type);
        return values;
    }

    private static float[] RandomVector(Random rng, int n, float scale) =>
        [.. Enumerable.Range(0, n).Select(_ => scale * (float)(rng.NextDouble() * 2 - 1))];

    private static float[] RmsNorm(float[] x, float[] w)
    {
        double sum = 0;
        foreach (float v in x)
            sum += (double)v * v;
        float inv = 1 / MathF.Sqrt((float)(sum / x.Length) + 1e-6f);
        return [.. x.Select((v, i) => v * inv * w[i])];
    }

    private static float[] Linear(float[] w, float[] x, int outputs)
    {
        int width = x.Length;
        var y = new float[outputs];
        for (int r = 0; r < outputs; r++)
        {
            float acc = 0;
            for (int c = 0; c < width; c++)
                acc += w[r * width + c] * x[c];
            y[r] = acc;
        }
        return y;
    }

    /// <summary>|a - b| within tolerance relative to the vector's largest magnitude.</summary>
    private static void AssertClose(float[] expected, float[] actual, float relative)
    {
        Assert.Equal(expected.Length, actual.Length);
        float scale = expected.Max(MathF.Abs);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(MathF.Abs(expected[i] - actual[i]) <= relative * scale,
                $"element {i}: {actual[i]} vs {expected[i]} (scale {scale})");
    }
}
