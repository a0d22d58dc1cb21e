namespace Pipeline.Kernels.Tests;

/// <summary>One backend op run end to end from host arrays, for tests comparing backends.</summary>
internal static class BackendRuns
{
    /// <summary>y [tokens, rows] = x [tokens, cols] W^T on <paramref name="backend"/>.</summary>
    public static float[] Linear(IBackend backend, LinearWeight weight, float[] x, int tokens)
    {
        using var input = backend.Allocate(x.Length);
        backend.Write(input, x);
        using var output = backend.Allocate((long)tokens * weight.Rows);
        backend.Linear(weight, input, output, tokens);
        var result = new float[output.Length];
        backend.Read(output, result);
        return result;
    }
}
