using System.IO.Compression;

namespace Pipeline.Tokenizer.Tests;

/// <summary>
/// Hugging Face's Rust tokenizers 0.22.2 in-process (Tokenizers.DotNet), on the shipped
/// tokenizer.json. Its Encode always adds special tokens; its Decode always skips them.
/// </summary>
public sealed class HfOracle : IDisposable
{
    private readonly string _jsonPath;

    public HfOracle()
    {
        _jsonPath = Path.Combine(Path.GetTempPath(), $"pipeline-tokenizer-{Environment.ProcessId}-{Guid.NewGuid():N}.json");
        using (var gz = new GZipStream(File.OpenRead(Fixtures.ShippedTokenizerGz), CompressionMode.Decompress))
        using (var file = File.Create(_jsonPath))
            gz.CopyTo(file);
        Rust = new Tokenizers.DotNet.Tokenizer(_jsonPath);
    }

    public Tokenizers.DotNet.Tokenizer Rust { get; }

    /// <summary>HF encode(text, add_special_tokens: true).</summary>
    public int[] EncodeWithSpecialTokens(string text) => [.. Rust.Encode(text).Select(id => (int)id)];

    /// <summary>HF decode(ids, skip_special_tokens: true).</summary>
    public string DecodeSkippingSpecialTokens(int[] ids) => Rust.Decode([.. ids.Select(id => (uint)id)]);

    public void Dispose()
    {
        Rust.Dispose();
        File.Delete(_jsonPath);
    }
}
