using System.Text.Json;

namespace Pipeline.Tokenizer.Tests;

/// <summary>Locates repository files relative to the build output (walks up to pipeline.sln).</summary>
internal static class Fixtures
{
    public static string RepoRoot { get; } = FindRepoRoot();

    public static string TokenizerDev => Path.Combine(RepoRoot, "tests", "fixtures", "tokenizer", "dev");

    public static string ShippedTokenizerGz => Path.Combine(RepoRoot, "src", "Tokenizer", "Data", "tokenizer.json.gz");

    /// <summary>Each non-empty line of a JSON Lines file with its 1-based line number.</summary>
    public static IEnumerable<(int Line, JsonElement Value)> ReadJsonLines(string path)
    {
        int number = 0;
        foreach (string line in File.ReadLines(path))
        {
            number++;
            if (line.Length == 0)
                continue;
            using var doc = JsonDocument.Parse(line);
            yield return (number, doc.RootElement.Clone());
        }
    }

    public static int[] Ids(JsonElement array) => [.. array.EnumerateArray().Select(e => e.GetInt32())];

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "pipeline.sln")))
                return dir.FullName;
        }
        throw new InvalidOperationException($"No pipeline.sln above {AppContext.BaseDirectory}.");
    }
}
