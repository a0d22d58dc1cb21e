using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Pipeline.Kernels.Cpu;
using Pipeline.Model;

namespace Pipeline.Host.Benchmarks;

/// <summary>
/// Prefill and decode on the bare engine, with llama.cpp's run.mjs method so rows compare: warm-up
/// (16-token prefill + 2 decodes), then R rounds of (reset, prefill P fixed ids with logits for the
/// last one, D greedy decode steps each computing all logits and feeding the argmax back).
/// Afterwards a separate, labelled pass times every backend op (synchronizing after each), which
/// the headline numbers do not include.
/// </summary>
public static class EngineBenchmark
{
    /// <summary>Decode steps of the per-op pass.</summary>
    private const int OpPassDecodeSteps = 4;

    public static JsonObject Run(BenchSettings settings, TextWriter say)
    {
        var result = Common.Header("pipeline", settings);
        double[]? bandwidth = Common.MeasureBandwidth(settings, say);

        var clock = Stopwatch.StartNew();
        var timing = new TimingBackend(new CpuBackend(settings.Threads));
        try
        {
            using var engine = Engine.Load(settings.ModelDirectory, new EngineOptions
            {
                Backend = timing,
                MaxContext = settings.ContextSize,
                MaxBatchRows = Math.Clamp(settings.PromptTokens, 16, 512),
                InitialCacheCapacity = settings.ContextSize,
            });
            double loadS = clock.Elapsed.TotalSeconds;
            timing.HeadRows = engine.VocabSize;
            long weightBytes = WeightBytes.PerDecodedToken(engine.Checkpoint);
            int[] prompt = BenchSettings.PromptIds(settings.PromptTokens, engine.VocabSize);
            say.WriteLine((
                $"model {settings.ModelDirectory}: {engine.Config.NumHiddenLayers} layers, {weightBytes / 1e9:F3} GB of weights per decoded token; " +
                $"load {loadS:F2} s; {timing.Name}; prompt {settings.PromptTokens}, decode {settings.DecodeTokens}, repeats {settings.Repeats}"));

            using var session = engine.OpenSession();
            clock.Restart();
            Once(session, prompt.AsSpan(0, Math.Min(16, prompt.Length)), 2);
            double warmupS = clock.Elapsed.TotalSeconds;

            var runs = new List<RunResult>();
            var cpu0 = CpuTimes.Read();
            for (int r = 0; r < settings.Repeats; r++)
            {
                var run = Once(session, prompt, settings.DecodeTokens);
                runs.Add(run);
                say.WriteLine((
                    $"run {r + 1}: prefill {run.PrefillTokS:F2} tok/s, ttft {run.TtftMs:F1} ms, decode {run.DecodeTokS:F3} tok/s = {weightBytes * run.DecodeTokS / 1e9:F2} GB/s of weights"));
            }
            var cpu1 = CpuTimes.Read();
            var memory = MemoryStatus.Read();

            // The per-op pass: every op synchronized and timed (slower than the headline runs).
            timing.Timing = true;
            session.Reset();
            timing.Reset();
            session.Prefill(prompt);
            var prefillOps = Common.OpsJson(timing.Totals, 1);
            int next = LogitMath.ArgMax(session.Logits);
            timing.Reset();
            for (int i = 0; i < OpPassDecodeSteps; i++)
            {
                session.Decode(next);
                next = LogitMath.ArgMax(session.Logits);
            }
            var decodeOps = Common.OpsJson(timing.Totals, OpPassDecodeSteps);
            timing.Timing = false;

            var decodeTokS = Stat.Of(runs.Select(r => r.DecodeTokS));
            var decodeGBs = Stat.Of(runs.Select(r => r.DecodeTokS * weightBytes / 1e9));
            result["mode"] = "engine";
            result["layers"] = engine.Config.NumHiddenLayers;
            result["backend"] = timing.Name;
            Common.AddCleanliness(result, cpu0, cpu1, say);
            result["loadS"] = loadS;
            result["warmupS"] = warmupS;
            result["weightBytesPerToken"] = weightBytes;
            result["prefillTokS"] = Stat.Of(runs.Select(r => r.PrefillTokS)).ToJson();
            result["decodeTokS"] = decodeTokS.ToJson();
            result["decodeGBs"] = decodeGBs.ToJson();
            result["ttftMs"] = Stat.Of(runs.Select(r => r.TtftMs)).ToJson();
            Common.AddBandwidth(result, bandwidth, settings.Threads, decodeGBs.Median);
            Common.AddMemory(result, memory);
            result["opsPrefill"] = new JsonObject
            {
                ["method"] = $"one {settings.PromptTokens}-token prefill, every op synchronized and timed (not part of the headline numbers)",
                ["ops"] = prefillOps,
            };
            result["opsDecode"] = new JsonObject
            {
                ["method"] = $"{OpPassDecodeSteps} decode steps after a {settings.PromptTokens}-token prefill, every op synchronized and timed; ms per token",
                ["ops"] = decodeOps,
            };
            say.WriteLine((
                $"median of {settings.Repeats}: prefill {Stat.Of(runs.Select(r => r.PrefillTokS)).Median:F2} tok/s, decode {decodeTokS.Median:F3} tok/s " +
                $"(min {decodeTokS.Min:F3}), {decodeGBs.Median:F2} GB/s" +
                (result["decodeFractionOfReadBw"] is { } f ? $" = {100 * (double)f:F1}% of measured read bandwidth" : "")));
            Common.SayMemory(say, memory);
            Common.SayOps(say, "decode, per token", decodeOps);
            return result;
        }
        finally
        {
            timing.Dispose();
        }
    }

    internal readonly record struct RunResult(double PrefillTokS, double TtftMs, double DecodeTokS);

    /// <summary>Reset, prefill <paramref name="prompt"/> (logits of the last position), then <paramref name="decode"/> greedy steps.</summary>
    internal static RunResult Once(Session session, ReadOnlySpan<int> prompt, int decode)
    {
        session.Reset();
        long start = Stopwatch.GetTimestamp();
        session.Prefill(prompt);
        double prefillS = Stopwatch.GetElapsedTime(start).TotalSeconds;
        int next = LogitMath.ArgMax(session.Logits);
        double ttftMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        start = Stopwatch.GetTimestamp();
        for (int i = 0; i < decode; i++)
        {
            session.Decode(next);
            next = LogitMath.ArgMax(session.Logits);
        }
        double decodeS = Stopwatch.GetElapsedTime(start).TotalSeconds;
        return new RunResult(prompt.Length / prefillS, ttftMs, decode / decodeS);
    }
}

/// <summary>Pieces both bench modes share: the header, cleanliness checks, bandwidth, memory and op tables.</summary>
internal static class Common
{
    public static JsonObject Header(string engine, BenchSettings settings) => new()
    {
        ["engine"] = engine,
        ["version"] = typeof(Common).Assembly.GetName().Version?.ToString(),
        ["runtime"] = Environment.Version.ToString(),
        ["cpu"] = MachineInfo.CpuModel(),
        ["cores"] = Environment.ProcessorCount,
        ["model"] = settings.ModelDirectory,
        ["mmap"] = true,
        ["threads"] = settings.Threads,
        ["promptTokens"] = settings.PromptTokens,
        ["decodeTokens"] = settings.DecodeTokens,
        ["repeats"] = settings.Repeats,
    };

    /// <summary>Before the model loads, so the 2 GiB buffer competes with nothing; the peak RSS is reset afterwards.</summary>
    public static double[]? MeasureBandwidth(BenchSettings settings, TextWriter say)
    {
        if (!settings.MeasureBandwidth)
            return null;
        double[] best = ReadBandwidthProbe.Measure(ReadBandwidthProbe.DefaultBytes, settings.Threads);
        for (int t = 0; t < best.Length; t++)
            say.WriteLine(($"threads {t + 1}: read bandwidth best of 5 = {best[t]:F2} GB/s (2.0 GiB buffer)"));
        MemoryStatus.TryResetPeak();
        return best;
    }

    public static void AddCleanliness(JsonObject result, CpuTimes before, CpuTimes after, TextWriter say)
    {
        double other = CpuTimes.OtherProcessCores(before, after);
        long majorFaults = after.MajorFaults - before.MajorFaults;
        if (other > 0.05)
            say.WriteLine(($"WARNING: other processes kept {other:F2} cores busy during the runs: numbers are not clean"));
        if (majorFaults > 0)
            say.WriteLine($"WARNING: {majorFaults} major page faults during the runs: weights were re-read from disk");
        result["otherProcessCores"] = Math.Round(other, 3);
        result["majorFaults"] = majorFaults;
    }

    public static void AddBandwidth(JsonObject result, double[]? bandwidth, int threads, double decodeGBsMedian)
    {
        if (bandwidth is null)
            return;
        var perThreads = new JsonObject();
        for (int t = 0; t < bandwidth.Length; t++)
            perThreads[(t + 1).ToString(CultureInfo.InvariantCulture)] = bandwidth[t];
        result["readBandwidthGBs"] = perThreads;
        result["readGBs"] = bandwidth[threads - 1];
        result["decodeFractionOfReadBw"] = decodeGBsMedian / bandwidth[threads - 1];
    }

    public static void AddMemory(JsonObject result, MemoryStatus memory)
    {
        result["rssBytes"] = memory.Rss;
        result["peakRssBytes"] = memory.PeakRss;
        result["rssAnonBytes"] = memory.RssAnon;
        result["rssFileBytes"] = memory.RssFile;
    }

    public static void SayMemory(TextWriter say, MemoryStatus memory) =>
        say.WriteLine((
            $"RSS {memory.Rss / (double)(1 << 30):F2} GiB (anon {memory.RssAnon / (double)(1 << 30):F2}, file-mapped {memory.RssFile / (double)(1 << 30):F2}), peak {memory.PeakRss / (double)(1 << 30):F2} GiB"));

    /// <summary>Per op kind: calls, ms (per pass divided by <paramref name="per"/>), GB/s, GFLOP/s.</summary>
    public static JsonArray OpsJson(IReadOnlyList<OpTotals> totals, int per) =>
        [.. totals.Select(t => (JsonNode)new JsonObject
        {
            ["op"] = t.Op,
            ["calls"] = t.Calls / per,
            ["ms"] = t.Seconds * 1e3 / per,
            ["GBs"] = t.GBs,
            ["GFLOPs"] = t.GFlops,
        })];

    public static void SayOps(TextWriter say, string title, JsonArray ops)
    {
        say.WriteLine($"ops ({title}; separate synchronized pass):");
        foreach (var op in ops)
        {
            say.WriteLine((
                $"  {(string)op!["op"]!,-16} {(long)op["calls"]!,5} calls {(double)op["ms"]!,9:F2} ms {(double)op["GBs"]!,8:F2} GB/s {(double)op["GFLOPs"]!,9:F2} GFLOP/s"));
        }
    }
}
