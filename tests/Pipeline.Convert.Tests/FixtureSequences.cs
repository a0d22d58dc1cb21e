using System.IO.Compression;
using System.Text.Json.Nodes;

namespace Pipeline.Convert.Tests;

/// <summary>Token ids of the tiny-a reference sequences (real text and chat turns tokenized by HF tokenizers).</summary>
internal static class FixtureSequences
{
    private static readonly Lazy<Dictionary<string, int[]>> All = new(() =>
    {
        string path = Path.Combine(TestPaths.RepoRoot, "tests", "fixtures", "gemma4-tiny-a", "expected", "reference-f32.json.gz");
        using var stream = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        var root = JsonNode.Parse(stream)!;
        return root["sequences"]!.AsArray().ToDictionary(
            s => (string)s!["name"]!,
            s => s!["ids"]!.AsArray().Select(id => (int)id!).ToArray());
    });

    public static int[] Ids(string name) => All.Value[name];
}
