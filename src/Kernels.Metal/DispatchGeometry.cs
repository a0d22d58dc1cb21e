using System.Runtime.InteropServices;

namespace Pipeline.Kernels.Metal;

/// <summary>Metal's MTLSize: three NSUInteger, passed by value to dispatchThreadgroups.</summary>
[StructLayout(LayoutKind.Sequential)]
public readonly record struct MTLSize(nuint Width, nuint Height, nuint Depth)
{
    public static MTLSize Of(long width, long height = 1, long depth = 1)
    {
        if (width <= 0 || height <= 0 || depth <= 0)
            throw new ArgumentOutOfRangeException(nameof(width), $"MTLSize({width}, {height}, {depth}) has an empty dimension.");
        return new MTLSize((nuint)width, (nuint)height, (nuint)depth);
    }

    public long Count => (long)Width * (long)Height * (long)Depth;
}

/// <summary>
/// One dispatchThreadgroups:threadsPerThreadgroup: call. The real backend passes these two sizes
/// to Metal; the emulator derives every thread-position attribute from the same two sizes.
/// </summary>
public readonly record struct DispatchGeometry(MTLSize Threadgroups, MTLSize ThreadsPerThreadgroup)
{
    /// <summary>Metal's maxTotalThreadsPerThreadgroup on Apple GPUs.</summary>
    public const int MaxThreadsPerThreadgroup = 1024;

    public const int SimdWidth = 32;

    public static DispatchGeometry Create(MTLSize threadgroups, MTLSize threadsPerThreadgroup)
    {
        if (threadsPerThreadgroup.Count > MaxThreadsPerThreadgroup)
            throw new ArgumentOutOfRangeException(nameof(threadsPerThreadgroup),
                $"{threadsPerThreadgroup.Count} threads per threadgroup exceed Metal's limit of {MaxThreadsPerThreadgroup}.");
        return new DispatchGeometry(threadgroups, threadsPerThreadgroup);
    }

    public long TotalThreads => Threadgroups.Count * ThreadsPerThreadgroup.Count;
}
