using System.Buffers.Binary;
using System.Text;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Model.Tests.Checkpoint;

public class SafetensorsFileTests
{
    /// <summary>Writes a safetensors file byte by byte: length field, header text as given, data.</summary>
    private static void WriteRaw(string path, string header, int dataBytes, ulong? headerLengthField = null)
    {
        byte[] headerBytes = Encoding.UTF8.GetBytes(header);
        using var stream = File.Create(path);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, headerLengthField ?? (ulong)headerBytes.Length);
        stream.Write(length);
        stream.Write(headerBytes);
        stream.Write(new byte[dataBytes]);
    }

    private static CheckpointFormatException OpenFails(string path) =>
        Assert.Throws<CheckpointFormatException>(() => SafetensorsFile.Open(path).Dispose());

    [Fact]
    public void TruncatedFile_NamesTheTensorThatRunsPastTheEnd()
    {
        using var temp = new TempFolder();
        string path = temp.File("model.safetensors");
        SafetensorsWriter.Write(path,
        [
            (new TensorSpec("a", TensorDType.F32, [4]), new byte[16]),
            (new TensorSpec("b", TensorDType.BF16, [2, 8]), new byte[32]),
        ]);
        long headerLength = new FileInfo(path).Length - 8 - 48;
        using (var stream = new FileStream(path, FileMode.Open))
            stream.SetLength(stream.Length - 5);

        var error = OpenFails(path);
        Assert.Equal(path, error.FilePath);
        Assert.Equal("b", error.TensorName);
        Assert.Equal(
            $"{path}: tensor 'b': data_offsets [16, 48] run past the end of the data section (43 bytes after the {headerLength}-byte header; file is {8 + headerLength + 43} bytes, truncated?)",
            error.Message);
    }

    [Fact]
    public void FileShorterThanTheLengthField_IsRefused()
    {
        using var temp = new TempFolder();
        string path = temp.File("tiny.safetensors");
        File.WriteAllBytes(path, [1, 2, 3]);
        Assert.Equal($"{path}: file is 3 bytes, shorter than the 8-byte header length field (truncated file)", OpenFails(path).Message);
    }

    [Fact]
    public void HeaderLengthPastEndOfFile_IsRefused()
    {
        using var temp = new TempFolder();
        string path = temp.File("model.safetensors");
        WriteRaw(path, "{}", 0, headerLengthField: 1000);
        var error = OpenFails(path);
        Assert.Null(error.TensorName);
        Assert.Equal($"{path}: header length 1000 runs past the end of the file (10 bytes; truncated file?)", error.Message);
    }

    [Fact]
    public void AbsurdHeaderLength_IsRefusedBeforeReading()
    {
        using var temp = new TempFolder();
        string path = temp.File("model.safetensors");
        WriteRaw(path, "{}", 0, headerLengthField: ulong.MaxValue);
        Assert.Equal($"{path}: header length {ulong.MaxValue} exceeds the 100000000-byte limit (corrupt header length field)", OpenFails(path).Message);
    }

    [Fact]
    public void BadJson_IsRefused()
    {
        using var temp = new TempFolder();
        string path = temp.File("model.safetensors");
        WriteRaw(path, "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], ", 4);
        var error = OpenFails(path);
        Assert.StartsWith($"{path}: header is not valid JSON (", error.Message);
        Assert.IsAssignableFrom<System.Text.Json.JsonException>(error.InnerException);
    }

    [Fact]
    public void HeaderThatIsNotAnObject_IsRefused()
    {
        using var temp = new TempFolder();
        string path = temp.File("model.safetensors");
        WriteRaw(path, "[1, 2]", 0);
        Assert.Equal($"{path}: header must be a JSON object, found Array", OpenFails(path).Message);
    }

    [Fact]
    public void UnknownDtype_NamesTensorAndDtype()
    {
        using var temp = new TempFolder();
        string path = temp.File("model.safetensors");
        WriteRaw(path, "{\"ok\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [0, 2]}, \"fp8\": {\"dtype\": \"F8_E4M3\", \"shape\": [2], \"data_offsets\": [2, 4]}}", 4);
        var error = OpenFails(path);
        Assert.Equal("fp8", error.TensorName);
        Assert.Equal($"{path}: tensor 'fp8': dtype 'F8_E4M3' is not supported (supported: BF16, F16, F32, U32, I32, U8, I8, F64)", error.Message);
    }

    [Fact]
    public void ShapeThatDisagreesWithDataOffsets_IsRefused()
    {
        using var temp = new TempFolder();
        string path = temp.File("model.safetensors");
        WriteRaw(path, "{\"w\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 20]}}", 24);
        Assert.Equal($"{path}: tensor 'w': shape [2, 3] x F32 needs 24 bytes but data_offsets [0, 20] span 20", OpenFails(path).Message);
    }

    [Fact]
    public void OverlappingTensors_AreRefused()
    {
        using var temp = new TempFolder();
        string path = temp.File("model.safetensors");
        WriteRaw(path, "{\"first\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}, \"second\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]}}", 24);
        var error = OpenFails(path);
        Assert.Equal("second", error.TensorName);
        Assert.Equal($"{path}: tensor 'second': data_offsets [8, 24] overlap tensor 'first' at [0, 16]", error.Message);
    }

    [Fact]
    public void DuplicateTensorName_IsRefused()
    {
        using var temp = new TempFolder();
        string path = temp.File("model.safetensors");
        WriteRaw(path, "{\"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]}, \"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [1, 2]}}", 2);
        Assert.Equal($"{path}: tensor 'w': appears twice in the header", OpenFails(path).Message);
    }

    [Fact]
    public void NegativeOrFractionalDimension_IsRefused()
    {
        using var temp = new TempFolder();
        string path = temp.File("model.safetensors");
        WriteRaw(path, "{\"w\": {\"dtype\": \"U8\", \"shape\": [-1], \"data_offsets\": [0, 1]}}", 1);
        Assert.Equal($"{path}: tensor 'w': shape [-1] has an invalid dimension -1", OpenFails(path).Message);
    }

    [Fact]
    public void MissingFile_IsACheckpointError()
    {
        using var temp = new TempFolder();
        string path = temp.File("absent.safetensors");
        Assert.Equal($"{path}: file does not exist", OpenFails(path).Message);
    }

    [Fact]
    public void MetadataAndUnpaddedHeader_AreAccepted()
    {
        using var temp = new TempFolder();
        string path = temp.File("model.safetensors");
        WriteRaw(path, "{\"__metadata__\": {\"format\": \"pt\"}, \"s\": {\"dtype\": \"I8\", \"shape\": [], \"data_offsets\": [0, 1]}, \"e\": {\"dtype\": \"F64\", \"shape\": [0, 3], \"data_offsets\": [1, 1]}}", 1);
        using var file = SafetensorsFile.Open(path);
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal(["s", "e"], file.Tensors.Keys);
        Assert.Empty(file.Tensors["s"].Shape);
        Assert.Equal(1, file.Bytes("s").Length);
        Assert.Equal(0, file.Bytes("e").Length);
    }

    [Fact]
    public void Bytes_OfUnknownTensor_NamesIt()
    {
        using var temp = new TempFolder();
        string path = temp.File("model.safetensors");
        WriteRaw(path, "{}", 0);
        using var file = SafetensorsFile.Open(path);
        var error = Assert.Throws<CheckpointFormatException>(() => file.Bytes("nope").Length);
        Assert.Equal($"{path}: tensor 'nope': no such tensor in this file", error.Message);
    }
}
