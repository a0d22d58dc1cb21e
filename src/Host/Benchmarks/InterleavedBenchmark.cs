using System.Diagnostics;
using System.Runtime;
using System.Text;
using System.Text.Json.Nodes;
using Akka.Actor;
using Pipeline.Actors;
using Pipeline.Actors.Execution;
using Pipeline.Actors.Hosting;
using Pipeline.Kernels.Cpu;
using Pipeline.Model;

namespace Pipeline.Host.Benchmarks;

/// <summary>
/// The bare engine, the actors with one session and the actors with N sessions, interleaved round by
/// round in ONE process over ONE backend (same worker threads, same mapped weights): on this VM two
/// processes running the same thing differ by up to ~15% in decode speed, far above the 2% the actors
/// may cost, while runs seconds apart in one process differ little. Each round is a triple (the order
/// flips every round, so a drift in machine speed falls on both sides); the results are per-round
/// ratios: overhead = engine / actors x1 - 1, scaling = actors xN / actors x1, with their median.
/// Decode tok/s is counted alike on both sides: D tokens after the first, from the first token to the last.
/// The N-session aggregate (sum of the sessions' own rates) also counts the passes where some sessions
/// wait for others' prefills; the steady rate counts only the passes where all N decode together
/// (<see cref="ActorsBenchmark.ExecutorPasses.SteadyDecodeTokS"/>), and both are reported.
/// </summary>
public static class InterleavedBenchmark
{
    /// <summary>A warm-up round that compiled at most this many methods leaves the JIT settled.</summary>
    private const int JitSettledMethods = 10;

    /// <summary>Warm-up rounds at most (a JIT that never settles must not hang the benchmark).</summary>
    private const int MaxWarmupRounds = 8;

    public static JsonObject Run(BenchSettings settings, TextWriter say)
    {
        var result = Common.Header("pipeline-interleaved", settings);
        double[]? bandwidth = Common.MeasureBandwidth(settings, say);

        var clock = Stopwatch.StartNew();
        using var backend = new CpuBackend(settings.Threads);
        using var model = PipelineModel.Load(settings.ModelDirectory, backend, settings.Threads);
        using var engine = Engine.Load(settings.ModelDirectory, new EngineOptions
        {
            Backend = backend,
            MaxContext = settings.ContextSize + 64,
            MaxBatchRows = 64,
        });
        long weightBytes = WeightBytes.PerDecodedToken(model.Checkpoint);
        var system = ActorSystem.Create("bench", PipelineConfig.Load(ActorsBenchmark.Hocon + $"\npipeline.max-context = {settings.ContextSize + 64}"));
        try
        {
            var client = PipelineClient.Start(system, model);
            double loadS = clock.Elapsed.TotalSeconds;
            string prompt = new StringBuilder().Insert(0, " hello", Math.Max(1, settings.PromptTokens - 13)).ToString();
            say.WriteLine((
                $"model {settings.ModelDirectory}: {model.Text.NumHiddenLayers} layers, {weightBytes / 1e9:F3} GB of weights per decoded token; " +
                $"load {loadS:F2} s; {backend.Name}; engine / actors x1 / actors x{settings.Sessions} interleaved in one process; " +
                $"prompt ~{settings.PromptTokens}, decode {settings.DecodeTokens}, rounds {settings.Repeats}"));

            // Warm-up of both paths; the actors' prompt length (after the chat template) sizes the engine's prompt.
            clock.Restart();
            var warm = ActorsBenchmark.Round(client, "warmup", 1, prompt, 2);
            int[] enginePrompt = BenchSettings.PromptIds(warm.PromptTokens, engine.VocabSize);
            using var session = engine.OpenSession();
            EngineBenchmark.Once(session, enginePrompt, 2);
            // Then whole rounds of all three until the JIT settles: the actors' code reaches tier 1 later than the
            // engine's (fewer calls per token), and the background compiler takes a core from the kernel threads
            // meanwhile (perf: ~1.6% of a core during the actors' passes over the first 100 s of a run).
            int warmupRounds = 0;
            long compiledInWarmupRound;
            do
            {
                long before = JitInfo.GetCompiledMethodCount();
                EngineBenchmark.Once(session, enginePrompt, settings.DecodeTokens);
                ActorsBenchmark.Round(client, $"warmup{warmupRounds}-one", 1, prompt, settings.DecodeTokens);
                if (settings.Sessions > 1)
                    ActorsBenchmark.Round(client, $"warmup{warmupRounds}-many", settings.Sessions, prompt, settings.DecodeTokens);
                compiledInWarmupRound = JitInfo.GetCompiledMethodCount() - before;
                warmupRounds++;
            }
            while (compiledInWarmupRound > JitSettledMethods && warmupRounds < MaxWarmupRounds);
            double warmupS = clock.Elapsed.TotalSeconds;
            say.WriteLine($"warm-up: {warmupRounds} round(s) of all three, {compiledInWarmupRound} method(s) compiled in the last, {warmupS:F1} s");
            long compiledBeforeRounds = JitInfo.GetCompiledMethodCount();

            var engineTokS = new List<double>();
            var actorsTokS = new List<double>();
            var manyTokS = new List<double>();
            var oneSteadyTokS = new List<double>();
            var manySteadyTokS = new List<double>();
            var enginePassMs = new List<double>();
            var actorsPassMs = new List<double>();
            var cpu0 = CpuTimes.Read();
            int gen0 = GC.CollectionCount(0), gen2 = GC.CollectionCount(2);
            var gcPause = GC.GetTotalPauseDuration();
            for (int r = 0; r < settings.Repeats; r++)
            {
                double engineRate = 0, manyRate = 0, oneSteady = 0, manySteady = 0;
                ActorsBenchmark.RoundResult? one = null;
                double onePassMs = 0;
                void Engine() => engineRate = EngineBenchmark.Once(session, enginePrompt, settings.DecodeTokens).DecodeTokS;
                void One()
                {
                    using var passes = new ActorsBenchmark.ExecutorPasses();
                    one = ActorsBenchmark.Round(client, $"r{r}-one", 1, prompt, settings.DecodeTokens);
                    onePassMs = passes.MeanDecodePassMs;
                    oneSteady = passes.SteadyDecodeTokS(1);
                }
                void Many()
                {
                    if (settings.Sessions == 1)
                        return;
                    using var passes = new ActorsBenchmark.ExecutorPasses();
                    manyRate = ActorsBenchmark.Round(client, $"r{r}-many", settings.Sessions, prompt, settings.DecodeTokens).AggregateDecodeTokS;
                    manySteady = passes.SteadyDecodeTokS(settings.Sessions);
                }
                if (r % 2 == 0)
                {
                    Engine();
                    One();
                    Many();
                }
                else
                {
                    Many();
                    One();
                    Engine();
                }
                engineTokS.Add(engineRate);
                actorsTokS.Add(one!.AggregateDecodeTokS);
                manyTokS.Add(manyRate);
                oneSteadyTokS.Add(oneSteady);
                manySteadyTokS.Add(manySteady);
                enginePassMs.Add(1000 / engineRate);
                actorsPassMs.Add(onePassMs);
                say.WriteLine((
                    $"round {r + 1}: engine {engineRate:F3} tok/s, actors x1 {one.AggregateDecodeTokS:F3} tok/s (compute {onePassMs:F1} ms per pass, step {1000 / one.AggregateDecodeTokS:F1} ms), " +
                    $"overhead {100 * (engineRate / one.AggregateDecodeTokS - 1):F1}%" +
                    (settings.Sessions > 1
                        ? $"; actors x{settings.Sessions} {manyRate:F3} tok/s = {manyRate / one.AggregateDecodeTokS:F2}x; " +
                          $"all decoding together: x{settings.Sessions} {manySteady:F3} tok/s / x1 {oneSteady:F3} tok/s = {manySteady / oneSteady:F2}x"
                        : "")));
            }
            var cpu1 = CpuTimes.Read();
            long compiledDuringRounds = JitInfo.GetCompiledMethodCount() - compiledBeforeRounds;
            // Garbage collections pause the kernel threads too: their count and pause time during the rounds.
            result["gcCollections"] = new JsonObject { ["gen0"] = GC.CollectionCount(0) - gen0, ["gen2"] = GC.CollectionCount(2) - gen2 };
            result["gcPauseMs"] = (GC.GetTotalPauseDuration() - gcPause).TotalMilliseconds;
            var memory = MemoryStatus.Read();

            var overheads = engineTokS.Zip(actorsTokS, (e, a) => e / a - 1).ToArray();
            var overhead = Stat.Of(overheads);
            result["mode"] = "interleaved";
            result["sessions"] = settings.Sessions;
            result["layers"] = model.Text.NumHiddenLayers;
            result["backend"] = backend.Name;
            Common.AddCleanliness(result, cpu0, cpu1, say);
            result["loadS"] = loadS;
            result["warmupS"] = warmupS;
            result["warmupRounds"] = warmupRounds;
            result["jitCompiledInLastWarmupRound"] = compiledInWarmupRound;
            result["jitCompiledDuringRounds"] = compiledDuringRounds;
            result["weightBytesPerToken"] = weightBytes;
            result["actualPromptTokens"] = warm.PromptTokens;
            result["engineDecodeTokS"] = Stat.Of(engineTokS).ToJson();
            result["actorsDecodeTokS"] = Stat.Of(actorsTokS).ToJson();
            result["overhead"] = overhead.ToJson();
            result["overheadMean"] = overheads.Average();
            result["overheadPerRound"] = new JsonArray([.. overheads.Select(o => (JsonNode)o)]);
            result["engineStepMs"] = Stat.Of(enginePassMs).ToJson();
            result["actorsDecodePassMs"] = Stat.Of(actorsPassMs).ToJson();
            if (settings.Sessions > 1)
            {
                var scaling = Stat.Of(manyTokS.Zip(actorsTokS, (m, a) => m / a));
                var steadyScaling = Stat.Of(manySteadyTokS.Zip(oneSteadyTokS, (m, a) => m / a));
                result["manyDecodeTokS"] = Stat.Of(manyTokS).ToJson();
                result["scaling"] = scaling.ToJson();
                result["manySteadyDecodeTokS"] = Stat.Of(manySteadyTokS).ToJson();
                result["oneSteadyDecodeTokS"] = Stat.Of(oneSteadyTokS).ToJson();
                result["steadyScaling"] = steadyScaling.ToJson();
                say.WriteLine($"median of {settings.Repeats} rounds: actors x{settings.Sessions} / actors x1 = {scaling.Median:F2}x (min {scaling.Min:F2}, max {scaling.Max:F2})");
                say.WriteLine((
                    $"median of {settings.Repeats} rounds, while all {settings.Sessions} sessions decode together: x{settings.Sessions} / x1 = " +
                    $"{steadyScaling.Median:F2}x (min {steadyScaling.Min:F2}, max {steadyScaling.Max:F2})"));
            }
            Common.AddBandwidth(result, bandwidth, settings.Threads, Stat.Of(engineTokS).Median * weightBytes / 1e9);
            Common.AddMemory(result, memory);
            say.WriteLine((
                $"median of {settings.Repeats} rounds: overhead of the actors over the bare engine {100 * overhead.Median:F2}% " +
                $"(mean {100 * overheads.Average():F2}%, min {100 * overhead.Min:F2}%, max {100 * overhead.Max:F2}%)"));
            Common.SayMemory(say, memory);
            return result;
        }
        finally
        {
            system.Terminate().Wait(TimeSpan.FromSeconds(30));
            system.Dispose();
        }
    }
}
