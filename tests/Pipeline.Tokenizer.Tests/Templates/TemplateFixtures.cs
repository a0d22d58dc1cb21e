using System.Text.Json.Nodes;

namespace Pipeline.Tokenizer.Tests.Templates;

/// <summary>Locates the repository's test fixtures (walks up from the test binaries to the folder holding pipeline.sln).</summary>
internal static class TemplateFixtures
{
    public static string RepoRoot { get; } = FindRoot();

    public static string TokenizerFixtures => Path.Combine(RepoRoot, "tests", "fixtures", "tokenizer");

    public static string JinjaFixtures => Path.Combine(RepoRoot, "tests", "fixtures", "jinja");

    public static string GemmaTemplatePath => Path.Combine(RepoRoot, "src", "Tokenizer", "Data", "chat_template.jinja");

    public static IEnumerable<JsonObject> ReadJsonLines(string path) =>
        File.ReadLines(path).Where(l => l.Length > 0).Select(l => JsonNode.Parse(l)!.AsObject());

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "pipeline.sln")))
                return dir.FullName;
        }
        throw new InvalidOperationException($"pipeline.sln not found above {AppContext.BaseDirectory}");
    }
}
