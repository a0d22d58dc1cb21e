namespace Pipeline.Convert.Tests;

internal static class TestPaths
{
    private static readonly Lazy<string> Root = new(() =>
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "pipeline.sln")))
            dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("pipeline.sln not found above the test binaries");
    });

    public static string RepoRoot => Root.Value;
    public static string TinyBf16 => Path.Combine(RepoRoot, "tests", "fixtures", "gemma4-tiny-a", "bf16");
    public static string TinyQuantized => Path.Combine(RepoRoot, "tests", "fixtures", "gemma4-tiny-a", "ud-q2kxl");
    public static string TokenizerData => Path.Combine(RepoRoot, "src", "Tokenizer", "Data");

    /// <summary>A fresh empty folder under the system temp folder, deleted with the returned scope.</summary>
    public static TempFolder NewTempFolder() => new();
}

internal sealed class TempFolder : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(
        System.IO.Path.GetTempPath(), "pipeline-convert-tests-" + Guid.NewGuid().ToString("N"));

    public TempFolder() => Directory.CreateDirectory(Path);

    public void Dispose()
    {
        if (Directory.Exists(Path))
            Directory.Delete(Path, recursive: true);
    }
}
