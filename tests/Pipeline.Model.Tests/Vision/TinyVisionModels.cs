using Pipeline.Model.TestModels;
using Pipeline.Model.Tests.Checkpoint;

namespace Pipeline.Model.Tests.Vision;

/// <summary>The tiny preset (text decoder + tiny vision tower) generated once in both layouts, shared by the vision tests.</summary>
public sealed class TinyVisionModels : IDisposable
{
    public const ulong Seed = 17;

    private readonly TempFolder _mlx = new();
    private readonly TempFolder _hf = new();

    public TinyVisionModels()
    {
        TestModelGenerator.Generate(TestModelPreset.Tiny, TestModelQuant.UdQ2Kxl, Seed, _mlx.Path);
        TestModelGenerator.Generate(TestModelPreset.Tiny, TestModelQuant.Bf16, Seed, _hf.Path);
    }

    /// <summary>MLX layout (vision_tower.* without a prefix, quantized text model).</summary>
    public string Mlx => _mlx.Path;

    /// <summary>Hugging Face layout (model.vision_tower.*, all bf16).</summary>
    public string Hf => _hf.Path;

    public void Dispose()
    {
        _mlx.Dispose();
        _hf.Dispose();
    }
}

[CollectionDefinition(Name)]
public sealed class TinyVisionCollection : ICollectionFixture<TinyVisionModels>
{
    public const string Name = "tiny vision models";
}
