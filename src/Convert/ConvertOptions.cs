using Pipeline.Kernels;

namespace Pipeline.Convert;

/// <summary>The flags of <c>pipeline convert</c> (named as in <c>mlx convert</c>).</summary>
public sealed record ConvertOptions
{
    public required string InputDir { get; init; }
    public required string OutputDir { get; init; }
    /// <summary><c>-q</c>: quantize with <see cref="Recipe"/>; without it tensors are only renamed (and folded).</summary>
    public bool Quantize { get; init; }
    public string Recipe { get; init; } = "uniform";
    public int Bits { get; init; } = 4;
    public int GroupSize { get; init; } = 64;
    /// <summary>A llama.cpp imatrix GGUF: enables AWQ pre-scaling folded into the norms.</summary>
    public string? ImatrixPath { get; init; }
    /// <summary>Dtype of dense outputs, scales and biases; null keeps the source dtype.</summary>
    public ScalarType? OutputType { get; init; }
    public long MaxShardBytes { get; init; } = 5L << 30;
}
