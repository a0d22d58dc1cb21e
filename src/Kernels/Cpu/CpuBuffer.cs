using System.Runtime.InteropServices;

namespace Pipeline.Kernels.Cpu;

/// <summary>f32 elements in 64-byte-aligned native memory (never on the managed heap).</summary>
internal sealed unsafe class CpuBuffer : DeviceBuffer
{
    private float* _data;

    public CpuBuffer(IBackend owner, long length) : base(owner, length)
    {
        _data = (float*)NativeMemory.AlignedAlloc((nuint)Math.Max(1, length) * 4, 64);
        NativeMemory.Clear(_data, (nuint)length * 4);
    }

    public float* Data => _data != null ? _data : throw new ObjectDisposedException(nameof(CpuBuffer));

    public override void Dispose()
    {
        if (_data != null)
        {
            NativeMemory.AlignedFree(_data);
            _data = null;
        }
        GC.SuppressFinalize(this);
    }

    ~CpuBuffer()
    {
        if (_data != null)
            NativeMemory.AlignedFree(_data);
    }
}

/// <summary>A growable native f32 scratch area; grows only when a larger size is asked for.</summary>
internal sealed unsafe class NativeScratch : IDisposable
{
    private float* _data;
    private long _capacity;

    public float* Get(long elements)
    {
        if (elements > _capacity)
        {
            if (_data != null)
                NativeMemory.AlignedFree(_data);
            _capacity = Math.Max(elements, _capacity * 2);
            _data = (float*)NativeMemory.AlignedAlloc((nuint)_capacity * 4, 64);
        }
        return _data;
    }

    public void Dispose()
    {
        if (_data != null)
        {
            NativeMemory.AlignedFree(_data);
            _data = null;
            _capacity = 0;
        }
        GC.SuppressFinalize(this);
    }

    ~NativeScratch()
    {
        if (_data != null)
            NativeMemory.AlignedFree(_data);
    }
}
