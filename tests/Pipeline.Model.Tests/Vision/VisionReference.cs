using Pipeline.Kernels;
using Pipeline.Model.Vision;

namespace Pipeline.Model.Tests.Vision;

/// <summary>
/// Hugging Face's Gemma4VisionModel + Gemma4MultimodalEmbedder, transcribed literally in plain loops (f32
/// values, f64 sums): every one of the MaxPatches patches is computed, padding patches are masked out of
/// attention as keys, RoPE splits each head into an x half and a y half with rotate_half inside each,
/// pooling assigns patch (x, y) to group x/k + (W/k)(y/k) through the positions, as HF does.
/// </summary>
internal static class VisionReference
{
    public static float[] Encode(Gemma4VisionWeights w, int textHidden, PreprocessedImage image)
    {
        var config = w.Config;
        int patches = image.MaxPatches, hidden = config.HiddenSize, d = config.HeadDim;
        int heads = config.NumAttentionHeads, kvHeads = config.NumKeyValueHeads, k = config.PoolingKernelSize;
        float eps = config.RmsNormEps;
        var padding = new bool[patches];
        for (int t = 0; t < patches; t++)
            padding[t] = image.Positions[t * 2] == -1 && image.Positions[t * 2 + 1] == -1;

        // Patch embedding.
        var h = new float[patches][];
        for (int t = 0; t < patches; t++)
        {
            var input = new float[image.PatchValues];
            for (int i = 0; i < input.Length; i++)
                input[i] = 2 * (image.Pixels[t * image.PatchValues + i] - 0.5f);
            h[t] = MatVec(w.InputProjection, input);
            if (!padding[t])
            {
                int x = image.Positions[t * 2], y = image.Positions[t * 2 + 1];
                for (int c = 0; c < hidden; c++)
                    h[t][c] += At(w.PositionTable, x, c) + At(w.PositionTable, config.PositionEmbeddingSize + y, c);
            }
        }

        foreach (var layer in w.Layers)
        {
            var q = new float[patches][];
            var kk = new float[patches][];
            var v = new float[patches][];
            for (int t = 0; t < patches; t++)
            {
                var a = RmsNorm(h[t], w: layer.InputNorm, eps);
                q[t] = MatVec(layer.QProj, a);
                kk[t] = MatVec(layer.KProj, a);
                v[t] = MatVec(layer.VProj, a);
                int x = image.Positions[t * 2], y = image.Positions[t * 2 + 1];
                for (int head = 0; head < heads; head++)
                    Rope2D(q[t].AsSpan(head * d, d), NormInPlace(q[t].AsSpan(head * d, d), layer.QNorm, eps), x, y, config.RopeTheta);
                for (int head = 0; head < kvHeads; head++)
                {
                    Rope2D(kk[t].AsSpan(head * d, d), NormInPlace(kk[t].AsSpan(head * d, d), layer.KNorm, eps), x, y, config.RopeTheta);
                    NormInPlace(v[t].AsSpan(head * d, d), null, eps);
                }
            }
            var next = new float[patches][];
            for (int t = 0; t < patches; t++)
            {
                var attention = new float[heads * d];
                for (int head = 0; head < heads; head++)
                {
                    int kvHead = head / (heads / kvHeads);
                    var scores = new double[patches];
                    double max = double.NegativeInfinity;
                    for (int s = 0; s < patches; s++)
                    {
                        if (padding[s])
                            continue;
                        double dot = 0;
                        for (int e = 0; e < d; e++)
                            dot += (double)q[t][head * d + e] * kk[s][kvHead * d + e];
                        scores[s] = dot; // scale 1.0
                        max = Math.Max(max, dot);
                    }
                    double sum = 0;
                    for (int s = 0; s < patches; s++)
                    {
                        scores[s] = padding[s] ? 0 : Math.Exp(scores[s] - max);
                        sum += scores[s];
                    }
                    for (int e = 0; e < d; e++)
                    {
                        double acc = 0;
                        for (int s = 0; s < patches; s++)
                            acc += scores[s] / sum * v[s][kvHead * d + e];
                        attention[head * d + e] = (float)acc;
                    }
                }
                var attended = RmsNorm(MatVec(layer.OProj, attention), layer.PostAttentionNorm, eps);
                var mid = new float[hidden];
                for (int c = 0; c < hidden; c++)
                    mid[c] = h[t][c] + attended[c];
                var m = RmsNorm(mid, layer.PreFeedforwardNorm, eps);
                var gate = MatVec(layer.Gate, m);
                var up = MatVec(layer.Up, m);
                for (int i = 0; i < gate.Length; i++)
                    gate[i] = (float)(GeluTanh(gate[i]) * up[i]);
                var mlp = RmsNorm(MatVec(layer.Down, gate), layer.PostFeedforwardNorm, eps);
                next[t] = new float[hidden];
                for (int c = 0; c < hidden; c++)
                    next[t][c] = mid[c] + mlp[c];
            }
            h = next;
        }

        // Pooling by positions (padding rows zeroed, positions clamped to 0).
        int outputs = patches / (k * k);
        int maxX = 0;
        for (int t = 0; t < patches; t++)
            maxX = Math.Max(maxX, Math.Max(0, image.Positions[t * 2]));
        maxX += 1;
        var pooled = new double[outputs, hidden];
        var used = new bool[outputs];
        for (int t = 0; t < patches; t++)
        {
            int x = Math.Max(0, image.Positions[t * 2]), y = Math.Max(0, image.Positions[t * 2 + 1]);
            int group = x / k + maxX / k * (y / k);
            used[group] = true;
            if (padding[t])
                continue;
            for (int c = 0; c < hidden; c++)
                pooled[group, c] += h[t][c] / (double)(k * k);
        }

        var result = new List<float>();
        for (int g = 0; g < outputs; g++)
        {
            if (!used[g])
                continue;
            var row = new float[hidden];
            for (int c = 0; c < hidden; c++)
            {
                row[c] = (float)(pooled[g, c] * Math.Sqrt(hidden));
                if (w.StdBias is { } bias && w.StdScale is { } scale)
                    row[c] = (row[c] - At(bias, 0, c)) * At(scale, 0, c);
            }
            result.AddRange(MatVec(w.Projection, RmsNorm(row, null, eps)));
        }
        return [.. result];
    }

    private static float At(DenseWeight w, int row, int col) => Scalars.Load(w.Data, (long)row * w.Cols + col, w.Type);

    private static float[] MatVec(DenseWeight w, float[] x)
    {
        var y = new float[w.Rows];
        for (int r = 0; r < w.Rows; r++)
        {
            double sum = 0;
            for (int c = 0; c < w.Cols; c++)
                sum += (double)At(w, r, c) * x[c];
            y[r] = (float)sum;
        }
        return y;
    }

    private static float[] RmsNorm(float[] x, DenseWeight? w, float eps)
    {
        var y = (float[])x.Clone();
        NormInPlace(y, w, eps);
        return y;
    }

    /// <summary>x = x / sqrt(mean(x^2) + eps) * w (w = 1 when null); returns x for chaining.</summary>
    private static Span<float> NormInPlace(Span<float> x, DenseWeight? w, float eps)
    {
        double squares = 0;
        foreach (float value in x)
            squares += (double)value * value;
        double inverse = 1 / Math.Sqrt(squares / x.Length + eps);
        for (int i = 0; i < x.Length; i++)
            x[i] = (float)(x[i] * inverse * (w is null ? 1 : At(w, 0, i)));
        return x;
    }

    /// <summary>HF apply_multidimensional_rope: halves [0, D/2) with x and [D/2, D) with y, rotate_half within each.</summary>
    private static void Rope2D(Span<float> target, Span<float> head, int x, int y, double theta)
    {
        int half = head.Length / 2, quarter = half / 2;
        var source = head.ToArray();
        for (int part = 0; part < 2; part++)
        {
            int position = part == 0 ? x : y, offset = part * half;
            for (int j = 0; j < quarter; j++)
            {
                double inverse = 1.0 / Math.Pow(theta, 2.0 * j / half);
                double angle = position * inverse;
                double a = source[offset + j], b = source[offset + j + quarter];
                target[offset + j] = (float)(a * Math.Cos(angle) - b * Math.Sin(angle));
                target[offset + j + quarter] = (float)(b * Math.Cos(angle) + a * Math.Sin(angle));
            }
        }
    }

    private static double GeluTanh(double x) => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
}
