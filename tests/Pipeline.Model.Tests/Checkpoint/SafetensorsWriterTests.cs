using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Model.Tests.Checkpoint;

public class SafetensorsWriterTests
{
    [Fact]
    public void ChunkedWrites_RoundTripThroughTheReader()
    {
        using var temp = new TempFolder();
        string path = temp.File("model.safetensors");
        var random = new Random(7);
        var specs = new List<TensorSpec>
        {
            new("z.last.declared.first", TensorDType.U32, [3, 5]),
            new("empty", TensorDType.F16, [0, 4]),
            new("bf16", TensorDType.BF16, [7]),
            new("f64", TensorDType.F64, [2, 1, 3]),
            new("i8", TensorDType.I8, [5]),
            new("scalar", TensorDType.I32, []),
        };
        var data = specs.Select(s => { var b = new byte[s.ByteLength]; random.NextBytes(b); return b; }).ToList();

        using (var writer = new SafetensorsWriter(path, specs, new Dictionary<string, string> { ["format"] = "mlx" }))
        {
            for (int i = 0; i < specs.Count; i++)
            {
                // Odd chunk sizes: the writer must not care where the caller splits.
                for (int offset = 0; offset < data[i].Length; offset += 3)
                    writer.WriteTensor(specs[i].Name, data[i].AsSpan(offset, Math.Min(3, data[i].Length - offset)));
            }
            writer.Finish();
            Assert.Equal(writer.FileLength, new FileInfo(path).Length);
        }
        Assert.False(File.Exists(path + ".partial"));

        using var file = SafetensorsFile.Open(path);
        Assert.Equal(0, file.HeaderLength % 8);
        Assert.Equal("mlx", file.Metadata["format"]);
        Assert.Equal(specs.Select(s => s.Name), file.Tensors.Keys);
        long expectedOffset = 8 + file.HeaderLength;
        for (int i = 0; i < specs.Count; i++)
        {
            var info = file.Tensors[specs[i].Name];
            Assert.Equal(specs[i].DType, info.DType);
            Assert.Equal(specs[i].Shape, info.Shape);
            Assert.Equal(expectedOffset, info.FileOffset); // contiguous, in declaration order
            Assert.Equal(data[i], file.Bytes(specs[i].Name).ToArray());
            expectedOffset += info.ByteLength;
        }

        // The header is padded with spaces, as the reference writer pads it.
        byte[] raw = File.ReadAllBytes(path);
        int length = (int)BinaryPrimitives.ReadUInt64LittleEndian(raw);
        string header = Encoding.UTF8.GetString(raw, 8, length);
        Assert.Equal(header.TrimEnd(' '), JsonDocument.Parse(header).RootElement.GetRawText());
    }

    [Fact]
    public void WritingOutOfOrder_Throws()
    {
        using var temp = new TempFolder();
        using var writer = new SafetensorsWriter(temp.File("m.safetensors"),
            [new("a", TensorDType.U8, [2]), new("b", TensorDType.U8, [2])]);
        var error = Assert.Throws<InvalidOperationException>(() => writer.WriteTensor("b", new byte[2]));
        Assert.Equal("Tensor 'a' is next in header order, not 'b'.", error.Message);
        writer.WriteTensor("a", new byte[1]);
        Assert.Throws<InvalidOperationException>(() => writer.WriteTensor("a", new byte[2]));
    }

    [Fact]
    public void UnfinishedWriter_LeavesNoFileBehind()
    {
        using var temp = new TempFolder();
        string path = temp.File("m.safetensors");
        using (var writer = new SafetensorsWriter(path, [new("a", TensorDType.F32, [4])]))
        {
            writer.WriteTensor("a", new byte[8]);
            var error = Assert.Throws<InvalidOperationException>(writer.Finish);
            Assert.Equal("Tensor 'a' has 8 of 16 bytes written; cannot finish.", error.Message);
        }
        Assert.Empty(Directory.GetFiles(temp.Path));
    }

    [Fact]
    public void DuplicateNames_AreRejectedUpFront()
    {
        using var temp = new TempFolder();
        Assert.Throws<ArgumentException>(() => new SafetensorsWriter(temp.File("m.safetensors"),
            [new("a", TensorDType.U8, [1]), new("a", TensorDType.U8, [1])]));
    }
}
