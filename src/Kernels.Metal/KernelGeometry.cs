namespace Pipeline.Kernels.Metal;

/// <summary>
/// The launch geometry of every kernel family, in one place: the Metal backend dispatches exactly
/// these sizes, and the emulation tests run the kernels with them. The constants mirror the ones
/// at the top of each .metal file.
/// </summary>
public static class KernelGeometry
{
    public const int ElementwiseThreads = 256;
    public const int QmvRowsPerThreadgroup = 8;      // 2 simdgroups x 4 rows (Qmv.metal)
    public const int DmvRowsPerThreadgroup = 8;      // 2 simdgroups x 4 rows (Dmv.metal)
    public const int MatmulTile = 32;                // 32 tokens x 32 rows, 4 simdgroups (Matmul.metal)
    public const int AttentionSimdgroups = 4;        // Attention.metal
    public const int AttentionMaxHeadDim = 512;      // 16 dims per lane
    public const int TopKChunk = 2048;               // candidates per threadgroup (TopK.metal): 16 KB of values + ids
    public const int TopKThreads = 256;
    public const int MaxTopK = 64;

    /// <summary>One thread per element, 256 per threadgroup.</summary>
    public static DispatchGeometry Elementwise(long n) =>
        DispatchGeometry.Create(MTLSize.Of(Math.Max(1, (n + ElementwiseThreads - 1) / ElementwiseThreads)), MTLSize.Of(ElementwiseThreads));

    /// <summary>Threadgroup (rows/8, token): 64 threads.</summary>
    public static DispatchGeometry Qmv(int outRows, int tokens) =>
        DispatchGeometry.Create(MTLSize.Of((outRows + QmvRowsPerThreadgroup - 1) / QmvRowsPerThreadgroup, tokens), MTLSize.Of(64));

    public static DispatchGeometry Dmv(int outRows, int tokens) =>
        DispatchGeometry.Create(MTLSize.Of((outRows + DmvRowsPerThreadgroup - 1) / DmvRowsPerThreadgroup, tokens), MTLSize.Of(64));

    /// <summary>Threadgroup (row tile, token tile): 128 threads.</summary>
    public static DispatchGeometry Matmul(int outRows, int tokens) =>
        DispatchGeometry.Create(MTLSize.Of((outRows + MatmulTile - 1) / MatmulTile, (tokens + MatmulTile - 1) / MatmulTile), MTLSize.Of(128));

    /// <summary>One threadgroup per row; threads = a multiple of 32 covering dim/4, at most 1024.</summary>
    public static DispatchGeometry RmsNorm(int rows, int dim)
    {
        int threads = Math.Clamp(((dim + 3) / 4 + 31) / 32 * 32, 32, DispatchGeometry.MaxThreadsPerThreadgroup);
        return DispatchGeometry.Create(MTLSize.Of(rows), MTLSize.Of(threads));
    }

    /// <summary>One thread per rotated pair.</summary>
    public static DispatchGeometry Rope(int tokens, int heads, int headDim) => Elementwise((long)tokens * heads * (headDim / 2));

    /// <summary>Threadgroup (column block of 256, token).</summary>
    public static DispatchGeometry Embed(int cols, int tokens) =>
        DispatchGeometry.Create(MTLSize.Of((cols + ElementwiseThreads - 1) / ElementwiseThreads, tokens), MTLSize.Of(ElementwiseThreads));

    /// <summary>Threadgroup (query head, query token): 4 simdgroups.</summary>
    public static DispatchGeometry Attention(int heads, int tokens) =>
        DispatchGeometry.Create(MTLSize.Of(heads, tokens), MTLSize.Of(32 * AttentionSimdgroups));

    /// <summary>Threadgroups for one top-k pass over <paramref name="candidates"/> values.</summary>
    public static DispatchGeometry TopK(long candidates) =>
        DispatchGeometry.Create(MTLSize.Of(TopKChunks(candidates)), MTLSize.Of(TopKThreads));

    public static long TopKChunks(long candidates) => Math.Max(1, (candidates + TopKChunk - 1) / TopKChunk);
}
