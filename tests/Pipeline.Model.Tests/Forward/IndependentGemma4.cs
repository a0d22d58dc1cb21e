using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;

namespace Pipeline.Model.Tests.Forward;

/// <summary>
/// A Gemma-4 text forward written from issue 3's math block alone, sharing no code with the engine:
/// its own safetensors reader, its own MLX affine dequantizer (w = scale * code + bias, codes an
/// LSB-first bitstream over the row's little-endian uint32 words), plain float loops, and a full causal
/// recompute of every position (no cache). Slow and obvious on purpose; fine at hidden 256.
/// </summary>
internal sealed class IndependentGemma4
{
    private readonly int _hidden, _heads, _headDim, _kvHeads, _globalHeadDim, _globalKvHeads, _window, _vocab, _intermediate;
    private readonly bool[] _full;
    private readonly bool _kEqV;
    private readonly float _eps, _softcap, _slidingTheta, _fullTheta, _partialRotary;
    private readonly float[] _embed;          // [vocab, hidden] dequantized
    private readonly Layer[] _layers;
    private readonly float[] _finalNorm;

    private sealed record Layer(
        float[] InputNorm, float[] Q, float[] K, float[]? V, float[] O, float[] QNorm, float[] KNorm,
        float[] PostAttentionNorm, float[] PreFeedforwardNorm, float[] Gate, float[] Up, float[] Down,
        float[] PostFeedforwardNorm, float LayerScalar);

    public IndependentGemma4(string directory)
    {
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(directory, "config.json")))!;
        var text = config["text_config"]!;
        _hidden = (int)text["hidden_size"]!;
        _heads = (int)text["num_attention_heads"]!;
        _headDim = (int)text["head_dim"]!;
        _kvHeads = (int)text["num_key_value_heads"]!;
        _globalHeadDim = (int)text["global_head_dim"]!;
        _globalKvHeads = (int)text["num_global_key_value_heads"]!;
        _window = (int)text["sliding_window"]!;
        _vocab = (int)text["vocab_size"]!;
        _intermediate = (int)text["intermediate_size"]!;
        _kEqV = (bool)text["attention_k_eq_v"]!;
        _eps = (float)(double)text["rms_norm_eps"]!;
        _softcap = (float)(double)text["final_logit_softcapping"]!;
        _slidingTheta = (float)(double)text["rope_parameters"]!["sliding_attention"]!["rope_theta"]!;
        _fullTheta = (float)(double)text["rope_parameters"]!["full_attention"]!["rope_theta"]!;
        _partialRotary = (float)(double)text["rope_parameters"]!["full_attention"]!["partial_rotary_factor"]!;
        _full = text["layer_types"]!.AsArray().Select(t => (string)t! == "full_attention").ToArray();
        int groupSize = (int)config["quantization"]!["group_size"]!;

        var tensors = ReadSafetensors(Path.Combine(directory, "model.safetensors"));
        const string P = "language_model.model.";
        float[] Linear(string module) => tensors.ContainsKey(module + ".scales")
            ? Dequantize(tensors[module + ".weight"], tensors[module + ".scales"], tensors[module + ".biases"], groupSize)
            : Bf16(tensors[module + ".weight"]);
        float[] Vector(string name) => Bf16(tensors[name]);

        _embed = Linear(P + "embed_tokens");
        _finalNorm = Vector(P + "norm.weight");
        _layers = new Layer[_full.Length];
        for (int i = 0; i < _full.Length; i++)
        {
            string l = $"{P}layers.{i}.";
            _layers[i] = new Layer(
                Vector(l + "input_layernorm.weight"),
                Linear(l + "self_attn.q_proj"), Linear(l + "self_attn.k_proj"),
                _full[i] && _kEqV ? null : Linear(l + "self_attn.v_proj"),
                Linear(l + "self_attn.o_proj"),
                Vector(l + "self_attn.q_norm.weight"), Vector(l + "self_attn.k_norm.weight"),
                Vector(l + "post_attention_layernorm.weight"), Vector(l + "pre_feedforward_layernorm.weight"),
                Linear(l + "mlp.gate_proj"), Linear(l + "mlp.up_proj"), Linear(l + "mlp.down_proj"),
                Vector(l + "post_feedforward_layernorm.weight"),
                Vector(l + "layer_scalar")[0]);
        }
    }

    public int VocabSize => _vocab;

    /// <summary>Logits after every position of <paramref name="ids"/>: [ids.Length][vocab].</summary>
    public float[][] Logits(IReadOnlyList<int> ids)
    {
        int n = ids.Count;
        var h = new float[n][];                                  // [tokens][hidden]
        float embedScale = RoundToBf16(MathF.Sqrt(_hidden));
        for (int t = 0; t < n; t++)
            h[t] = _embed.AsSpan(ids[t] * _hidden, _hidden).ToArray().Select(x => x * embedScale).ToArray();

        for (int li = 0; li < _layers.Length; li++)
        {
            var layer = _layers[li];
            bool full = _full[li];
            int d = full ? _globalHeadDim : _headDim;
            int kvh = full ? _globalKvHeads : _kvHeads;
            var q = new float[n][];                              // [tokens][heads * d]
            var k = new float[n][];                              // [tokens][kvh * d]
            var v = new float[n][];
            for (int t = 0; t < n; t++)
            {
                var x = RmsNorm(h[t], layer.InputNorm);
                q[t] = MatVec(layer.Q, x, _heads * d);
                var kraw = MatVec(layer.K, x, kvh * d);
                var vraw = layer.V is null ? (float[])kraw.Clone() : MatVec(layer.V, x, kvh * d);
                k[t] = (float[])kraw.Clone();
                for (int hh = 0; hh < _heads; hh++)
                    Rope(NormHead(q[t].AsSpan(hh * d, d), layer.QNorm), t, full);
                for (int hh = 0; hh < kvh; hh++)
                {
                    Rope(NormHead(k[t].AsSpan(hh * d, d), layer.KNorm), t, full);
                    NormHead(vraw.AsSpan(hh * d, d), null);
                }
                v[t] = vraw;
            }

            for (int t = 0; t < n; t++)
            {
                var attn = new float[_heads * d];
                for (int hh = 0; hh < _heads; hh++)
                {
                    int kv = hh / (_heads / kvh);
                    var scores = new List<(int Pos, double Score)>();
                    for (int s = 0; s <= t; s++)
                    {
                        if (!full && t - s >= _window)
                            continue;
                        double dot = 0;
                        for (int j = 0; j < d; j++)
                            dot += q[t][hh * d + j] * k[s][kv * d + j];
                        scores.Add((s, dot));                    // scale 1.0
                    }
                    double max = scores.Max(x => x.Score);
                    double sum = scores.Sum(x => Math.Exp(x.Score - max));
                    foreach (var (s, score) in scores)
                    {
                        double p = Math.Exp(score - max) / sum;
                        for (int j = 0; j < d; j++)
                            attn[hh * d + j] += (float)(p * v[s][kv * d + j]);
                    }
                }
                var o = RmsNorm(MatVec(layer.O, attn, _hidden), layer.PostAttentionNorm);
                for (int j = 0; j < _hidden; j++)
                    h[t][j] += o[j];

                var m = RmsNorm(h[t], layer.PreFeedforwardNorm);
                var gate = MatVec(layer.Gate, m, _intermediate);
                var up = MatVec(layer.Up, m, _intermediate);
                for (int j = 0; j < _intermediate; j++)
                    gate[j] = GeluTanh(gate[j]) * up[j];
                var ff = RmsNorm(MatVec(layer.Down, gate, _hidden), layer.PostFeedforwardNorm);
                for (int j = 0; j < _hidden; j++)
                    h[t][j] = (h[t][j] + ff[j]) * layer.LayerScalar;
            }
        }

        var logits = new float[n][];
        for (int t = 0; t < n; t++)
        {
            var row = MatVec(_embed, RmsNorm(h[t], _finalNorm), _vocab);   // tied embedding as the head
            for (int i = 0; i < row.Length; i++)
                row[i] = _softcap * MathF.Tanh(row[i] / _softcap);
            logits[t] = row;
        }
        return logits;
    }

    private float[] RmsNorm(float[] x, float[] weight)
    {
        double sum = 0;
        foreach (float value in x)
            sum += value * value;
        float inv = 1f / MathF.Sqrt((float)(sum / x.Length) + _eps);
        var y = new float[x.Length];
        for (int i = 0; i < x.Length; i++)
            y[i] = x[i] * inv * weight[i];
        return y;
    }

    /// <summary>In place; null weight = RMSNormNoScale.</summary>
    private Span<float> NormHead(Span<float> x, float[]? weight)
    {
        double sum = 0;
        foreach (float value in x)
            sum += value * value;
        float inv = 1f / MathF.Sqrt((float)(sum / x.Length) + _eps);
        for (int i = 0; i < x.Length; i++)
            x[i] = x[i] * inv * (weight is null ? 1f : weight[i]);
        return x;
    }

    /// <summary>Half-split RoPE: j pairs with j + D/2. Full layers rotate only the first int(factor*D/2) pairs.</summary>
    private void Rope(Span<float> x, int position, bool full)
    {
        int d = x.Length, half = d / 2;
        double theta = full ? _fullTheta : _slidingTheta;
        int rotated = full ? (int)(_partialRotary * d / 2) : half;
        for (int i = 0; i < half; i++)
        {
            double inv = i < rotated ? Math.Pow(theta, -2.0 * i / d) : 0.0;
            double angle = position * inv;
            double cos = Math.Cos(angle), sin = Math.Sin(angle);
            double a = x[i], b = x[i + half];
            x[i] = (float)(a * cos - b * sin);
            x[i + half] = (float)(b * cos + a * sin);
        }
    }

    private static float GeluTanh(float x) =>
        (float)(0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))));

    /// <summary>y = W x with W [rows, cols] row-major.</summary>
    private static float[] MatVec(float[] w, float[] x, int rows)
    {
        int cols = x.Length;
        if (w.Length != rows * cols)
            throw new InvalidOperationException($"weight of {w.Length} values is not [{rows}, {cols}]");
        var y = new float[rows];
        for (int r = 0; r < rows; r++)
        {
            double sum = 0;
            for (int c = 0; c < cols; c++)
                sum += w[r * cols + c] * x[c];
            y[r] = (float)sum;
        }
        return y;
    }

    private sealed record RawTensor(string DType, long[] Shape, byte[] Data);

    private static Dictionary<string, RawTensor> ReadSafetensors(string path)
    {
        byte[] file = File.ReadAllBytes(path);
        long headerLength = BinaryPrimitives.ReadInt64LittleEndian(file);
        var header = JsonNode.Parse(Encoding.UTF8.GetString(file, 8, (int)headerLength))!.AsObject();
        var result = new Dictionary<string, RawTensor>();
        foreach (var (name, node) in header)
        {
            if (name == "__metadata__")
                continue;
            var offsets = node!["data_offsets"]!.AsArray();
            long begin = 8 + headerLength + (long)offsets[0]!, end = 8 + headerLength + (long)offsets[1]!;
            result[name] = new RawTensor(
                (string)node["dtype"]!,
                node["shape"]!.AsArray().Select(s => (long)s!).ToArray(),
                file[(int)begin..(int)end]);
        }
        return result;
    }

    private static float[] Bf16(RawTensor t)
    {
        if (t.DType != "BF16")
            throw new InvalidOperationException($"expected BF16, got {t.DType}");
        var values = new float[t.Data.Length / 2];
        for (int i = 0; i < values.Length; i++)
            values[i] = BitConverter.UInt32BitsToSingle((uint)BinaryPrimitives.ReadUInt16LittleEndian(t.Data.AsSpan(2 * i)) << 16);
        return values;
    }

    /// <summary>MLX affine: bits = words * 32 / cols, cols = groups * groupSize.</summary>
    private static float[] Dequantize(RawTensor weight, RawTensor scales, RawTensor biases, int groupSize)
    {
        int rows = (int)weight.Shape[0], words = (int)weight.Shape[1];
        int groups = (int)scales.Shape[1], cols = groups * groupSize;
        int bits = words * 32 / cols;
        var s = Bf16(scales);
        var b = Bf16(biases);
        var w = new float[(long)rows * cols];
        uint mask = (1u << bits) - 1;
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++)
            {
                long bit = (long)c * bits;
                int word = (int)(bit / 32), shift = (int)(bit % 32);
                ulong window = BinaryPrimitives.ReadUInt32LittleEndian(weight.Data.AsSpan(4 * (r * words + word)));
                if (shift + bits > 32)
                    window |= (ulong)BinaryPrimitives.ReadUInt32LittleEndian(weight.Data.AsSpan(4 * (r * words + word + 1))) << 32;
                uint code = (uint)(window >> shift) & mask;
                int g = r * groups + c / groupSize;
                w[(long)r * cols + c] = s[g] * code + b[g];
            }
        }
        return w;
    }

    private static float RoundToBf16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        bits += 0x7FFF + ((bits >> 16) & 1);
        return BitConverter.UInt32BitsToSingle(bits & 0xFFFF0000);
    }
}
