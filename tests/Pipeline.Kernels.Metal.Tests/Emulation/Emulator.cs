using System.Collections.Concurrent;
using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;

namespace Pipeline.Kernels.Metal.Tests.Emulation;

/// <summary>A kernel broke a rule of the Metal compute model (barrier, simdgroup, geometry).</summary>
public sealed class EmulatedKernelException(string message) : Exception(message);

/// <summary>
/// One [[buffer(n)]] binding: device memory, or setBytes data (Bytes, or Length bytes at Pointer)
/// whose length is checked against the MSL struct it binds to.
/// </summary>
public readonly record struct KernelArg(int Index, nint Pointer, byte[]? Bytes, int Length = -1)
{
    public static KernelArg Buffer(int index, nint pointer) => new(index, pointer, null);

    public static KernelArg Buffer(int index, GuardedBuffer buffer) => new(index, buffer.Pointer, null);

    public static KernelArg Memory(int index, nint pointer, int length) => new(index, pointer, null, length);

    public static unsafe KernelArg Value<T>(int index, T value) where T : unmanaged
    {
        var bytes = new byte[sizeof(T)];
        MemoryMarshal.Write(bytes, in value);
        return new KernelArg(index, 0, bytes);
    }
}

/// <summary>
/// The .metal sources compiled with clang++ as C++ against metal_shim.h into one shared library,
/// plus the launchers generated for every kernel. Built once per source hash and cached next to
/// the test assembly.
/// </summary>
public sealed unsafe class Emulator
{
    private const int MaxBufferIndex = 31;

    private static readonly Lazy<Emulator> SharedInstance = new(() => Build(variant: ""), LazyThreadSafetyMode.ExecutionAndPublication);
    private static readonly Lazy<Emulator> UcontextInstance = new(() => Build(variant: "ucontext"), LazyThreadSafetyMode.ExecutionAndPublication);

    private readonly nint _library;
    private readonly ConcurrentDictionary<string, KernelEntry> _kernels = new();

    private sealed record KernelEntry(nint Launch, (int Index, int Kind, int Size)[] Bindings);

    [StructLayout(LayoutKind.Sequential)]
    private struct Geometry
    {
        public fixed ulong Threadgroups[3];
        public fixed ulong ThreadsPerThreadgroup[3];
    }

    private Emulator(nint library, IReadOnlyCollection<string> kernelNames, string directory)
    {
        _library = library;
        KernelNames = kernelNames;
        Directory = directory;
    }

    /// <summary>Every kernel of the backend's sources and of the harness probes.</summary>
    public static Emulator Shared => SharedInstance.Value;

    /// <summary>The probe kernels only, on the portable ucontext fiber switch (used off x86-64 Linux).</summary>
    public static Emulator PortableFibers => UcontextInstance.Value;

    public IReadOnlyCollection<string> KernelNames { get; }

    public string Directory { get; }

    /// <summary>Runs one dispatch to completion; throws <see cref="EmulatedKernelException"/> on a violation.</summary>
    public void Dispatch(string kernel, DispatchGeometry geometry, params KernelArg[] args)
    {
        var entry = _kernels.GetOrAdd(kernel, Resolve);
        var pointers = stackalloc nint[MaxBufferIndex + 1];
        var pinned = new List<GCHandle>();
        try
        {
            var bound = new bool[MaxBufferIndex + 1];
            foreach (var arg in args)
            {
                int found = Array.FindIndex(entry.Bindings, b => b.Index == arg.Index);
                if (found < 0)
                    throw new ArgumentException($"{kernel} has no [[buffer({arg.Index})]].");
                var binding = entry.Bindings[found];
                if (bound[arg.Index])
                    throw new ArgumentException($"{kernel}: buffer({arg.Index}) bound twice.");
                bound[arg.Index] = true;
                if (binding.Kind == 1)
                {
                    int length = arg.Bytes?.Length ?? arg.Length;
                    if (length != binding.Size || (arg.Bytes is null && arg.Pointer == 0))
                        throw new ArgumentException(
                            $"{kernel}: buffer({arg.Index}) is a {binding.Size}-byte struct but {Math.Max(0, length)} bytes were set (C# and MSL layouts differ?).");
                    if (arg.Bytes is not null)
                    {
                        var handle = GCHandle.Alloc(arg.Bytes, GCHandleType.Pinned);
                        pinned.Add(handle);
                        pointers[arg.Index] = handle.AddrOfPinnedObject();
                    }
                    else
                    {
                        pointers[arg.Index] = arg.Pointer;
                    }
                }
                else
                {
                    if (arg.Bytes is not null || arg.Pointer == 0)
                        throw new ArgumentException($"{kernel}: buffer({arg.Index}) is a pointer; bind memory, not a value.");
                    pointers[arg.Index] = arg.Pointer;
                }
            }
            foreach (var b in entry.Bindings)
                if (!bound[b.Index])
                    throw new ArgumentException($"{kernel}: buffer({b.Index}) is not bound.");

            Geometry g;
            g.Threadgroups[0] = geometry.Threadgroups.Width;
            g.Threadgroups[1] = geometry.Threadgroups.Height;
            g.Threadgroups[2] = geometry.Threadgroups.Depth;
            g.ThreadsPerThreadgroup[0] = geometry.ThreadsPerThreadgroup.Width;
            g.ThreadsPerThreadgroup[1] = geometry.ThreadsPerThreadgroup.Height;
            g.ThreadsPerThreadgroup[2] = geometry.ThreadsPerThreadgroup.Depth;
            var launch = (delegate* unmanaged<nint*, Geometry*, int>)entry.Launch;
            if (launch(pointers, &g) != 0)
                throw new EmulatedKernelException($"{kernel}: {LastError()}");
        }
        finally
        {
            foreach (var h in pinned)
                h.Free();
        }
    }

    private string LastError()
    {
        var get = (delegate* unmanaged<nint>)NativeLibrary.GetExport(_library, "emu_last_error");
        return Marshal.PtrToStringUTF8(get()) ?? "unknown error";
    }

    private KernelEntry Resolve(string kernel)
    {
        if (!NativeLibrary.TryGetExport(_library, "emu_kernel_" + kernel, out nint launch))
            throw new ArgumentException($"No kernel named '{kernel}' in the emulated library.", nameof(kernel));
        var bindingsFn = (delegate* unmanaged<int*, int, int>)NativeLibrary.GetExport(_library, "emu_bindings_" + kernel);
        var raw = new int[3 * (MaxBufferIndex + 1)];
        int count;
        fixed (int* p = raw)
            count = bindingsFn(p, raw.Length);
        var bindings = Enumerable.Range(0, count).Select(i => (raw[3 * i], raw[3 * i + 1], raw[3 * i + 2])).ToArray();
        return new KernelEntry(launch, bindings);
    }

    // ------------------------------------------------------------------------------------------
    // Building the native library.

    /// <summary>Flags every .metal translation unit is compiled with: MSL is C++14-based.</summary>
    internal static readonly string[] KernelFlags =
    [
        "-std=c++14", "-O2", "-fPIC", "-fvisibility=hidden", "-fno-exceptions", "-fno-rtti",
        "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter", "-Wno-unused-function",
        "-Werror=unknown-attributes", "-Wdouble-promotion", "-Wno-gnu-zero-variadic-macro-arguments",
    ];

    internal static Emulator Build(string variant)
    {
        var sources = CollectSources(includeBackendKernels: variant.Length == 0);
        string runtimeDefines = variant == "ucontext" ? "-DEMU_USE_UCONTEXT" : "";
        string hash = Hash(sources, runtimeDefines, ClangVersion());
        string root = Path.Combine(AppContext.BaseDirectory, "metal-emulator");
        string dir = Path.Combine(root, hash + (variant.Length > 0 ? "-" + variant : ""));
        string libraryPath = Path.Combine(dir, LibraryFileName);
        System.IO.Directory.CreateDirectory(root);
        using (AcquireLock(dir + ".lock"))
        {
            if (!File.Exists(libraryPath))
                Compile(sources, dir, runtimeDefines);
        }
        var names = File.ReadAllLines(Path.Combine(dir, "kernels.txt"));
        nint library = NativeLibrary.Load(libraryPath);
        // Large dispatches spread their threadgroups over the cores.
        ((delegate* unmanaged<int, void>)NativeLibrary.GetExport(library, "emu_set_workers"))(Environment.ProcessorCount);
        return new Emulator(library, names, dir);
    }

    private static string LibraryFileName => OperatingSystem.IsMacOS() ? "libmetal_emulator.dylib" : "libmetal_emulator.so";

    /// <summary>(relative path, text): the harness natives, the backend's kernels, the probe kernels.</summary>
    private static List<(string Path, string Text)> CollectSources(bool includeBackendKernels)
    {
        var files = new List<(string, string)>();
        var assembly = Assembly.GetExecutingAssembly();
        foreach (string name in assembly.GetManifestResourceNames().Order(StringComparer.Ordinal))
        {
            const string prefix = "Emulation/";
            if (!name.StartsWith(prefix, StringComparison.Ordinal))
                continue;
            using var reader = new StreamReader(assembly.GetManifestResourceStream(name)!);
            files.Add((name[prefix.Length..], reader.ReadToEnd()));
        }
        foreach (string file in includeBackendKernels ? MetalKernelSources.Files : [])
            files.Add(("Kernels/" + file, MetalKernelSources.LibrarySource(file)));
        return files;
    }

    private static string Hash(List<(string Path, string Text)> sources, string defines, string clang)
    {
        var sb = new StringBuilder();
        sb.Append(clang).Append('\0').Append(defines).Append('\0').Append(string.Join(' ', KernelFlags)).Append('\0');
        foreach (var (path, text) in sources)
            sb.Append(path).Append('\0').Append(text).Append('\0');
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())))[..16].ToLowerInvariant();
    }

    private static void Compile(List<(string Path, string Text)> sources, string dir, string runtimeDefines)
    {
        string work = dir + ".tmp-" + Environment.ProcessId;
        if (System.IO.Directory.Exists(work))
            System.IO.Directory.Delete(work, recursive: true);
        foreach (var (path, text) in sources)
        {
            string full = Path.Combine(work, path);
            System.IO.Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            File.WriteAllText(full, text);
        }
        string native = Path.Combine(work, "Native");
        string shim = Path.Combine(native, "metal_shim.h");
        string include = Path.Combine(native, "include");
        var metalFiles = sources.Where(s => s.Path.EndsWith(".metal", StringComparison.Ordinal)).Select(s => Path.Combine(work, s.Path)).ToList();

        var kernelNames = new ConcurrentBag<string>();
        var objects = new ConcurrentBag<string>();
        var jobs = new List<Action>
        {
            () =>
            {
                string obj = Path.Combine(work, "emu_runtime.o");
                var args = new List<string> { "-std=c++17", "-O2", "-fPIC", "-fvisibility=hidden", "-Wall", "-Wextra", "-Werror", "-c", Path.Combine(native, "emu_runtime.cpp"), "-o", obj };
                if (runtimeDefines.Length > 0)
                    args.Insert(0, runtimeDefines);
                Clang(args);
                objects.Add(obj);
            },
        };
        foreach (string metal in metalFiles)
        {
            jobs.Add(() =>
            {
                string preprocessed = Clang([.. KernelFlags, "-E", "-P", "-I", include, "-include", shim, "-x", "c++", metal]);
                var kernels = KernelGlue.Parse(preprocessed, Path.GetFileName(metal));
                string glue = metal + ".glue.cpp";
                File.WriteAllText(glue, KernelGlue.Generate(metal, kernels));
                string obj = metal + ".o";
                Clang([.. KernelFlags, "-I", include, "-include", shim, "-c", glue, "-o", obj]);
                objects.Add(obj);
                foreach (var k in kernels)
                    kernelNames.Add(k.Name);
            });
        }
        var errors = new ConcurrentBag<Exception>();
        Parallel.ForEach(jobs, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, job =>
        {
            try
            {
                job();
            }
            catch (Exception e)
            {
                errors.Add(e);
            }
        });
        if (!errors.IsEmpty)
            throw new AggregateException("Building the Metal emulation library failed.", errors);
        // Unresolved symbols must fail the link, not the test host when the library loads.
        string[] strict = OperatingSystem.IsLinux() ? ["-Wl,--no-undefined"] : [];
        Clang(["-shared", .. strict, "-o", Path.Combine(work, LibraryFileName), .. objects.Order(StringComparer.Ordinal), "-lm", "-pthread"]);
        File.WriteAllLines(Path.Combine(work, "kernels.txt"), kernelNames.Order(StringComparer.Ordinal));
        if (System.IO.Directory.Exists(dir))
            System.IO.Directory.Delete(dir, recursive: true);
        System.IO.Directory.Move(work, dir);
    }

    /// <summary>Compiles a translation unit with the kernel flags, for tests of the supported subset.</summary>
    internal static (bool Ok, string Diagnostics) TryCompileKernelSource(string source)
    {
        var native = Shared.Directory;
        string file = Path.Combine(Path.GetTempPath(), $"pipeline-msl-subset-{Guid.NewGuid():N}.metal");
        File.WriteAllText(file, source);
        try
        {
            var (code, _, stderr) = Run("clang++", [.. KernelFlags, "-fsyntax-only", "-I", Path.Combine(native, "Native", "include"),
                "-include", Path.Combine(native, "Native", "metal_shim.h"), "-x", "c++", file]);
            return (code == 0, stderr);
        }
        finally
        {
            File.Delete(file);
        }
    }

    private static string ClangVersion()
    {
        try
        {
            var (code, stdout, stderr) = Run("clang++", ["--version"]);
            return code == 0 ? stdout : throw new InvalidOperationException(stderr);
        }
        catch (System.ComponentModel.Win32Exception)
        {
            throw new InvalidOperationException(
                "clang++ is not installed: the Metal emulation tests compile the .metal kernels with it. Run scripts/install-ci-deps.sh (apt-get install clang).");
        }
    }

    private static string Clang(IReadOnlyList<string> args)
    {
        var (code, stdout, stderr) = Run("clang++", args);
        if (code != 0)
            throw new InvalidOperationException($"clang++ {string.Join(' ', args)}\nfailed:\n{stderr}");
        return stdout;
    }

    private static (int Code, string Stdout, string Stderr) Run(string program, IReadOnlyList<string> args)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        process.WaitForExit();
        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    private static FileStream AcquireLock(string path)
    {
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (attempt < 1200)
            {
                Thread.Sleep(250);
            }
        }
    }
}
