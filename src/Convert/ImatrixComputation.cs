using Pipeline.Kernels.Cpu;
using Pipeline.Model;

namespace Pipeline.Convert;

/// <summary>
/// <c>pipeline imatrix</c>: runs calibration tokens through Pipeline's own engine in chunks (each chunk
/// starts at position 0 with BOS in its first slot, as llama-imatrix does) and records, for every decoder
/// linear, the sum of squared input activations and the token count.
/// </summary>
public static class ImatrixComputation
{
    public const int DefaultChunkSize = 512;

    /// <summary>Computes the importance matrix of <paramref name="tokens"/> on the model in <paramref name="modelDir"/>.</summary>
    public static ImatrixFile Run(
        string modelDir, IReadOnlyList<int> tokens, int bosId, string datasetName, int chunkSize = DefaultChunkSize,
        int threads = 0, Action<int, int>? progress = null, CancellationToken cancel = default)
    {
        if (chunkSize < 2)
            throw new ConvertException($"chunk size {chunkSize} must be at least 2 tokens");
        if (tokens.Count < 1)
            throw new ConvertException("the calibration text produced no tokens");
        using var cpu = new CpuBackend(threads);
        var observer = new ActivationStatsBackend(cpu);
        using var engine = Engine.Load(modelDir, new EngineOptions { Backend = observer, MaxContext = chunkSize, MaxBatchRows = Math.Min(chunkSize, 256) });
        observer.Observe(engine.Checkpoint);
        if ((uint)bosId >= (uint)engine.VocabSize)
            throw new ConvertException($"BOS id {bosId} is outside the model's vocabulary of {engine.VocabSize}");

        // Chunk k covers tokens [k*(chunkSize-1), (k+1)*(chunkSize-1)) after its BOS.
        int step = chunkSize - 1;
        int chunks = (tokens.Count + step - 1) / step;
        var chunk = new int[chunkSize];
        using var session = engine.OpenSession();
        for (int k = 0; k < chunks; k++)
        {
            cancel.ThrowIfCancellationRequested();
            int count = Math.Min(step, tokens.Count - k * step);
            chunk[0] = bosId;
            for (int i = 0; i < count; i++)
                chunk[1 + i] = tokens[k * step + i];
            session.Reset();
            session.Prefill(chunk.AsSpan(0, count + 1));
            progress?.Invoke(k + 1, chunks);
        }
        return new ImatrixFile(observer.Entries(), [datasetName], chunks, chunkSize);
    }
}
