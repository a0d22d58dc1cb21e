using System.CommandLine;
using System.Text.Json;
using Pipeline.Host.Benchmarks;
using Pipeline.Host.Commands;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Host.Tests;

/// <summary>`pipeline bench` on the tiny-a fixture: argument errors and the JSON result's shape.</summary>
public sealed class BenchCommandTests
{
    private static readonly string TinyA = Path.Combine(RepoRoot(), "tests", "fixtures", "gemma4-tiny-a", "ud-q2kxl");

    [Theory]
    [InlineData("--repeats", "0", "--repeats must be at least 1")]
    [InlineData("--prompt-tokens", "0", "--prompt-tokens must be at least 1")]
    [InlineData("--decode-tokens", "-3", "--decode-tokens must be at least 1, got -3")]
    [InlineData("--threads", "-1", "--threads must be 0")]
    [InlineData("--sessions", "0", "--sessions must be at least 1")]
    [InlineData("--sessions", "4", "--mode actors and interleaved only")]
    public void BadOptions_GiveOneClearError(string option, string value, string message)
    {
        var (exit, output, error) = Run("bench", "--model", TinyA, "--no-bandwidth", option, value);
        Assert.Equal(1, exit);
        Assert.Equal("", output);
        Assert.StartsWith("pipeline bench:", error);
        Assert.Contains(message, error);
    }

    [Fact]
    public void UnknownMode_IsRefusedByTheParser()
    {
        var (exit, output, error) = Run("bench", "--model", TinyA, "--mode", "gpu");
        Assert.NotEqual(0, exit);
        Assert.DoesNotContain("{", output);
        Assert.Contains("gpu", error);
    }

    [Fact]
    public void MissingModelFolder_IsNamed()
    {
        string missing = Path.Combine(Path.GetTempPath(), "no-such-model-" + Guid.NewGuid().ToString("N"));
        var (exit, _, error) = Run("bench", "--model", missing, "--no-bandwidth");
        Assert.Equal(1, exit);
        Assert.Contains(missing, error);
    }

    [Fact]
    public void EngineJson_IsOneLineWithTheRunMjsFieldsAndPerOpTimes()
    {
        var (exit, output, error) = Run("bench", "--model", TinyA, "--no-bandwidth", "--threads", "1",
            "--prompt-tokens", "12", "--decode-tokens", "3", "--repeats", "2", "--json");
        Assert.True(exit == 0, error);
        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        using var document = JsonDocument.Parse(lines[0]);
        var root = document.RootElement;
        Assert.Equal("pipeline", root.GetProperty("engine").GetString());
        Assert.Equal("engine", root.GetProperty("mode").GetString());
        Assert.Equal(1, root.GetProperty("threads").GetInt32());
        Assert.Equal(12, root.GetProperty("promptTokens").GetInt32());
        Assert.Equal(3, root.GetProperty("decodeTokens").GetInt32());
        Assert.Equal(2, root.GetProperty("repeats").GetInt32());
        foreach (string stat in new[] { "prefillTokS", "decodeTokS", "decodeGBs", "ttftMs" })
        {
            var s = root.GetProperty(stat);
            double min = s.GetProperty("min").GetDouble(), median = s.GetProperty("median").GetDouble(), max = s.GetProperty("max").GetDouble();
            Assert.True(min > 0 && min <= median && median <= max, $"{stat}: {s}");
        }
        using (var checkpoint = Gemma4Checkpoint.Open(TinyA))
            Assert.Equal(WeightBytes.PerDecodedToken(checkpoint), root.GetProperty("weightBytesPerToken").GetInt64());
        Assert.True(root.GetProperty("peakRssBytes").GetInt64() >= root.GetProperty("rssBytes").GetInt64());
        Assert.True(root.GetProperty("rssFileBytes").GetInt64() > 0);
        Assert.True(root.GetProperty("otherProcessCores").GetDouble() >= -0.5);
        Assert.False(root.TryGetProperty("readGBs", out _));

        // The per-op decode pass: 3 decode steps' worth of ops per token, the head and each layer's projections.
        var ops = root.GetProperty("opsDecode").GetProperty("ops").EnumerateArray()
            .ToDictionary(o => o.GetProperty("op").GetString()!, o => o);
        Assert.Contains(ops.Keys, k => k.StartsWith("head ", StringComparison.Ordinal));
        Assert.Contains(ops.Keys, k => k.StartsWith("linear ", StringComparison.Ordinal));
        Assert.Contains(ops.Keys, k => k.StartsWith("attention ", StringComparison.Ordinal));
        Assert.Equal(1, ops.Single(o => o.Key.StartsWith("head ", StringComparison.Ordinal)).Value.GetProperty("calls").GetInt32());
        int layers = root.GetProperty("layers").GetInt32();
        Assert.Equal(2 * layers, ops.Where(o => o.Key.StartsWith("attention ", StringComparison.Ordinal)).Sum(o => o.Value.GetProperty("calls").GetInt32()) * 2);
        foreach (var op in ops.Values)
            Assert.True(op.GetProperty("ms").GetDouble() >= 0 && op.GetProperty("GBs").GetDouble() >= 0);
        Assert.NotEmpty(root.GetProperty("opsPrefill").GetProperty("ops").EnumerateArray());
    }

    [Fact]
    public void WithoutJson_PrintsReadableLinesThenTheJsonLast()
    {
        var (exit, output, error) = Run("bench", "--model", TinyA, "--no-bandwidth", "--threads", "1",
            "--prompt-tokens", "4", "--decode-tokens", "2", "--repeats", "1");
        Assert.True(exit == 0, error);
        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains(lines, l => l.StartsWith("run 1: prefill", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("ops (decode", StringComparison.Ordinal));
        JsonDocument.Parse(lines[^1]).Dispose();
    }

    [Fact]
    public void ActorsJson_ReportsAggregateDecodeOverSessions()
    {
        var (exit, output, error) = Run("bench", "--model", TinyA, "--no-bandwidth", "--mode", "actors", "--sessions", "2",
            "--prompt-tokens", "20", "--decode-tokens", "3", "--repeats", "1", "--json");
        Assert.True(exit == 0, error);
        using var document = JsonDocument.Parse(output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Single());
        var root = document.RootElement;
        Assert.Equal("pipeline-actors", root.GetProperty("engine").GetString());
        Assert.Equal(2, root.GetProperty("sessions").GetInt32());
        Assert.True(root.GetProperty("decodeTokS").GetProperty("median").GetDouble() > 0);
        Assert.True(root.GetProperty("actualPromptTokens").GetInt32() > 10);
        Assert.True(root.GetProperty("ttftMs").GetProperty("median").GetDouble() > 0);
    }

    [Fact]
    public void InterleavedJson_ReportsPerRoundOverheadAndScaling()
    {
        var (exit, output, error) = Run("bench", "--model", TinyA, "--no-bandwidth", "--mode", "interleaved", "--sessions", "2",
            "--threads", "1", "--prompt-tokens", "20", "--decode-tokens", "6", "--repeats", "3");
        Assert.True(exit == 0, error);
        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Count(l => l.StartsWith("round ", StringComparison.Ordinal)));
        using var document = JsonDocument.Parse(lines[^1]);
        var root = document.RootElement;
        Assert.Equal("pipeline-interleaved", root.GetProperty("engine").GetString());
        Assert.Equal("interleaved", root.GetProperty("mode").GetString());
        double[] perRound = [.. root.GetProperty("overheadPerRound").EnumerateArray().Select(e => e.GetDouble())];
        Assert.Equal(3, perRound.Length);
        Assert.Equal(perRound.Order().ElementAt(1), root.GetProperty("overhead").GetProperty("median").GetDouble(), 12);
        double engine = root.GetProperty("engineDecodeTokS").GetProperty("median").GetDouble();
        double actors = root.GetProperty("actorsDecodeTokS").GetProperty("median").GetDouble();
        double many = root.GetProperty("manyDecodeTokS").GetProperty("median").GetDouble();
        Assert.True(engine > 0 && actors > 0 && many > 0, root.ToString());
        Assert.InRange(root.GetProperty("scaling").GetProperty("median").GetDouble(), 0.1, 10);
        // One session's 6 decode steps are consecutive one-step passes, so its steady rate always exists; whether
        // the tiny model's two sessions ever share consecutive passes depends on timing (0 when they never do).
        Assert.True(root.GetProperty("oneSteadyDecodeTokS").GetProperty("min").GetDouble() > 0, root.ToString());
        Assert.True(root.GetProperty("manySteadyDecodeTokS").GetProperty("min").GetDouble() >= 0, root.ToString());
        Assert.True(root.GetProperty("steadyScaling").GetProperty("median").GetDouble() >= 0, root.ToString());
        // The engine's prompt is as long as the actors' templated prompt.
        Assert.True(root.GetProperty("actualPromptTokens").GetInt32() > 10);
        Assert.True(root.GetProperty("actorsDecodePassMs").GetProperty("median").GetDouble() > 0);
        // Warm-up rounds run until one compiles at most 10 methods (or 8 rounds have run).
        int warmupRounds = root.GetProperty("warmupRounds").GetInt32();
        Assert.InRange(warmupRounds, 1, 8);
        Assert.True(warmupRounds == 8 || root.GetProperty("jitCompiledInLastWarmupRound").GetInt64() <= 10, root.ToString());
        Assert.True(root.GetProperty("jitCompiledDuringRounds").GetInt64() >= 0);
    }

    [Fact]
    public void SteadyRate_CountsOnlyConsecutivePassesOfAllSessions()
    {
        static ActorsBenchmark.DecodePassEnd End(long pass, double seconds, int steps) => new(pass, seconds, steps);

        // Passes 3-5 have all 4 sessions: two intervals of 0.5 s and 0.3 s carry 4 tokens each.
        var ends = new[] { End(1, 0.0, 2), End(2, 0.4, 3), End(3, 1.0, 4), End(4, 1.5, 4), End(5, 1.8, 4) };
        Assert.Equal(8 / 0.8, ActorsBenchmark.SteadyRate(ends, 4), 9);
        // A pass in between that is not a decode pass (a prefill: missing from the list) breaks the run.
        var broken = new[] { End(3, 1.0, 4), End(4, 1.5, 4), End(6, 9.0, 4), End(7, 9.2, 4) };
        Assert.Equal(8 / 0.7, ActorsBenchmark.SteadyRate(broken, 4), 9);
        // Never two full passes in a row: no rate.
        Assert.Equal(0, ActorsBenchmark.SteadyRate([End(1, 0, 4), End(2, 1, 3), End(3, 2, 4)], 4));
        Assert.Equal(0, ActorsBenchmark.SteadyRate([], 1));
    }

    [Fact]
    public void BandwidthProbe_GivesOnePositiveRatePerThreadCount()
    {
        double[] rates = ReadBandwidthProbe.Measure(64L << 20, maxThreads: 2, passes: 2);
        Assert.Equal(2, rates.Length);
        Assert.All(rates, r => Assert.InRange(r, 0.1, 10_000));
    }

    [Fact]
    public void PromptIds_MatchRunMjs()
    {
        int[] ids = BenchSettings.PromptIds(3, 262144);
        Assert.Equal([1000, 1000 + 7919, 1000 + 2 * 7919], ids);
        Assert.All(BenchSettings.PromptIds(200, 262144), id => Assert.InRange(id, 1000, 262144 - 1001));
        Assert.Equal(256, new BenchSettings("m", 1, 128, 32, 1, false, 1).ContextSize);
        Assert.Equal(512, new BenchSettings("m", 1, 128, 128, 1, false, 1).ContextSize);
    }

    [Fact]
    public void Stat_MedianOfEvenCountIsTheMeanOfTheMiddleTwo()
    {
        var s = Stat.Of([4, 1, 3, 2]);
        Assert.Equal(2.5, s.Median);
        Assert.Equal(1, s.Min);
        Assert.Equal(4, s.Max);
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
