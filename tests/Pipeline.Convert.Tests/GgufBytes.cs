using System.Text;

namespace Pipeline.Convert.Tests;

/// <summary>Lays out a GGUF file field by field, so tests can build valid and broken imatrix files by hand.</summary>
internal sealed class GgufBytes
{
    private readonly MemoryStream _stream = new();
    private readonly BinaryWriter _w;

    public GgufBytes() => _w = new BinaryWriter(_stream, Encoding.UTF8, leaveOpen: true);

    public GgufBytes Header(uint version, ulong tensors, ulong kvs)
    {
        _w.Write("GGUF"u8);
        _w.Write(version);
        _w.Write(tensors);
        _w.Write(kvs);
        return this;
    }

    public GgufBytes Str(string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        _w.Write((ulong)bytes.Length);
        _w.Write(bytes);
        return this;
    }

    public GgufBytes U32(uint v)
    {
        _w.Write(v);
        return this;
    }

    public GgufBytes U64(ulong v)
    {
        _w.Write(v);
        return this;
    }

    public GgufBytes F32(params float[] values)
    {
        foreach (var v in values)
            _w.Write(v);
        return this;
    }

    public GgufBytes Bytes(params byte[] values)
    {
        _w.Write(values);
        return this;
    }

    /// <summary>A tensor info record: name, dims, type, offset.</summary>
    public GgufBytes TensorInfo(string name, ulong[] dims, uint type, ulong offset)
    {
        Str(name).U32((uint)dims.Length);
        foreach (var d in dims)
            U64(d);
        return U32(type).U64(offset);
    }

    public GgufBytes PadTo(int alignment)
    {
        while (_stream.Length % alignment != 0)
            _w.Write((byte)0);
        return this;
    }

    public byte[] ToArray()
    {
        _w.Flush();
        return _stream.ToArray();
    }

    public string WriteTo(string folder, string name = "imatrix.gguf")
    {
        string path = Path.Combine(folder, name);
        File.WriteAllBytes(path, ToArray());
        return path;
    }
}
