using System.Buffers.Binary;

namespace Pipeline.Convert.Tests;

public class ImatrixFileTests
{
    /// <summary>
    /// A file laid out as llama-imatrix writes one (2-D [n, 1] in_sum2, [1, 1] counts, an in_sum extra,
    /// metadata of several types), with a 64-byte alignment to check the reader honours general.alignment.
    /// </summary>
    private static GgufBytes LlamaStyleFile()
    {
        var g = new GgufBytes().Header(3, tensors: 5, kvs: 5)
            .Str("general.type").U32(8).Str("imatrix")
            .Str("general.alignment").U32(4).U32(64)
            .Str("imatrix.datasets").U32(9).U32(8).U64(1).Str("calibration.txt")
            .Str("imatrix.chunk_count").U32(4).U32(7)
            .Str("imatrix.chunk_size").U32(4).U32(512);
        g.TensorInfo("blk.0.attn_q.weight.counts", [1, 1], 0, 0)
            .TensorInfo("blk.0.attn_q.weight.in_sum", [4, 1], 0, 64)
            .TensorInfo("blk.0.attn_q.weight.in_sum2", [4, 1], 0, 128)
            .TensorInfo("blk.1.ffn_down.weight.counts", [1, 1], 0, 192)
            .TensorInfo("blk.1.ffn_down.weight.in_sum2", [2], 0, 256)
            .PadTo(64);
        g.F32(4).PadTo(64).F32(1, 1, 1, 1).PadTo(64).F32(4, 8, 0, 40).PadTo(64).F32(2).PadTo(64).F32(6, 1).PadTo(64);
        return g;
    }

    [Fact]
    public void Read_LlamaStyleFile_GivesSumsCountsAndImportance()
    {
        using var temp = TestPaths.NewTempFolder();
        var file = ImatrixFile.Read(LlamaStyleFile().WriteTo(temp.Path));
        Assert.Equal(["blk.0.attn_q.weight", "blk.1.ffn_down.weight"], file.Entries.Keys);
        Assert.Equal([1f, 2f, 0f, 10f], file.Entries["blk.0.attn_q.weight"].Importance());
        Assert.Equal([3f, 0.5f], file.Entries["blk.1.ffn_down.weight"].Importance());
        Assert.Equal(["calibration.txt"], file.Datasets);
        Assert.Equal(7, file.ChunkCount);
        Assert.Equal(512, file.ChunkSize);
    }

    [Fact]
    public void Write_ThenRead_RoundTrips_AndLaysOutGgufV3()
    {
        using var temp = TestPaths.NewTempFolder();
        var original = new ImatrixFile(
            [
                new ImatrixEntry("blk.2.ffn_up.weight", [1.5f, 2.5f, 3.5f], 3),
                new ImatrixEntry("blk.0.attn_k.weight", [0.25f, 9f, 1f, 2f, 3f], 5),
            ],
            ["a.txt", "b.txt"], chunkCount: 3, chunkSize: 128);
        string path = Path.Combine(temp.Path, "out.gguf");
        original.Write(path);

        var bytes = File.ReadAllBytes(path);
        Assert.Equal("GGUF"u8.ToArray(), bytes[..4]);
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(4)));
        Assert.Equal(4ul, BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(8)));  // tensors
        Assert.Equal(4ul, BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(16))); // metadata pairs

        var read = ImatrixFile.Read(path);
        Assert.Equal(["blk.0.attn_k.weight", "blk.2.ffn_up.weight"], read.Entries.Keys);
        Assert.Equal([0.25f, 9f, 1f, 2f, 3f], read.Entries["blk.0.attn_k.weight"].SumOfSquares);
        Assert.Equal(5f, read.Entries["blk.0.attn_k.weight"].Count);
        Assert.Equal([0.5f, 2.5f / 3, 3.5f / 3], read.Entries["blk.2.ffn_up.weight"].Importance());
        Assert.Equal(["a.txt", "b.txt"], read.Datasets);
        Assert.Equal(3, read.ChunkCount);
        Assert.Equal(128, read.ChunkSize);
    }

    private static string Broken(TempFolder temp, Func<GgufBytes, GgufBytes> build) => build(new GgufBytes()).WriteTo(temp.Path);

    private static GgufBytes OnePair(GgufBytes g, ulong sumLength, uint sumType = 0, float count = 2) =>
        g.Header(3, 2, 0)
            .TensorInfo("blk.0.ffn_up.weight.counts", [1], 0, 0)
            .TensorInfo("blk.0.ffn_up.weight.in_sum2", [sumLength], sumType, 32)
            .PadTo(32).F32(count).PadTo(32).F32([.. Enumerable.Repeat(1f, (int)sumLength)]).PadTo(32);

    [Fact]
    public void NotGguf_IsRefused()
    {
        using var temp = TestPaths.NewTempFolder();
        string path = Broken(temp, g => g.Bytes([.. "GGML"u8, .. new byte[40]]));
        var e = Assert.Throws<ConvertException>(() => ImatrixFile.Read(path));
        Assert.Equal($"{path}: not a GGUF file (missing the 'GGUF' magic)", e.Message);
    }

    [Fact]
    public void WrongVersion_IsRefused()
    {
        using var temp = TestPaths.NewTempFolder();
        string path = Broken(temp, g => g.Header(1, 0, 0));
        Assert.EndsWith("GGUF version 1 is not supported (expected 3)", Assert.Throws<ConvertException>(() => ImatrixFile.Read(path)).Message);
    }

    [Fact]
    public void NonF32Tensor_IsRefusedByName()
    {
        using var temp = TestPaths.NewTempFolder();
        string path = Broken(temp, g => OnePair(g, 4, sumType: 1));
        Assert.EndsWith("tensor 'blk.0.ffn_up.weight.in_sum2' has ggml type 1; imatrix tensors are F32 (type 0)",
            Assert.Throws<ConvertException>(() => ImatrixFile.Read(path)).Message);
    }

    [Fact]
    public void TruncatedData_IsRefusedByName()
    {
        using var temp = TestPaths.NewTempFolder();
        var bytes = OnePair(new GgufBytes(), 16).ToArray();
        string path = Path.Combine(temp.Path, "cut.gguf");
        File.WriteAllBytes(path, bytes[..^20]);
        Assert.Contains("tensor 'blk.0.ffn_up.weight.in_sum2' data (16 F32 values",
            Assert.Throws<ConvertException>(() => ImatrixFile.Read(path)).Message);
    }

    [Fact]
    public void TruncatedHeader_IsRefused()
    {
        using var temp = TestPaths.NewTempFolder();
        var bytes = OnePair(new GgufBytes(), 4).ToArray();
        string path = Path.Combine(temp.Path, "cut.gguf");
        File.WriteAllBytes(path, bytes[..40]);
        Assert.Contains("runs past the end of the file", Assert.Throws<ConvertException>(() => ImatrixFile.Read(path)).Message);
    }

    [Fact]
    public void SumsWithoutCounts_AreRefusedByName()
    {
        using var temp = TestPaths.NewTempFolder();
        string path = Broken(temp, g => g.Header(3, 1, 0).TensorInfo("blk.3.attn_v.weight.in_sum2", [2], 0, 0).PadTo(32).F32(1, 2));
        Assert.EndsWith("imatrix entry 'blk.3.attn_v.weight' has blk.3.attn_v.weight.in_sum2 but no blk.3.attn_v.weight.counts",
            Assert.Throws<ConvertException>(() => ImatrixFile.Read(path)).Message);
    }

    [Fact]
    public void ZeroCount_IsRefusedByName()
    {
        using var temp = TestPaths.NewTempFolder();
        string path = Broken(temp, g => OnePair(g, 4, count: 0));
        Assert.EndsWith("imatrix entry 'blk.0.ffn_up.weight' has count 0; it must be a positive number of tokens",
            Assert.Throws<ConvertException>(() => ImatrixFile.Read(path)).Message);
    }

    [Fact]
    public void PerExpertCounts_AreRefused()
    {
        using var temp = TestPaths.NewTempFolder();
        string path = Broken(temp, g => g.Header(3, 2, 0)
            .TensorInfo("blk.0.ffn_up.weight.counts", [1, 2], 0, 0)
            .TensorInfo("blk.0.ffn_up.weight.in_sum2", [2, 2], 0, 32)
            .PadTo(32).F32(1, 1).PadTo(32).F32(1, 1, 1, 1).PadTo(32));
        Assert.EndsWith("imatrix entry 'blk.0.ffn_up.weight' has 2 counts (per-expert data); a dense model needs exactly 1",
            Assert.Throws<ConvertException>(() => ImatrixFile.Read(path)).Message);
    }

    [Fact]
    public void NoEntries_IsRefused()
    {
        using var temp = TestPaths.NewTempFolder();
        string path = Broken(temp, g => g.Header(3, 0, 1).Str("general.type").U32(8).Str("imatrix"));
        Assert.EndsWith("holds no imatrix entries (no '<name>.in_sum2' / '<name>.counts' tensor pairs)",
            Assert.Throws<ConvertException>(() => ImatrixFile.Read(path)).Message);
    }

    [Fact]
    public void MissingFile_IsRefused()
    {
        var e = Assert.Throws<ConvertException>(() => ImatrixFile.Read("/nonexistent/imatrix.gguf"));
        Assert.Equal("/nonexistent/imatrix.gguf: imatrix file does not exist", e.Message);
    }
}
