using Pipeline.Kernels;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Model.Tests.Checkpoint;

public class TinyCheckpointLoadTests
{
    [Fact]
    public void QuantizedFolder_LoadsWithTheUdQ2KXlRecipe()
    {
        using var checkpoint = Gemma4Checkpoint.Open(CheckpointFixtures.TinyA("ud-q2kxl"));
        Assert.Equal("language_model.model.", checkpoint.TextPrefix);
        AssertTinyAConfig(checkpoint);
        Assert.NotNull(checkpoint.Quantization);
        Assert.Equal(new QuantParams(2, 64), checkpoint.Quantization!.Defaults);

        AssertQuantized(checkpoint.Embedding, 262144, 64, bits: 4);
        Assert.Same(checkpoint.Embedding, checkpoint.LmHead);
        AssertDense(checkpoint.FinalNorm, 1, 64);

        for (int i = 0; i < 6; i++)
        {
            var layer = checkpoint.Layer(i);
            bool full = i is 2 or 5;
            int headDim = full ? 64 : 32, kvHeads = full ? 1 : 2;
            AssertQuantized(layer.QProj, 4 * headDim, 64, bits: 4);
            AssertQuantized(layer.KProj, kvHeads * headDim, 64, bits: 4);
            if (full)
                Assert.Null(layer.VProj);
            else
                AssertQuantized(layer.VProj!, kvHeads * headDim, 64, bits: 4);
            AssertDense(layer.OProj, 64, 4 * headDim);
            AssertQuantized(layer.Gate, 128, 64, bits: 2);
            AssertQuantized(layer.Up, 128, 64, bits: 2);
            AssertQuantized(layer.Down, 64, 128, bits: 3);
            AssertNorms(layer, headDim);
            Assert.InRange(layer.LayerScalar, 0.5f, 1.5f);
        }
    }

    [Fact]
    public void Bf16Folder_LoadsDenseWithTheSameShapes()
    {
        using var checkpoint = Gemma4Checkpoint.Open(CheckpointFixtures.TinyA("bf16"));
        Assert.Equal("model.language_model.", checkpoint.TextPrefix);
        AssertTinyAConfig(checkpoint);
        Assert.Null(checkpoint.Quantization);
        AssertDense(checkpoint.Embedding, 262144, 64);

        for (int i = 0; i < 6; i++)
        {
            var layer = checkpoint.Layer(i);
            bool full = i is 2 or 5;
            int headDim = full ? 64 : 32, kvHeads = full ? 1 : 2;
            AssertDense(layer.QProj, 4 * headDim, 64);
            AssertDense(layer.KProj, kvHeads * headDim, 64);
            Assert.Equal(full, layer.VProj is null);
            AssertDense(layer.OProj, 64, 4 * headDim);
            AssertDense(layer.Gate, 128, 64);
            AssertDense(layer.Down, 64, 128);
            AssertNorms(layer, headDim);
        }
    }

    [Fact]
    public void BothLayouts_ShareLayerScalarsAndNorms()
    {
        using var dense = Gemma4Checkpoint.Open(CheckpointFixtures.TinyA("bf16"));
        using var quantized = Gemma4Checkpoint.Open(CheckpointFixtures.TinyA("ud-q2kxl"));
        for (int i = 0; i < 6; i++)
        {
            Assert.Equal(dense.Layer(i).LayerScalar, quantized.Layer(i).LayerScalar);
            var a = dense.Layer(i).InputNorm;
            var b = quantized.Layer(i).InputNorm;
            for (int j = 0; j < a.Cols; j++)
                Assert.Equal(Scalars.Load(a.Data, j, a.Type), Scalars.Load(b.Data, j, b.Type));
        }
    }

    private static void AssertTinyAConfig(Gemma4Checkpoint checkpoint)
    {
        var text = checkpoint.Text;
        Assert.Equal(64, text.HiddenSize);
        Assert.Equal(6, text.NumHiddenLayers);
        Assert.Equal(128, text.IntermediateSize);
        Assert.Equal(262144, text.VocabSize);
        Assert.Equal([false, false, true, false, false, true], Enumerable.Range(0, 6).Select(text.IsFullAttention));
        Assert.Equal(32, text.HeadDim(0));
        Assert.Equal(64, text.HeadDim(2));
        Assert.Equal(2, text.KvHeads(0));
        Assert.Equal(1, text.KvHeads(5));
        Assert.Equal(32, text.RopeDims(0));
        Assert.Equal(16, text.RopeDims(2)); // 0.25 * 64
        Assert.Equal(10_000.0, text.Rope(0).Theta);
        Assert.Equal(1_000_000.0, text.Rope(5).Theta);
        Assert.Equal("proportional", text.Rope(5).RopeType);
        Assert.Equal(16, text.SlidingWindow);
        Assert.Equal(30f, text.FinalLogitSoftcapping);
        Assert.Equal(1e-6f, text.RmsNormEps);
        Assert.True(text.TieWordEmbeddings);
        Assert.Null(checkpoint.Vision);
        Assert.Equal([1, 106], checkpoint.Config.EosTokenIds);
        Assert.Equal([1, 106, 50], checkpoint.Generation.EosTokenIds);
        Assert.Equal(2, checkpoint.Generation.BosTokenId);
        Assert.Equal(1.0f, checkpoint.Generation.Temperature);
        Assert.Equal(64, checkpoint.Generation.TopK);
        Assert.Equal(0.95f, checkpoint.Generation.TopP);
        Assert.Null(checkpoint.Generation.MinP);
        Assert.Equal(new FileInfo(checkpoint.Tensors.Files[0].FilePath).Length - 8 - checkpoint.Tensors.Files[0].HeaderLength,
            checkpoint.TotalWeightBytes);
    }

    private static void AssertNorms(Gemma4LayerWeights layer, int headDim)
    {
        AssertDense(layer.InputNorm, 1, 64);
        AssertDense(layer.PostAttentionNorm, 1, 64);
        AssertDense(layer.PreFeedforwardNorm, 1, 64);
        AssertDense(layer.PostFeedforwardNorm, 1, 64);
        AssertDense(layer.QNorm, 1, headDim);
        AssertDense(layer.KNorm, 1, headDim);
    }

    private static void AssertQuantized(LinearWeight weight, int rows, int cols, int bits)
    {
        var q = Assert.IsType<QuantizedWeight>(weight);
        Assert.Equal((rows, cols, bits, 64, ScalarType.BF16), (q.Rows, q.Cols, q.Bits, q.GroupSize, q.ScaleType));
        Assert.NotEqual(0, q.Packed);
        Assert.NotEqual(0, q.Scales);
        Assert.NotEqual(0, q.Biases);
    }

    private static void AssertDense(LinearWeight weight, int rows, int cols)
    {
        var d = Assert.IsType<DenseWeight>(weight);
        Assert.Equal((rows, cols, ScalarType.BF16), (d.Rows, d.Cols, d.Type));
        Assert.NotEqual(0, d.Data);
    }
}
