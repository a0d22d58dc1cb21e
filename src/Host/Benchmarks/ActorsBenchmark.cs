using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Text;
using System.Text.Json.Nodes;
using Akka.Actor;
using Pipeline.Actors;
using Pipeline.Actors.Execution;
using Pipeline.Actors.Hosting;
using Pipeline.Kernels.Cpu;

namespace Pipeline.Host.Benchmarks;

/// <summary>
/// Decode through the actor pipeline: N sessions each run one turn (a user message of about P
/// tokens after the chat template, greedy, D tokens after the first) at the same time; every round
/// uses fresh sessions, so nothing is cached. The turn path is the real one (template, tokenizer
/// actor, executors, sampler, detokenizer), so the prompt is text rather than fixed ids. Per round:
/// aggregate decode tok/s = the sum of the sessions' own decode rates (they decode side by side),
/// and completed tokens over the round's wall time.
/// </summary>
public static class ActorsBenchmark
{
    internal const string Hocon = """
        akka.loglevel = WARNING
        akka.stdout-loglevel = WARNING
        """;

    public static JsonObject Run(BenchSettings settings, TextWriter say)
    {
        var result = Common.Header("pipeline-actors", settings);
        double[]? bandwidth = Common.MeasureBandwidth(settings, say);

        var clock = Stopwatch.StartNew();
        using var model = PipelineModel.Load(settings.ModelDirectory, new CpuBackend(settings.Threads), settings.Threads);
        long weightBytes = WeightBytes.PerDecodedToken(model.Checkpoint);
        var system = ActorSystem.Create("bench", PipelineConfig.Load(Hocon + $"\npipeline.max-context = {settings.ContextSize + 64}"));
        try
        {
            var client = PipelineClient.Start(system, model);
            double loadS = clock.Elapsed.TotalSeconds;
            // The Gemma-4 template adds 13 tokens around the user's text; " hello" is one token.
            string prompt = new StringBuilder().Insert(0, " hello", Math.Max(1, settings.PromptTokens - 13)).ToString();
            say.WriteLine((
                $"model {settings.ModelDirectory}: {model.Text.NumHiddenLayers} layers, {weightBytes / 1e9:F3} GB of weights per decoded token; " +
                $"load {loadS:F2} s; {model.Backend.Name}; actors, {settings.Sessions} session(s); prompt ~{settings.PromptTokens}, decode {settings.DecodeTokens}, repeats {settings.Repeats}"));

            clock.Restart();
            Round(client, "warmup", 1, " hello hello hello hello hello hello hello hello", 2);
            double warmupS = clock.Elapsed.TotalSeconds;

            var rounds = new List<RoundResult>();
            using var passes = new ExecutorPasses();
            var cpu0 = CpuTimes.Read();
            for (int r = 0; r < settings.Repeats; r++)
            {
                var round = Round(client, $"r{r}", settings.Sessions, prompt, settings.DecodeTokens);
                rounds.Add(round);
                say.WriteLine((
                    $"run {r + 1}: {settings.Sessions} session(s): decode {round.AggregateDecodeTokS:F3} tok/s aggregate ({round.MedianSessionDecodeTokS:F3} per session), " +
                    $"{round.CompletedTokS:F3} tok/s over the wall, prefill {round.MedianPrefillTokS:F2} tok/s, ttft {round.MedianTtftMs:F1} ms, " +
                    $"{round.CompletionTokens} tokens, finish {string.Join(",", round.Finishes)}"));
            }
            var cpu1 = CpuTimes.Read();
            var memory = MemoryStatus.Read();

            var aggregate = Stat.Of(rounds.Select(r => r.AggregateDecodeTokS));
            var decodeGBs = Stat.Of(rounds.Select(r => r.AggregateDecodeTokS * weightBytes / 1e9));
            result["mode"] = "actors";
            result["sessions"] = settings.Sessions;
            result["layers"] = model.Text.NumHiddenLayers;
            result["backend"] = model.Backend.Name;
            result["layerGroups"] = client.Settings.ResolveLayerGroups(model.Text.NumHiddenLayers).Count;
            result["batching"] = client.Settings.Batching;
            Common.AddCleanliness(result, cpu0, cpu1, say);
            result["loadS"] = loadS;
            result["warmupS"] = warmupS;
            result["weightBytesPerToken"] = weightBytes;
            result["actualPromptTokens"] = rounds.Count > 0 ? rounds[0].PromptTokens : 0;
            result["prefillTokS"] = Stat.Of(rounds.Select(r => r.MedianPrefillTokS)).ToJson();
            result["decodeTokS"] = aggregate.ToJson();
            result["sessionDecodeTokS"] = Stat.Of(rounds.Select(r => r.MedianSessionDecodeTokS)).ToJson();
            result["completedTokS"] = Stat.Of(rounds.Select(r => r.CompletedTokS)).ToJson();
            result["decodeGBs"] = decodeGBs.ToJson();
            result["ttftMs"] = Stat.Of(rounds.Select(r => r.MedianTtftMs)).ToJson();
            result["executorPasses"] = passes.Passes;
            result["meanStepsPerPass"] = passes.MeanSteps;
            result["meanRowsPerPass"] = passes.MeanRows;
            result["meanDecodePassMs"] = passes.MeanDecodePassMs;
            result["finishReasons"] = new JsonArray([.. rounds.SelectMany(r => r.Finishes).Distinct().Select(f => (JsonNode)f)]);
            Common.AddBandwidth(result, bandwidth, settings.Threads, decodeGBs.Median);
            Common.AddMemory(result, memory);
            say.WriteLine((
                $"median of {settings.Repeats}: decode {aggregate.Median:F3} tok/s aggregate over {settings.Sessions} session(s) (min {aggregate.Min:F3}), {decodeGBs.Median:F2} GB/s of weights"));
            say.WriteLine($"executor passes {passes.Passes}: {passes.MeanSteps:F2} steps, {passes.MeanRows:F2} rows and {passes.MeanDecodePassMs:F1} ms of compute per decode pass on average");
            Common.SayMemory(say, memory);
            return result;
        }
        finally
        {
            system.Terminate().Wait(TimeSpan.FromSeconds(30));
            system.Dispose();
        }
    }

    internal sealed record RoundResult(
        double AggregateDecodeTokS, double MedianSessionDecodeTokS, double CompletedTokS, double MedianPrefillTokS,
        double MedianTtftMs, int PromptTokens, int CompletionTokens, IReadOnlyList<string> Finishes);

    internal static RoundResult Round(PipelineClient client, string round, int sessions, string prompt, int decodeTokens)
    {
        var options = new GenerationOptions { Temperature = 0, Seed = 1, MaxNewTokens = decodeTokens + 1 };
        var clock = Stopwatch.StartNew();
        var turns = Enumerable.Range(0, sessions).Select(i => client.RunTurnAsync(new TurnRequest
        {
            SessionId = $"bench-{round}-{i}",
            Messages = [ChatMessage.FromUser(prompt)],
            Options = options,
        })).ToArray();
        var results = Task.WhenAll(turns).GetAwaiter().GetResult();
        double wallS = clock.Elapsed.TotalSeconds;
        foreach (var (turn, i) in results.Select((t, i) => (t, i)))
        {
            if (turn.Finished.Reason == FinishReason.Error)
                throw new InvalidOperationException($"bench turn of session {i} failed: {turn.Finished.Error}");
            client.EndSessionAsync($"bench-{round}-{i}").GetAwaiter().GetResult();
        }
        var finished = results.Select(t => t.Finished).ToArray();
        int completion = finished.Sum(f => f.Usage.CompletionTokens);
        return new RoundResult(
            finished.Sum(f => f.Timings.DecodeTokensPerSecond),
            Stat.Of(finished.Select(f => f.Timings.DecodeTokensPerSecond)).Median,
            completion / wallS,
            Stat.Of(finished.Select(f => f.Timings.PrefillTokensPerSecond)).Median,
            Stat.Of(finished.Select(f => f.Timings.TimeToFirstTokenMs)).Median,
            finished[0].Usage.PromptTokens,
            completion,
            [.. finished.Select(f => f.Reason.ToString().ToLowerInvariant()).Distinct()]);
    }

    /// <summary>
    /// Over runs of consecutive decode-only passes (pass numbers one apart) of exactly <paramref name="sessions"/>
    /// steps, steps per second from one pass's end to the next (compute plus the messages between passes).
    /// Passes mixed with prefill rows are not in <paramref name="ends"/>; passes with fewer sessions (staggered
    /// starts) are skipped. 0 when no two such passes follow each other.
    /// </summary>
    public static double SteadyRate(IReadOnlyList<DecodePassEnd> ends, int sessions)
    {
        double seconds = 0;
        long intervals = 0;
        for (int i = 1; i < ends.Count; i++)
        {
            var (previous, current) = (ends[i - 1], ends[i]);
            if (current.Steps != sessions || previous.Steps != sessions || current.Pass != previous.Pass + 1)
                continue;
            seconds += current.EndedAtSeconds - previous.EndedAtSeconds;
            intervals++;
        }
        return seconds > 0 ? sessions * intervals / seconds : 0;
    }

    /// <summary>A decode-only executor pass: its number among all passes, when it ended, and its steps (one per session).</summary>
    public readonly record struct DecodePassEnd(long Pass, double EndedAtSeconds, int Steps);

    /// <summary>
    /// Listens to the executors' batch-size, batch-rows and pass-duration histograms (meter "Pipeline.Actors")
    /// while it lives. An executor records the three in that order on its own thread, so a pass's duration is
    /// matched with its size through thread-static fields; passes with one row per step are decode passes.
    /// </summary>
    internal sealed class ExecutorPasses : IDisposable
    {
        [ThreadStatic] private static int t_steps;
        [ThreadStatic] private static int t_rows;

        private readonly MeterListener _listener = new();
        private long _passes, _steps, _rows, _decodePasses;
        private double _decodePassMs;
        private readonly List<(long Pass, long EndedAt, int Steps)> _decodePassEnds = [];

        public ExecutorPasses()
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == "Pipeline.Actors" && instrument.Name is "pipeline.executor.batch_size" or "pipeline.executor.batch_rows" or "pipeline.executor.pass_duration")
                    listener.EnableMeasurementEvents(instrument);
            };
            _listener.SetMeasurementEventCallback<int>((instrument, value, _, _) =>
            {
                if (instrument.Name == "pipeline.executor.batch_size")
                {
                    t_steps = value;
                    Interlocked.Increment(ref _passes);
                    Interlocked.Add(ref _steps, value);
                }
                else
                {
                    t_rows = value;
                    Interlocked.Add(ref _rows, value);
                }
            });
            _listener.SetMeasurementEventCallback<double>((_, value, _, _) =>
            {
                if (t_rows != t_steps)
                    return;
                long now = Stopwatch.GetTimestamp();
                lock (_listener)
                {
                    _decodePasses++;
                    _decodePassMs += value;
                    _decodePassEnds.Add((Interlocked.Read(ref _passes), now, t_steps));
                }
            });
            _listener.Start();
        }

        public long Passes => Interlocked.Read(ref _passes);
        public double MeanSteps => Passes > 0 ? (double)Interlocked.Read(ref _steps) / Passes : 0;
        public double MeanRows => Passes > 0 ? (double)Interlocked.Read(ref _rows) / Passes : 0;

        /// <summary>Mean compute time of a decode-only pass (one row per step; all layer groups pooled), ms.</summary>
        public double MeanDecodePassMs
        {
            get
            {
                lock (_listener)
                    return _decodePasses > 0 ? _decodePassMs / _decodePasses : 0;
            }
        }

        /// <summary>Decode tok/s while exactly <paramref name="sessions"/> sessions decode together (<see cref="SteadyRate"/>).</summary>
        public double SteadyDecodeTokS(int sessions)
        {
            lock (_listener)
                return SteadyRate([.. _decodePassEnds.Select(e => new DecodePassEnd(e.Pass, e.EndedAt / (double)Stopwatch.Frequency, e.Steps))], sessions);
        }


        public void Dispose() => _listener.Dispose();
    }
}
