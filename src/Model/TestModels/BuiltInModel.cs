namespace Pipeline.Model.TestModels;

/// <summary>
/// The model used when no --model is given: the tiny random-weight Gemma-4 test model, generated
/// once into the user's cache folder (PIPELINE_CACHE, else XDG_CACHE_HOME, else ~/.cache).
/// </summary>
public static class BuiltInModel
{
    private const ulong Seed = 0;

    public static string CacheRoot()
    {
        string? root = Environment.GetEnvironmentVariable("PIPELINE_CACHE");
        if (string.IsNullOrEmpty(root))
        {
            string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            root = Path.Combine(
                string.IsNullOrEmpty(xdg) ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache") : xdg,
                "pipeline");
        }
        return root;
    }

    /// <summary>The folder of the built-in model, generating it on first use.</summary>
    public static string Ensure(TextWriter log)
    {
        string directory = Path.Combine(CacheRoot(), $"test-model-tiny-ud-q2kxl-seed{Seed}");
        // config.json is written last, so its presence marks a complete folder.
        if (File.Exists(Path.Combine(directory, "config.json")))
            return directory;

        // Generate beside the final folder and rename, so an interrupted run leaves nothing half-made.
        string staging = directory + ".partial-" + Environment.ProcessId;
        log.WriteLine($"pipeline: no --model given; generating the built-in tiny test model into {directory}");
        try
        {
            TestModelGenerator.Generate(TestModelPreset.Tiny, TestModelQuant.UdQ2Kxl, Seed, staging);
            try
            {
                Directory.Move(staging, directory);
            }
            catch (IOException) when (File.Exists(Path.Combine(directory, "config.json")))
            {
                // Another process finished first; its copy is identical (same seed).
            }
        }
        finally
        {
            if (Directory.Exists(staging))
                Directory.Delete(staging, recursive: true);
        }
        return directory;
    }

    /// <summary>The --model value if given, else the built-in model.</summary>
    public static string Resolve(DirectoryInfo? model, TextWriter log) =>
        model is null ? Ensure(log) : model.FullName;
}
