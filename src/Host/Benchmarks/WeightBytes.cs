using Pipeline.Model.Checkpoint;

namespace Pipeline.Host.Benchmarks;

public static class WeightBytes
{
    /// <summary>
    /// Bytes one decoded token streams: every text-decoder tensor of the checkpoint once (the embedding
    /// in full, as it is also the tied head; an untied head is added), as llama.cpp's run.mjs counts
    /// its GGUF. Vision tensors are left out: text decode never reads them.
    /// </summary>
    public static long PerDecodedToken(Gemma4Checkpoint checkpoint)
    {
        long bytes = 0;
        foreach (string name in checkpoint.Tensors.Names)
        {
            if (name.StartsWith(checkpoint.TextPrefix, StringComparison.Ordinal) && !name.Contains("vision", StringComparison.Ordinal))
                bytes += checkpoint.Tensors.Get(name).ByteLength;
        }
        if (!ReferenceEquals(checkpoint.LmHead, checkpoint.Embedding))
            bytes += checkpoint.LmHead.ByteSize;
        return bytes;
    }
}
