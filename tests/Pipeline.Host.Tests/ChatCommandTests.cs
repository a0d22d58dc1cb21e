using System.CommandLine;
using System.Text.RegularExpressions;
using Pipeline.Host.Commands;

namespace Pipeline.Host.Tests;

/// <summary>`pipeline chat` driven with redirected input on the tiny-a fixture.</summary>
public sealed partial class ChatCommandTests
{
    private static readonly string TinyA = Path.Combine(RepoRoot(), "tests", "fixtures", "gemma4-tiny-a", "ud-q2kxl");

    [Fact]
    public void Two_turns_share_the_cache_reset_starts_over_and_stats_report_each_answer()
    {
        var (exit, output, error) = Chat("""
            What is the capital of France?
            /stats
            And of Germany?
            /stats
            /reset
            And of Japan?
            /stats
            """);
        Assert.Equal(0, exit);
        Assert.DoesNotContain("error", error);
        var stats = Stats(output);
        Assert.Equal(3, stats.Count);
        Assert.Equal(0, stats[0].Cached);
        Assert.True(stats[1].Cached > stats[0].Prompt / 2, $"turn 2 cached {stats[1].Cached} of {stats[1].Prompt}");
        Assert.True(stats[1].Prompt > stats[0].Prompt);
        Assert.Contains("[conversation reset]", output);
        Assert.Equal(0, stats[2].Cached);
        Assert.True(stats[2].Prompt < stats[1].Prompt);
        Assert.All(stats, s => Assert.InRange(s.Completion, 1, 4));
        Assert.Matches(@"ttft \d+\.\d ms, prefill \d+\.\d tok/s, decode \d+\.\d tok/s", output);
        Assert.DoesNotContain("\u001b[", output);
    }

    [Fact]
    public void System_prompt_leads_a_new_conversation_and_commands_answer()
    {
        var (exit, output, error) = Chat("""
            /stats
            Hi
            /stats
            /system You are a helpful assistant who answers every question in at most one short sentence.
            Hi
            /stats
            /think on
            /think maybe
            /image /no/such/picture.png
            /bogus
            /help
            /exit
            Never sent
            /stats
            """);
        Assert.Equal(0, exit);
        Assert.Contains("[no answer yet]", output);
        var stats = Stats(output);
        Assert.Equal(2, stats.Count);
        Assert.Contains("[system prompt set; new conversation]", output);
        Assert.Equal(0, stats[1].Cached);
        Assert.True(stats[1].Prompt > stats[0].Prompt + 10, $"with system {stats[1].Prompt}, without {stats[0].Prompt}");
        Assert.Contains("[thinking on]", output);
        Assert.Contains("usage: /think on|off", error);
        Assert.Contains("picture.png", error);
        Assert.Contains("unknown command /bogus", error);
        Assert.Contains("/image PATH", output);
    }

    [Fact]
    public void Bad_options_and_missing_models_give_one_clear_error()
    {
        var (exit, _, error) = Chat("Hi\n", maxTokens: "0");
        Assert.Equal(1, exit);
        Assert.StartsWith("pipeline chat:", error);
        Assert.Contains("--max-tokens", error);

        string missing = Path.Combine(Path.GetTempPath(), "no-such-model-" + Guid.NewGuid().ToString("N"));
        var root = new RootCommand { ChatCommand.Create(new StringReader("Hi\n")) };
        using var output = new StringWriter();
        using var errors = new StringWriter();
        Assert.Equal(1, root.Parse(["chat", "--model", missing]).Invoke(new InvocationConfiguration { Output = output, Error = errors }));
        Assert.Contains(missing, errors.ToString());
    }

    private static (int Exit, string Output, string Error) Chat(string input, string maxTokens = "4")
    {
        var root = new RootCommand { ChatCommand.Create(new StringReader(input)) };
        using var output = new StringWriter();
        using var error = new StringWriter();
        string[] args = ["chat", "--model", TinyA, "--max-tokens", maxTokens, "--temperature", "0", "--threads", "1"];
        int exit = root.Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error });
        return (exit, output.ToString(), error.ToString());
    }

    private static List<(int Prompt, int Cached, int Completion)> Stats(string output) =>
        StatsLine().Matches(output).Select(m => (int.Parse(m.Groups[1].Value), int.Parse(m.Groups[2].Value), int.Parse(m.Groups[3].Value))).ToList();

    [GeneratedRegex(@"\(prompt (\d+) tok, cached (\d+), completion (\d+),")]
    private static partial Regex StatsLine();

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
