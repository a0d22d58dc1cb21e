using System.Runtime.InteropServices;

namespace Pipeline.Kernels.Metal.Interop;

/// <summary>
/// The Objective-C runtime calls the Metal backend makes: class and selector lookup, autorelease
/// pools, and objc_msgSend bound once per prototype it is called with (on arm64 a message send
/// must be called through the exact C prototype, never a variadic one).
/// </summary>
internal static unsafe partial class ObjC
{
    public const string LibObjC = "/usr/lib/libobjc.A.dylib";
    public const string MetalFramework = "/System/Library/Frameworks/Metal.framework/Metal";
    public const string CoreGraphicsFramework = "/System/Library/Frameworks/CoreGraphics.framework/CoreGraphics";

    [LibraryImport(LibObjC, EntryPoint = "objc_getClass", StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint GetClass(string name);

    [LibraryImport(LibObjC, EntryPoint = "sel_registerName", StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint RegisterSelector(string name);

    [LibraryImport(LibObjC, EntryPoint = "objc_autoreleasePoolPush")]
    public static partial nint AutoreleasePoolPush();

    [LibraryImport(LibObjC, EntryPoint = "objc_autoreleasePoolPop")]
    public static partial void AutoreleasePoolPop(nint pool);

    // id objc_msgSend(id self, SEL op, ...) with the argument lists used.

    [LibraryImport(LibObjC, EntryPoint = "objc_msgSend")]
    public static partial nint Send(nint receiver, nint selector);

    [LibraryImport(LibObjC, EntryPoint = "objc_msgSend")]
    public static partial nint Send(nint receiver, nint selector, nint a);

    [LibraryImport(LibObjC, EntryPoint = "objc_msgSend")]
    public static partial nint Send(nint receiver, nint selector, nint a, nint b);

    [LibraryImport(LibObjC, EntryPoint = "objc_msgSend")]
    public static partial nint Send(nint receiver, nint selector, nint a, nint b, nint c);

    [LibraryImport(LibObjC, EntryPoint = "objc_msgSend")]
    public static partial nint Send(nint receiver, nint selector, nuint a, nuint b);

    [LibraryImport(LibObjC, EntryPoint = "objc_msgSend")]
    public static partial nint Send(nint receiver, nint selector, nint a, nuint b, nuint c);

    [LibraryImport(LibObjC, EntryPoint = "objc_msgSend")]
    public static partial nint Send(nint receiver, nint selector, nint a, nuint b, nuint c, nint d);

    [LibraryImport(LibObjC, EntryPoint = "objc_msgSend")]
    public static partial nuint SendUInt(nint receiver, nint selector);

    [LibraryImport(LibObjC, EntryPoint = "objc_msgSend")]
    public static partial void SendVoid(nint receiver, nint selector);

    [LibraryImport(LibObjC, EntryPoint = "objc_msgSend")]
    public static partial void SendVoid(nint receiver, nint selector, nint a);

    [LibraryImport(LibObjC, EntryPoint = "objc_msgSend")]
    public static partial void SendVoid(nint receiver, nint selector, byte a);

    [LibraryImport(LibObjC, EntryPoint = "objc_msgSend")]
    public static partial void SendVoid(nint receiver, nint selector, nint a, nuint b, nuint c);

    [LibraryImport(LibObjC, EntryPoint = "objc_msgSend")]
    public static partial void SendVoid(nint receiver, nint selector, MTLSize a, MTLSize b);

    [LibraryImport(MetalFramework, EntryPoint = "MTLCreateSystemDefaultDevice")]
    public static partial nint MTLCreateSystemDefaultDevice();

    [LibraryImport(MetalFramework, EntryPoint = "MTLCopyAllDevices")]
    public static partial nint MTLCopyAllDevices();
}

/// <summary>A selector name and how many arguments its message takes (one per ':').</summary>
internal readonly record struct SelectorSpec(string Name, int Arguments);

/// <summary>
/// Every selector the backend sends, resolved once. Constructed with the runtime's
/// sel_registerName on macOS; tests construct it with a recording function to check the table.
/// </summary>
internal sealed class Selectors
{
    public static readonly IReadOnlyList<SelectorSpec> Table =
    [
        new("alloc", 0),
        new("init", 0),
        new("release", 0),
        new("retain", 0),
        new("name", 0),
        new("count", 0),
        new("objectAtIndex:", 1),
        new("stringWithUTF8String:", 1),
        new("UTF8String", 0),
        new("localizedDescription", 0),
        new("setFastMathEnabled:", 1),
        new("newCommandQueue", 0),
        new("newLibraryWithSource:options:error:", 3),
        new("newFunctionWithName:", 1),
        new("newComputePipelineStateWithFunction:error:", 2),
        new("maxTotalThreadsPerThreadgroup", 0),
        new("newBufferWithLength:options:", 2),
        new("newBufferWithBytes:length:options:", 3),
        new("newBufferWithBytesNoCopy:length:options:deallocator:", 4),
        new("contents", 0),
        new("commandBuffer", 0),
        new("computeCommandEncoder", 0),
        new("setComputePipelineState:", 1),
        new("setBuffer:offset:atIndex:", 3),
        new("setBytes:length:atIndex:", 3),
        new("dispatchThreadgroups:threadsPerThreadgroup:", 2),
        new("endEncoding", 0),
        new("commit", 0),
        new("waitUntilCompleted", 0),
        new("status", 0),
        new("error", 0),
    ];

    public Selectors(Func<string, nint> register)
    {
        nint R(string name)
        {
            if (!Table.Any(s => s.Name == name))
                throw new InvalidOperationException($"selector {name} is missing from Selectors.Table");
            return register(name);
        }

        Alloc = R("alloc");
        Init = R("init");
        Release = R("release");
        Retain = R("retain");
        Name = R("name");
        Count = R("count");
        ObjectAtIndex = R("objectAtIndex:");
        StringWithUtf8String = R("stringWithUTF8String:");
        Utf8String = R("UTF8String");
        LocalizedDescription = R("localizedDescription");
        SetFastMathEnabled = R("setFastMathEnabled:");
        NewCommandQueue = R("newCommandQueue");
        NewLibraryWithSource = R("newLibraryWithSource:options:error:");
        NewFunctionWithName = R("newFunctionWithName:");
        NewComputePipelineState = R("newComputePipelineStateWithFunction:error:");
        MaxTotalThreadsPerThreadgroup = R("maxTotalThreadsPerThreadgroup");
        NewBufferWithLength = R("newBufferWithLength:options:");
        NewBufferWithBytes = R("newBufferWithBytes:length:options:");
        NewBufferWithBytesNoCopy = R("newBufferWithBytesNoCopy:length:options:deallocator:");
        Contents = R("contents");
        CommandBuffer = R("commandBuffer");
        ComputeCommandEncoder = R("computeCommandEncoder");
        SetComputePipelineState = R("setComputePipelineState:");
        SetBuffer = R("setBuffer:offset:atIndex:");
        SetBytes = R("setBytes:length:atIndex:");
        DispatchThreadgroups = R("dispatchThreadgroups:threadsPerThreadgroup:");
        EndEncoding = R("endEncoding");
        Commit = R("commit");
        WaitUntilCompleted = R("waitUntilCompleted");
        Status = R("status");
        Error = R("error");
    }

    public nint Alloc { get; }
    public nint Init { get; }
    public nint Release { get; }
    public nint Retain { get; }
    public nint Name { get; }
    public nint Count { get; }
    public nint ObjectAtIndex { get; }
    public nint StringWithUtf8String { get; }
    public nint Utf8String { get; }
    public nint LocalizedDescription { get; }
    public nint SetFastMathEnabled { get; }
    public nint NewCommandQueue { get; }
    public nint NewLibraryWithSource { get; }
    public nint NewFunctionWithName { get; }
    public nint NewComputePipelineState { get; }
    public nint MaxTotalThreadsPerThreadgroup { get; }
    public nint NewBufferWithLength { get; }
    public nint NewBufferWithBytes { get; }
    public nint NewBufferWithBytesNoCopy { get; }
    public nint Contents { get; }
    public nint CommandBuffer { get; }
    public nint ComputeCommandEncoder { get; }
    public nint SetComputePipelineState { get; }
    public nint SetBuffer { get; }
    public nint SetBytes { get; }
    public nint DispatchThreadgroups { get; }
    public nint EndEncoding { get; }
    public nint Commit { get; }
    public nint WaitUntilCompleted { get; }
    public nint Status { get; }
    public nint Error { get; }
}

/// <summary>Metal enum values the backend passes or reads.</summary>
internal static class MetalConstants
{
    /// <summary>MTLResourceStorageModeShared | MTLResourceCPUCacheModeDefaultCache | hazard tracking default.</summary>
    public const nuint ResourceStorageModeShared = 0;

    /// <summary>MTLCommandBufferStatusCompleted.</summary>
    public const nuint CommandBufferStatusCompleted = 4;

    /// <summary>MTLCommandBufferStatusError.</summary>
    public const nuint CommandBufferStatusError = 5;
}
