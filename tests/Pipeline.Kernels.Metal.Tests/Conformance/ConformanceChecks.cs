using Pipeline.Kernels.Reference;

using Pipeline.Kernels.Testing;

namespace Pipeline.Kernels.Metal.Tests.Conformance;

/// <summary>
/// One check per backend op: run it on the backend under test and on <see cref="ReferenceBackend"/>
/// (double accumulation, element-by-element dequantization) and compare with the tolerance stated
/// at each check. Shared by the emulated suite (every CI run) and the Apple-hardware suite.
/// </summary>
internal static class ConformanceChecks
{
    public static void Linear(IBackend backend, RandomWeights w, LinearWeight weight, int tokens)
    {
        var x = w.Floats(tokens * weight.Cols);
        var expected = RunLinear(new ReferenceBackend(), weight, x, tokens);
        var actual = RunLinear(backend, weight, x, tokens);

        // Tolerance: f32 sums in another order. The quantized kernels sum scale*(q.x) + bias*sum(x),
        // whose terms can each be a few times the result, hence 4e-5 of sum |w||x|.
        for (int t = 0; t < tokens; t++)
        {
            for (int r = 0; r < weight.Rows; r++)
            {
                double magnitude = 0;
                for (int c = 0; c < weight.Cols; c++)
                    magnitude += Math.Abs(ReferenceWeights.At(weight, r, c) * x[t * weight.Cols + c]);
                int i = t * weight.Rows + r;
                if (!(Math.Abs(expected[i] - actual[i]) <= 4e-5 * magnitude + 1e-6))
                    Assert.Fail($"linear token {t} row {r}: reference {expected[i]}, {backend.Name} {actual[i]} (sum|wx| {magnitude})");
            }
        }
    }

    private static float[] RunLinear(IBackend backend, LinearWeight weight, float[] x, int tokens)
    {
        using var input = Upload(backend, x);
        using var output = backend.Allocate((long)tokens * weight.Rows);
        backend.Linear(weight, input, output, tokens);
        return ReadAll(backend, output);
    }

    public static void Embed(IBackend backend, LinearWeight table, int[] ids, float scale)
    {
        float[] Run(IBackend b)
        {
            using var output = b.Allocate((long)ids.Length * table.Cols);
            b.Embed(table, ids, scale, output);
            return ReadAll(b, output);
        }

        // Tolerance: q*scale + bias and the final * scale are single f32 roundings on both sides.
        AssertClose(Run(new ReferenceBackend()), Run(backend), (e, _) => 4e-7 * Math.Abs(e) + 1e-7, "embed");
    }

    public static void RmsNorm(IBackend backend, RandomWeights w, int rows, int dim, ScalarType? weightType)
    {
        var weight = weightType is { } type ? w.Dense(1, dim, type) : null;
        var x = w.Floats(rows * dim, spread: 3f);

        float[] Run(IBackend b)
        {
            using var input = Upload(b, x);
            using var output = b.Allocate(x.Length);
            b.RmsNorm(input, output, weight, rows, dim, 1e-6f);
            b.RmsNorm(input, input, weight, rows, dim, 1e-6f);   // in place gives the same
            var inPlace = ReadAll(b, input);
            var result = ReadAll(b, output);
            Assert.Equal(result, inPlace);
            return result;
        }

        // Tolerance: an f32 sum of squares (tree order) and one rsqrt.
        AssertClose(Run(new ReferenceBackend()), Run(backend), (e, _) => 5e-6 * Math.Abs(e) + 1e-6, "rmsnorm");
    }

    public static void Rope(IBackend backend, RandomWeights w, int tokens, int heads, int headDim, double partial, int firstPosition)
    {
        int half = headDim / 2;
        int rotated = partial == 0 ? half : (int)(partial * headDim / 2);
        var inverse = new float[half];
        for (int i = 0; i < half; i++)
            inverse[i] = i < rotated ? (float)Math.Pow(10000.0, -2.0 * i / headDim) : 0f;
        var x = w.Floats(tokens * heads * headDim);
        var positions = Enumerable.Range(0, tokens).Select(t => firstPosition + 3 * t).ToArray();

        float[] Run(IBackend b)
        {
            using var data = Upload(b, x);
            using var frequencies = Upload(b, inverse);
            b.Rope(data, positions, heads, headDim, frequencies);
            return ReadAll(b, data);
        }

        var actual = Run(backend);
        // Tolerance: the reference rotates by a double angle; the kernel carries the f32 product
        // as hi + lo, so it stays within a few f32 ulps of it even at large positions.
        AssertClose(Run(new ReferenceBackend()), actual, (_, _) => 2e-6, "rope");
        for (int t = 0; t < tokens; t++)
        {
            for (int h = 0; h < heads; h++)
            {
                for (int j = rotated; j < half; j++)
                {
                    int i = (t * heads + h) * headDim + j;
                    Assert.Equal(x[i], actual[i]);
                    Assert.Equal(x[i + half], actual[i + half]);
                }
            }
        }
    }

    public static void Attention(IBackend backend, RandomWeights w, AttentionShape shape, int capacity, int start, int tokens, TokenRange[] ranges)
    {
        int kvWidth = shape.KvWidth;
        var q = w.Floats(tokens * shape.QueryWidth);
        var blockK = w.Floats(tokens * kvWidth);
        var blockV = w.Floats(tokens * kvWidth);
        var cacheK = w.Floats(capacity * kvWidth);
        var cacheV = w.Floats(capacity * kvWidth);

        float[] Run(IBackend b)
        {
            using var queries = Upload(b, q);
            using var keys = Upload(b, blockK);
            using var values = Upload(b, blockV);
            using var ck = Upload(b, cacheK);
            using var cv = Upload(b, cacheV);
            using var output = b.Allocate(q.Length);
            var cache = new KvStore(ck, cv, capacity);
            b.Attention(queries, keys, values, cache, start, tokens, shape, output, ranges);
            b.StoreKv(keys, values, cache, start, tokens, kvWidth);
            return [.. ReadAll(b, output), .. ReadAll(b, ck), .. ReadAll(b, cv)];
        }

        // Tolerance: f32 dot products of length headDim and an f32 online softmax; outputs are O(1).
        // The cache contents (after StoreKv) must match exactly.
        AssertClose(Run(new ReferenceBackend()), Run(backend), (_, _) => 5e-5, "attention (then cache contents)");
    }

    /// <summary>Attention over a window-sized ring, fed in uneven blocks, equals attention over the whole history.</summary>
    public static void AttentionRing(IBackend backend, RandomWeights w)
    {
        var shape = new AttentionShape(4, 2, 8, Window: 6, Scale: 1f);
        int total = 40, kvWidth = shape.KvWidth;
        var keys = w.Floats(total * kvWidth);
        var values = w.Floats(total * kvWidth);
        var queries = w.Floats(total * shape.QueryWidth);

        float[] Run(IBackend b, int capacity, int[] blocks)
        {
            using var k = Upload(b, keys);
            using var v = Upload(b, values);
            using var q = Upload(b, queries);
            using var ck = b.Allocate((long)capacity * kvWidth);
            using var cv = b.Allocate((long)capacity * kvWidth);
            using var output = b.Allocate(queries.Length);
            var cache = new KvStore(ck, cv, capacity);
            int start = 0;
            foreach (int n in blocks)
            {
                b.Attention(q.Slice(start * shape.QueryWidth, n * shape.QueryWidth), k.Slice(start * kvWidth, n * kvWidth),
                    v.Slice(start * kvWidth, n * kvWidth), cache, start, n, shape, output.Slice(start * shape.QueryWidth, n * shape.QueryWidth), []);
                b.StoreKv(k.Slice(start * kvWidth, n * kvWidth), v.Slice(start * kvWidth, n * kvWidth), cache, start, n, kvWidth);
                start += n;
            }
            return ReadAll(b, output);
        }

        var linear = Run(new ReferenceBackend(), total, [total]);
        AssertClose(linear, Run(backend, 6, [3, 1, 10, 1, 1, 24]), (_, _) => 5e-5, "ring in blocks");
        AssertClose(linear, Run(backend, 9, Enumerable.Repeat(1, total).ToArray()), (_, _) => 5e-5, "ring token by token");
    }

    public static void Elementwise(IBackend backend, RandomWeights w, int n)
    {
        var a = w.Floats(n, spread: 8f);
        var b = w.Floats(n, spread: 2f);
        a[0] = 40f;   // saturated tanh / large GELU inputs
        if (n > 1)
            a[1] = -40f;

        float[] Run(IBackend k, Action<IBackend, DeviceBuffer, DeviceBuffer, DeviceBuffer> op)
        {
            using var x = Upload(k, a);
            using var y = Upload(k, b);
            using var output = k.Allocate(n);
            op(k, x, y, output);
            return ReadAll(k, output);
        }

        var reference = new ReferenceBackend();
        // GeGLU: f32 tanh and polynomial, relative 1e-5.
        Action<IBackend, DeviceBuffer, DeviceBuffer, DeviceBuffer> geglu = (k, x, y, o) => k.GeGlu(x, y, o);
        AssertClose(Run(reference, geglu), Run(backend, geglu), (e, _) => 1e-5 * Math.Abs(e) + 1e-6, "geglu");
        // In place on the gate.
        Action<IBackend, DeviceBuffer, DeviceBuffer, DeviceBuffer> gegluInPlace = (k, x, y, o) => { k.GeGlu(x, y, x); k.Copy(x, o); };
        AssertClose(Run(reference, gegluInPlace), Run(backend, gegluInPlace), (e, _) => 1e-5 * Math.Abs(e) + 1e-6, "geglu in place");
        // Add, Scale, Copy: exact.
        Action<IBackend, DeviceBuffer, DeviceBuffer, DeviceBuffer> add = (k, x, y, o) => k.Add(x, y, o);
        AssertClose(Run(reference, add), Run(backend, add), (_, _) => 0, "add");
        Action<IBackend, DeviceBuffer, DeviceBuffer, DeviceBuffer> scale = (k, x, y, o) => { k.Copy(x, o); k.Scale(o, 0.7f); };
        AssertClose(Run(reference, scale), Run(backend, scale), (_, _) => 0, "scale");
        // Softcap 30: f32 tanh, absolute 1e-4.
        Action<IBackend, DeviceBuffer, DeviceBuffer, DeviceBuffer> softcap = (k, x, y, o) => { k.Copy(x, o); k.Softcap(o, 30f); };
        AssertClose(Run(reference, softcap), Run(backend, softcap), (_, _) => 1e-4, "softcap");
    }

    public static DeviceBuffer Upload(IBackend backend, float[] values)
    {
        var buffer = backend.Allocate(values.Length);
        backend.Write(buffer, values);
        return buffer;
    }

    public static float[] ReadAll(IBackend backend, BufferSlice slice)
    {
        var result = new float[slice.Length];
        backend.Read(slice, result);
        return result;
    }

    public static void AssertClose(float[] expected, float[] actual, Func<double, double, double> tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            double allowed = tolerance(expected[i], actual[i]);
            if (!(Math.Abs(expected[i] - actual[i]) <= allowed))
                Assert.Fail($"{what}[{i}]: reference {expected[i]}, actual {actual[i]}, allowed {allowed}");
        }
    }
}
