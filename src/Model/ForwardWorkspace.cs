using Pipeline.Kernels;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Model;

/// <summary>
/// Scratch activations for one forward pass at a time, sized for the largest layer and
/// <see cref="MaxRows"/> rows, plus logits for <see cref="MaxLogitRows"/> rows. One per executor
/// (layer-group actor, or an engine); batches pass through it.
/// </summary>
public sealed class ForwardWorkspace : IDisposable
{
    public ForwardWorkspace(IBackend backend, Gemma4TextConfig text, int maxRows, int maxLogitRows)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxRows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxLogitRows);
        MaxRows = maxRows;
        MaxLogitRows = maxLogitRows;
        int queryWidth = 0, kvWidth = 0;
        for (int layer = 0; layer < text.NumHiddenLayers; layer++)
        {
            queryWidth = Math.Max(queryWidth, text.QueryDim(layer));
            kvWidth = Math.Max(kvWidth, text.KvDim(layer));
        }
        Normed = backend.Allocate((long)maxRows * text.HiddenSize);
        Projected = backend.Allocate((long)maxRows * text.HiddenSize);
        Queries = backend.Allocate((long)maxRows * queryWidth);
        Keys = backend.Allocate((long)maxRows * kvWidth);
        Values = backend.Allocate((long)maxRows * kvWidth);
        Attention = backend.Allocate((long)maxRows * queryWidth);
        Gate = backend.Allocate((long)maxRows * text.IntermediateSize);
        Up = backend.Allocate((long)maxRows * text.IntermediateSize);
        HeadInput = backend.Allocate((long)maxLogitRows * text.HiddenSize);
        Logits = backend.Allocate((long)maxLogitRows * text.VocabSize);
    }

    public int MaxRows { get; }
    public int MaxLogitRows { get; }

    public DeviceBuffer Normed { get; }      // [rows, hidden]
    public DeviceBuffer Projected { get; }   // [rows, hidden]
    public DeviceBuffer Queries { get; }     // [rows, heads * head_dim]
    public DeviceBuffer Keys { get; }        // [rows, kv_heads * head_dim]
    public DeviceBuffer Values { get; }      // [rows, kv_heads * head_dim]
    public DeviceBuffer Attention { get; }   // [rows, heads * head_dim]
    public DeviceBuffer Gate { get; }        // [rows, intermediate]
    public DeviceBuffer Up { get; }          // [rows, intermediate]
    public DeviceBuffer HeadInput { get; }   // [logit rows, hidden]
    public DeviceBuffer Logits { get; }      // [logit rows, vocab]

    public void Dispose()
    {
        foreach (var buffer in new[] { Normed, Projected, Queries, Keys, Values, Attention, Gate, Up, HeadInput, Logits })
            buffer.Dispose();
    }
}
