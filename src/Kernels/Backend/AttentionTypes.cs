namespace Pipeline.Kernels;

/// <summary>
/// Geometry of one attention layer. Query head h reads KV head h / (Heads / KvHeads).
/// Window = 0: full causal attention; Window = w &gt; 0: query position i sees key position j only
/// when i - j &lt; w. Scores are q.k * Scale (Gemma 4 uses 1.0); softmax runs in f32.
/// </summary>
public readonly record struct AttentionShape(int Heads, int KvHeads, int HeadDim, int Window, float Scale)
{
    public int QueryWidth => Heads * HeadDim;
    public int KvWidth => KvHeads * HeadDim;

    public void Validate()
    {
        if (Heads <= 0 || KvHeads <= 0 || HeadDim <= 0 || Heads % KvHeads != 0 || Window < 0)
            throw new ArgumentException($"invalid attention shape {this}: heads must be a positive multiple of kv heads, window >= 0");
    }
}

/// <summary>
/// One layer's KV cache in backend memory: Keys and Values are [Capacity, KvHeads, HeadDim].
/// Absolute position p lives in slot p % Capacity, so a cache whose capacity covers every
/// position is linear and a smaller one is a ring (sliding layers).
/// </summary>
public readonly record struct KvStore(BufferSlice Keys, BufferSlice Values, int Capacity);

/// <summary>
/// Block rows [Start, End) whose tokens attend to each other both ways (e.g. the tokens of one
/// image); all other rows are causal.
/// </summary>
public readonly record struct TokenRange(int Start, int End);
