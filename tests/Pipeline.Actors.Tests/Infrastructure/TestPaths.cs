namespace Pipeline.Actors.Tests.Infrastructure;

/// <summary>Locates repository files relative to the folder holding pipeline.sln.</summary>
public static class TestPaths
{
    public static string RepositoryRoot { get; } = FindRoot();

    public static string TinyModel => Path.Combine(RepositoryRoot, "tests", "fixtures", "gemma4-tiny-a", "ud-q2kxl");

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "pipeline.sln")))
                return dir.FullName;
        }
        throw new InvalidOperationException($"no pipeline.sln above {AppContext.BaseDirectory}");
    }
}
