namespace Pipeline.Kernels.Metal.Tests.Host;

/// <summary>
/// A test that needs Apple hardware: skipped, with the reason, when not running on macOS (the one
/// skip this suite allows: the hardware is absent). On macOS it runs, and fails if no Metal device
/// can be created.
/// </summary>
public sealed class MetalHardwareFactAttribute : FactAttribute
{
    public MetalHardwareFactAttribute()
    {
        if (!OperatingSystem.IsMacOS())
            Skip = "Needs macOS with a Metal GPU, absent on this machine; the same kernels and MetalBackend run under emulation in EmulatedConformanceTests.";
    }
}
