using Pipeline.Kernels.Reference;

namespace Pipeline.Kernels.Tests;

/// <summary>
/// Double-precision Y[t, r] = sum_k W[r, k] X[t, k] over the exact reference weights, with sum |w x| per output
/// for the tolerance: what the GEMM and the small-M kernel tests compare against.
/// </summary>
internal sealed class LinearReferenceSums
{
    private readonly double[] _sums, _magnitudes;   // [tokens, rows]
    private readonly int _rows;

    public LinearReferenceSums(LinearWeight weight, float[] x, int tokens)
    {
        int rows = weight.Rows, cols = weight.Cols;
        var dense = new float[rows * cols];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++)
                dense[r * cols + c] = ReferenceWeights.At(weight, r, c);
        }
        _rows = rows;
        _sums = new double[tokens * rows];
        _magnitudes = new double[tokens * rows];
        for (int t = 0; t < tokens; t++)
        {
            for (int r = 0; r < rows; r++)
            {
                double sum = 0, magnitude = 0;
                for (int c = 0; c < cols; c++)
                {
                    double product = (double)dense[r * cols + c] * x[t * cols + c];
                    sum += product;
                    magnitude += Math.Abs(product);
                }
                _sums[t * rows + r] = sum;
                _magnitudes[t * rows + r] = magnitude;
            }
        }
    }

    /// <summary>Fails unless every output of the first <paramref name="tokens"/> rows of <paramref name="actual"/> ([tokens, rows]) is within 1e-5 of sum |w x|.</summary>
    public void AssertClose(float[] actual, int tokens, string what, string kernel)
    {
        for (int t = 0; t < tokens; t++)
        {
            for (int r = 0; r < _rows; r++)
            {
                double sum = _sums[t * _rows + r], magnitude = _magnitudes[t * _rows + r];
                float value = actual[t * _rows + r];
                if (!(Math.Abs(value - sum) <= 1e-5 * magnitude + 1e-30))
                    Assert.Fail($"{what}, {_rows} rows, {tokens} tokens: token {t} row {r}: reference {sum}, {kernel} {value} (sum|wx| {magnitude})");
            }
        }
    }
}
