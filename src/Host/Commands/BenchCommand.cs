using System.CommandLine;
using Pipeline.Host.Benchmarks;
using Pipeline.Model.Checkpoint;
using Pipeline.Model.TestModels;

namespace Pipeline.Host.Commands;

/// <summary>
/// `pipeline bench [--model DIR] [--threads N] [--prompt-tokens P] [--decode-tokens D] [--repeats R]
/// [--mode engine|actors|interleaved] [--sessions N] [--no-bandwidth] [--json]`: prefill and decode speed with
/// the method of llama.cpp's run.mjs (see docs/PERFORMANCE.md), per-op GB/s and GFLOP/s, RSS and the
/// machine's read bandwidth. The last line printed is always one JSON object; --json prints only it.
/// </summary>
public static class BenchCommand
{
    public static Command Create()
    {
        var model = new Option<DirectoryInfo?>("--model") { Description = "checkpoint folder; default: the built-in tiny test model" };
        var threads = new Option<int>("--threads") { Description = "CPU threads (0 = all cores)", DefaultValueFactory = _ => 0 };
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "prompt length P", DefaultValueFactory = _ => 128 };
        var decodeTokens = new Option<int>("--decode-tokens") { Description = "decode steps D per run", DefaultValueFactory = _ => 32 };
        var repeats = new Option<int>("--repeats") { Description = "timed runs R (median, min, max reported)", DefaultValueFactory = _ => 3 };
        var mode = new Option<string>("--mode") { Description = "engine (bare engine), actors (through the actor pipeline) or interleaved (engine, actors x1 and actors xN in turn in one process: the actors' overhead and N-session scaling as per-round ratios)", DefaultValueFactory = _ => "engine" };
        mode.AcceptOnlyFromAmong("engine", "actors", "interleaved");
        var sessions = new Option<int>("--sessions") { Description = "actors and interleaved modes: concurrent sessions, each decoding D tokens", DefaultValueFactory = _ => 1 };
        var noBandwidth = new Option<bool>("--no-bandwidth") { Description = "skip the 2 GiB read-bandwidth probe" };
        var json = new Option<bool>("--json") { Description = "print only the JSON result line" };

        var command = new Command("bench", "Measure prefill/decode tok/s, per-op throughput, RSS and read bandwidth (llama.cpp run.mjs method).")
        {
            model, threads, promptTokens, decodeTokens, repeats, mode, sessions, noBandwidth, json,
        };
        command.SetAction(parse =>
        {
            var output = parse.InvocationConfiguration.Output;
            var error = parse.InvocationConfiguration.Error;
            try
            {
                Validate(parse.GetValue(threads), parse.GetValue(promptTokens), parse.GetValue(decodeTokens),
                    parse.GetValue(repeats), parse.GetValue(sessions), parse.GetValue(mode)!);
                string directory = BuiltInModel.Resolve(parse.GetValue(model), error);
                int chosenThreads = parse.GetValue(threads);
                var settings = new BenchSettings(
                    directory,
                    chosenThreads == 0 ? Environment.ProcessorCount : chosenThreads,
                    parse.GetValue(promptTokens),
                    parse.GetValue(decodeTokens),
                    parse.GetValue(repeats),
                    !parse.GetValue(noBandwidth),
                    parse.GetValue(sessions));
                var say = parse.GetValue(json) ? TextWriter.Null : output;
                var result = parse.GetValue(mode) switch
                {
                    "actors" => ActorsBenchmark.Run(settings, say),
                    "interleaved" => InterleavedBenchmark.Run(settings, say),
                    _ => EngineBenchmark.Run(settings, say),
                };
                output.WriteLine(result.ToJsonString());
                return 0;
            }
            catch (Exception e) when (e is ArgumentException or CheckpointFormatException or IOException or NotSupportedException or InvalidOperationException)
            {
                error.WriteLine($"pipeline bench: {e.Message}");
                return 1;
            }
        });
        return command;
    }

    private static void Validate(int threads, int promptTokens, int decodeTokens, int repeats, int sessions, string mode)
    {
        if (threads < 0)
            throw new ArgumentException($"--threads must be 0 (all cores) or positive, got {threads}");
        if (promptTokens < 1)
            throw new ArgumentException($"--prompt-tokens must be at least 1, got {promptTokens}");
        if (decodeTokens < 1)
            throw new ArgumentException($"--decode-tokens must be at least 1, got {decodeTokens}");
        if (repeats < 1)
            throw new ArgumentException($"--repeats must be at least 1, got {repeats}");
        if (sessions < 1)
            throw new ArgumentException($"--sessions must be at least 1, got {sessions}");
        if (sessions > 1 && mode == "engine")
            throw new ArgumentException("--sessions applies to --mode actors and interleaved only (the bare engine runs one session)");
    }
}
