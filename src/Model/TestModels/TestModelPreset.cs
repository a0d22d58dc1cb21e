namespace Pipeline.Model.TestModels;

/// <summary>
/// Shapes of a generated Gemma-4 model (a text decoder and optionally a vision tower). Layer i uses full attention iff
/// (i+1) % <see cref="FullAttentionPeriod"/> == 0, sliding-window attention otherwise.
/// Full-attention layers use global KV heads of <see cref="GlobalHeadDim"/> with K = V (no v_proj).
/// </summary>
public sealed record TestModelPreset(
    string Name,
    int HiddenSize,
    int NumLayers,
    int IntermediateSize,
    int NumHeads,
    int NumKvHeads,
    int HeadDim,
    int NumGlobalKvHeads,
    int GlobalHeadDim,
    int SlidingWindow,
    int FullAttentionPeriod,
    int VocabSize,
    int MaxPositionEmbeddings)
{
    /// <summary>
    /// Like the tiny-a fixture: hidden 64, 6 layers (full attention at layers 2 and 5), the real
    /// vocabulary; plus a tiny vision tower.
    /// </summary>
    public static readonly TestModelPreset Tiny = new(
        "tiny", HiddenSize: 64, NumLayers: 6, IntermediateSize: 128, NumHeads: 4, NumKvHeads: 2, HeadDim: 32,
        NumGlobalKvHeads: 1, GlobalHeadDim: 64, SlidingWindow: 16, FullAttentionPeriod: 3,
        VocabSize: 262144, MaxPositionEmbeddings: 4096)
    { Vision = TestVisionPreset.Tiny };

    /// <summary>
    /// Hidden 256 with a 1,024-token vocabulary: big enough that quantization groups, GQA and the
    /// proportional RoPE's unrotated dims all show, small enough that an unoptimized float forward in a
    /// test runs in seconds. 6 layers (full attention at 2 and 5), window 16, no vision tower.
    /// </summary>
    public static readonly TestModelPreset Mid = new(
        "mid", HiddenSize: 256, NumLayers: 6, IntermediateSize: 512, NumHeads: 4, NumKvHeads: 2, HeadDim: 64,
        NumGlobalKvHeads: 1, GlobalHeadDim: 128, SlidingWindow: 16, FullAttentionPeriod: 3,
        VocabSize: 1024, MaxPositionEmbeddings: 4096);

    /// <summary>Gemma-4-31B layer shapes, 60 layers.</summary>
    public static readonly TestModelPreset Gemma31B = new(
        "31b", HiddenSize: 5376, NumLayers: 60, IntermediateSize: 21504, NumHeads: 32, NumKvHeads: 16, HeadDim: 256,
        NumGlobalKvHeads: 4, GlobalHeadDim: 512, SlidingWindow: 1024, FullAttentionPeriod: 6,
        VocabSize: 262144, MaxPositionEmbeddings: 262144);

    /// <summary>Gemma-4-31B layer shapes, 6 layers: 5 sliding and 1 full.</summary>
    public static readonly TestModelPreset Small = Gemma31B with { Name = "small", NumLayers = 6 };

    public static IReadOnlyList<TestModelPreset> All { get; } = [Tiny, Mid, Small, Gemma31B];

    /// <summary>The vision tower (vision_config and vision_tower.* / embed_vision.* weights), or null for text only.</summary>
    public TestVisionPreset? Vision { get; init; }

    /// <summary>
    /// This preset with <paramref name="layers"/> layers, keeping the sliding:full pattern (a multiple of
    /// <see cref="FullAttentionPeriod"/>, so the last layer is a full-attention one, as in Gemma 4).
    /// </summary>
    public TestModelPreset WithLayers(int layers) =>
        layers > 0 && layers % FullAttentionPeriod == 0
            ? this with { NumLayers = layers }
            : throw new ArgumentException(
                $"--layers {layers} for preset '{Name}' must be a positive multiple of {FullAttentionPeriod} (the sliding:full attention period)", nameof(layers));

    /// <summary>" --layers N" when the layer count differs from the named preset's, else empty (for the command line a folder records).</summary>
    public string LayersOption => All.FirstOrDefault(p => p.Name == Name) is { } named && named.NumLayers != NumLayers ? $" --layers {NumLayers}" : "";

    public bool IsFullAttention(int layer) => (layer + 1) % FullAttentionPeriod == 0;

    public static TestModelPreset Parse(string name) =>
        All.FirstOrDefault(p => p.Name == name)
        ?? throw new ArgumentException(
            $"unknown test-model preset '{name}' (known: {string.Join(", ", All.Select(p => p.Name))})", nameof(name));
}

/// <summary>
/// Shapes of a generated vision tower. Patches of 16 pixels, 3x3 pooling and RoPE theta 100, as Gemma 4;
/// the position table must cover the widest patch grid an image can take (3 * budget patches).
/// </summary>
public sealed record TestVisionPreset(
    int HiddenSize,
    int NumLayers,
    int IntermediateSize,
    int NumHeads,
    int HeadDim,
    int PositionEmbeddingSize)
{
    public const int PatchSize = 16;
    public const int PoolingKernel = 3;

    /// <summary>Hidden 32, 2 layers, 2 heads of 16, table of 1024 positions (enough for the 280-token budget).</summary>
    public static readonly TestVisionPreset Tiny = new(HiddenSize: 32, NumLayers: 2, IntermediateSize: 64, NumHeads: 2, HeadDim: 16, PositionEmbeddingSize: 1024);

    /// <summary>Gemma-4-31B's tower: hidden 1152, 27 layers, 16 heads of 72, intermediate 4304.</summary>
    public static readonly TestVisionPreset Gemma31B = new(HiddenSize: 1152, NumLayers: 27, IntermediateSize: 4304, NumHeads: 16, HeadDim: 72, PositionEmbeddingSize: 10240);
}

/// <summary>How a generated checkpoint stores its weights.</summary>
public enum TestModelQuant
{
    /// <summary>MLX layout (language_model.model.*, vision_tower.*), the UD-Q2_K_XL recipe: embed and q/k/v 4-bit, gate/up 2-bit, down 3-bit, group 64; the vision tower bf16.</summary>
    UdQ2Kxl,

    /// <summary>Hugging Face layout (model.language_model.*, model.vision_tower.*), every tensor bf16.</summary>
    Bf16,
}

public static class TestModelQuants
{
    public static string Name(TestModelQuant quant) => quant == TestModelQuant.Bf16 ? "bf16" : "ud-q2kxl";

    public static TestModelQuant Parse(string name) => name switch
    {
        "ud-q2kxl" => TestModelQuant.UdQ2Kxl,
        "bf16" => TestModelQuant.Bf16,
        _ => throw new ArgumentException($"unknown test-model quantization '{name}' (known: ud-q2kxl, bf16)", nameof(name)),
    };
}
