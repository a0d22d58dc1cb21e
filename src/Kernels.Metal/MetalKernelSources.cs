using System.Reflection;

namespace Pipeline.Kernels.Metal;

/// <summary>
/// The MSL kernel sources embedded in this assembly. Each file becomes one Metal library: the
/// common prelude followed by the file's text. The emulation harness compiles exactly the text
/// <see cref="LibrarySource"/> returns, so the GPU and the emulator see the same program.
/// </summary>
public static class MetalKernelSources
{
    private const string ResourcePrefix = "Pipeline.Kernels.Metal.Kernels.";
    private const string PreludeFile = "Prelude.metal";

    /// <summary>Kernel family files (e.g. "Qmv.metal"), excluding the prelude, in a stable order.</summary>
    public static IReadOnlyList<string> Files { get; } = Assembly.GetExecutingAssembly()
        .GetManifestResourceNames()
        .Where(n => n.StartsWith(ResourcePrefix, StringComparison.Ordinal) && n.EndsWith(".metal", StringComparison.Ordinal))
        .Select(n => n[ResourcePrefix.Length..])
        .Where(n => n != PreludeFile)
        .Order(StringComparer.Ordinal)
        .ToArray();

    /// <summary>The raw text of one embedded file.</summary>
    public static string Read(string file)
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream(ResourcePrefix + file)
            ?? throw new ArgumentException($"No embedded Metal source named '{file}'.", nameof(file));
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <summary>Prelude + file, with #line directives so compiler messages name the right file.</summary>
    public static string LibrarySource(string file) =>
        $"#line 1 \"{PreludeFile}\"\n{Read(PreludeFile)}\n#line 1 \"{file}\"\n{Read(file)}";
}
