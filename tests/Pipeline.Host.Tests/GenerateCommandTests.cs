using System.CommandLine;
using System.Text.Json;
using Pipeline.Host.Commands;
using Pipeline.Model.TestModels;

namespace Pipeline.Host.Tests;

/// <summary>`pipeline generate` on the tiny-a fixture and on the built-in test model.</summary>
public sealed class GenerateCommandTests
{
    private static readonly string TinyA = Path.Combine(RepoRoot(), "tests", "fixtures", "gemma4-tiny-a", "ud-q2kxl");

    [Fact]
    public void Json_ReportsUsageAndStopsAtTheTokenLimit()
    {
        var (exit, output, _) = Run("generate", "--model", TinyA, "--prompt", "Hello there", "--max-tokens", "5", "--temperature", "0", "--json");
        Assert.Equal(0, exit);
        using var document = JsonDocument.Parse(output);
        var root = document.RootElement;
        int completion = root.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
        Assert.InRange(completion, 1, 5);
        Assert.True(root.GetProperty("usage").GetProperty("prompt_tokens").GetInt32() > 5);
        Assert.Contains(root.GetProperty("finish_reason").GetString(), new[] { "length", "stop", "repetition", "tool_calls" });
    }

    [Fact]
    public void SameSeed_SameAnswer_DifferentSeed_DifferentTokens()
    {
        string Answer(string seed)
        {
            var (exit, output, _) = Run("generate", "--model", TinyA, "--prompt", "Tell me a story", "--max-tokens", "12",
                "--temperature", "1", "--top-k", "0", "--top-p", "1", "--seed", seed, "--json");
            Assert.Equal(0, exit);
            var root = JsonDocument.Parse(output).RootElement;
            return root.GetProperty("content").GetString() + "|" + root.GetProperty("reasoning_content").GetString();
        }
        Assert.Equal(Answer("11"), Answer("11"));
        Assert.NotEqual(Answer("11"), Answer("12"));
    }

    [Fact]
    public void WithoutModel_GeneratesTheBuiltInModelOnceAndUsesIt()
    {
        string cache = Path.Combine(Path.GetTempPath(), "pipeline-cache-" + Guid.NewGuid().ToString("N"));
        string? previous = Environment.GetEnvironmentVariable("PIPELINE_CACHE");
        Environment.SetEnvironmentVariable("PIPELINE_CACHE", cache);
        try
        {
            var (exit, output, error) = Run("generate", "--prompt", "Hi", "--max-tokens", "2", "--json");
            Assert.Equal(0, exit);
            Assert.Contains("generating the built-in tiny test model", error);
            Assert.True(File.Exists(Path.Combine(BuiltInModel.CacheRoot(), "test-model-tiny-ud-q2kxl-seed0", "config.json")));
            JsonDocument.Parse(output).Dispose();

            var second = Run("generate", "--prompt", "Hi", "--max-tokens", "2", "--json");
            Assert.Equal(0, second.Exit);
            Assert.DoesNotContain("generating", second.Error);
        }
        finally
        {
            Environment.SetEnvironmentVariable("PIPELINE_CACHE", previous);
            if (Directory.Exists(cache))
                Directory.Delete(cache, recursive: true);
        }
    }

    [Theory]
    [InlineData("--max-tokens", "0", "maxNewTokens")]
    [InlineData("--temperature", "-1", "emperature")]
    public void BadOptions_GiveOneClearError(string option, string value, string named)
    {
        var (exit, _, error) = Run("generate", "--model", TinyA, "--prompt", "Hi", option, value);
        Assert.Equal(1, exit);
        Assert.StartsWith("pipeline generate:", error);
        Assert.Contains(named, error);
    }

    [Fact]
    public void MissingModelFolder_IsNamed()
    {
        string missing = Path.Combine(Path.GetTempPath(), "no-such-model-" + Guid.NewGuid().ToString("N"));
        var (exit, _, error) = Run("generate", "--model", missing, "--prompt", "Hi");
        Assert.Equal(1, exit);
        Assert.Contains(missing, error);
    }

    private static (int Exit, string Output, string Error) Run(params string[] args)
    {
        var root = new RootCommand();
        foreach (var command in CommandCatalog.All())
            root.Subcommands.Add(command);
        using var output = new StringWriter();
        using var error = new StringWriter();
        int exit = root.Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error });
        return (exit, output.ToString(), error.ToString());
    }

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "pipeline.sln")))
                return dir.FullName;
        }
        throw new InvalidOperationException($"No pipeline.sln above {AppContext.BaseDirectory}");
    }
}
