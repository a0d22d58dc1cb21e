namespace Pipeline.Model.Tests.Checkpoint;

/// <summary>Locates tests/fixtures in the repository (the folder holding pipeline.sln) and makes temp folders.</summary>
internal static class CheckpointFixtures
{
    public static string RepoRoot { get; } = FindRepoRoot();

    public static string TinyA(string layout) => Path.Combine(RepoRoot, "tests", "fixtures", "gemma4-tiny-a", layout);

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "pipeline.sln")))
                return dir.FullName;
        }
        throw new InvalidOperationException($"No pipeline.sln above {AppContext.BaseDirectory}");
    }
}

/// <summary>A fresh empty folder under the system temp directory, deleted on dispose.</summary>
internal sealed class TempFolder : IDisposable
{
    public TempFolder()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "pipeline-ckpt-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // A mapping still closing on another thread; the OS temp cleaner gets it.
        }
    }
}
