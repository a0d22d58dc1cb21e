using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Pipeline.Kernels.Metal.Interop;

namespace Pipeline.Kernels.Metal.Tests.Host;

/// <summary>What can be checked of the Objective-C interop without a Metal device.</summary>
public class InteropTests
{
    [Fact]
    public void SelectorTable_NamesMatchTheirArgumentCounts()
    {
        Assert.Equal(Selectors.Table.Count, Selectors.Table.Select(s => s.Name).Distinct().Count());
        foreach (var spec in Selectors.Table)
            Assert.True(spec.Name.Count(c => c == ':') == spec.Arguments, $"{spec.Name} declared with {spec.Arguments} arguments");
    }

    [Fact]
    public void Selectors_RegistersExactlyTheTable()
    {
        var registered = new List<string>();
        var selectors = new Selectors(name =>
        {
            registered.Add(name);
            return registered.Count;   // distinct fake SEL values
        });
        Assert.Equal(Selectors.Table.Select(s => s.Name).Order(), registered.Order());
        // Each property holds the SEL registered for its own name.
        Assert.Equal(registered.IndexOf("dispatchThreadgroups:threadsPerThreadgroup:") + 1, selectors.DispatchThreadgroups);
        Assert.Equal(registered.IndexOf("setBuffer:offset:atIndex:") + 1, selectors.SetBuffer);
        Assert.Equal(registered.IndexOf("newBufferWithBytesNoCopy:length:options:deallocator:") + 1, selectors.NewBufferWithBytesNoCopy);
        var values = typeof(Selectors).GetProperties().Where(p => p.PropertyType == typeof(nint)).Select(p => (nint)p.GetValue(selectors)!).ToList();
        Assert.Equal(Selectors.Table.Count, values.Count);
        Assert.Equal(values.Count, values.Distinct().Count());
    }

    [Fact]
    public unsafe void MTLSize_IsThreeNSUIntegers()
    {
        Assert.Equal(3 * IntPtr.Size, Marshal.SizeOf<MTLSize>());
        Assert.Equal(3 * IntPtr.Size, Unsafe.SizeOf<MTLSize>());
        var size = new MTLSize(7, 11, 13);
        var words = (nuint*)&size;
        Assert.Equal((nuint)7, words[0]);
        Assert.Equal((nuint)11, words[1]);
        Assert.Equal((nuint)13, words[2]);
    }

    [Fact]
    public void Availability_IsReportedWithAReason()
    {
        bool available = MetalBackend.IsAvailable(out string reason);
        if (OperatingSystem.IsMacOS())
        {
            Assert.Equal(available, reason.Length == 0);
        }
        else
        {
            Assert.False(available);
            Assert.Contains("macOS", reason);
            var e = Assert.Throws<PlatformNotSupportedException>(() => MetalBackend.Create());
            Assert.Contains("macOS", e.Message);
        }
    }
}
