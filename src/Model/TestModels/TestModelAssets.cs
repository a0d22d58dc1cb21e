using System.IO.Compression;

namespace Pipeline.Model.TestModels;

/// <summary>
/// The tokenizer, chat template and configs a generated folder carries. They are the files in
/// src/Tokenizer/Data, embedded into Pipeline.Model at build time (see Pipeline.Model.csproj), so
/// a generated folder is self-contained however Pipeline is started (dotnet run, tests, a published binary).
/// </summary>
public static class TestModelAssets
{
    /// <summary>File name in the generated folder and embedded resource name.</summary>
    public static IReadOnlyList<(string FileName, string Resource)> Files { get; } =
    [
        ("tokenizer.json", "TestModelAssets/tokenizer.json.gz"),
        ("tokenizer_config.json", "TestModelAssets/tokenizer_config.json"),
        ("chat_template.jinja", "TestModelAssets/chat_template.jinja"),
        ("generation_config.json", "TestModelAssets/generation_config.json"),
        ("NOTICE.md", "TestModelAssets/NOTICE.md"),
    ];

    /// <summary>Writes every asset into <paramref name="directory"/>; tokenizer.json is written decompressed.</summary>
    public static void WriteTo(string directory)
    {
        foreach (var (fileName, resource) in Files)
        {
            using var source = Open(resource);
            using var target = File.Create(Path.Combine(directory, fileName));
            if (resource.EndsWith(".gz", StringComparison.Ordinal))
            {
                using var inflated = new GZipStream(source, CompressionMode.Decompress);
                inflated.CopyTo(target);
            }
            else
            {
                source.CopyTo(target);
            }
        }
    }

    private static Stream Open(string resource) =>
        typeof(TestModelAssets).Assembly.GetManifestResourceStream(resource)
        ?? throw new InvalidOperationException($"embedded resource '{resource}' is missing from {typeof(TestModelAssets).Assembly.GetName().Name}");
}
