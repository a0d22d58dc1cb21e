using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Pipeline.Model.TestModels;

namespace Pipeline.Host.Commands;

/// <summary>`pipeline make-test-model`: writes a deterministic random Gemma-4 checkpoint folder.</summary>
public static class MakeTestModelCommand
{
    public static Command Create()
    {
        var preset = new Option<string>("--preset")
        {
            Description = "tiny (hidden 64, 6 layers), mid (hidden 256, 6 layers, vocab 1024), small (31B layer shapes, 6 layers) or 31b (all 60 layers, ~17.4 GB)",
            Required = true,
        };
        preset.AcceptOnlyFromAmong([.. TestModelPreset.All.Select(p => p.Name)]);
        var quant = new Option<string>("--quant")
        {
            Description = "ud-q2kxl (MLX layout, mixed 2/3/4-bit) or bf16 (Hugging Face layout)",
            DefaultValueFactory = _ => "ud-q2kxl",
        };
        quant.AcceptOnlyFromAmong("ud-q2kxl", "bf16");
        var seed = new Option<ulong>("--seed") { Description = "random seed; the same seed gives the same bytes", DefaultValueFactory = _ => 0 };
        var output = new Option<DirectoryInfo>("--out") { Description = "output folder (created; must be new or empty)" };
        var layers = new Option<int?>("--layers") { Description = "layer count instead of the preset's (a multiple of its sliding:full period, 6 for small/31b)" };
        var dryRun = new Option<bool>("--dry-run") { Description = "list tensors (name, dtype, shape, bytes) and total size; write nothing" };

        var command = new Command("make-test-model", "Write a deterministic random Gemma-4 checkpoint with the real tokenizer and chat template.")
        {
            preset, quant, seed, output, layers, dryRun,
        };
        command.Validators.Add(result =>
        {
            if (!result.GetValue(dryRun) && result.GetValue(output) is null)
                result.AddError("--out is required unless --dry-run is given");
        });
        command.SetAction(async (parse, cancellation) =>
        {
            var chosenPreset = TestModelPreset.Parse(parse.GetValue(preset)!);
            if (parse.GetValue(layers) is { } layerCount)
            {
                try
                {
                    chosenPreset = chosenPreset.WithLayers(layerCount);
                }
                catch (ArgumentException e)
                {
                    Console.Error.WriteLine($"make-test-model: {e.Message}");
                    return 1;
                }
            }
            var chosenQuant = TestModelQuants.Parse(parse.GetValue(quant)!);
            if (parse.GetValue(dryRun))
            {
                foreach (string line in TestModelPlan.Create(chosenPreset, chosenQuant).Describe())
                    Console.WriteLine(line);
                return 0;
            }

            string directory = parse.GetValue(output)!.FullName;
            ulong chosenSeed = parse.GetValue(seed);
            var bar = new ProgressBar();
            var clock = Stopwatch.StartNew();
            try
            {
                // On a worker thread so that Ctrl+C finds a running task to cancel and wait for (the
                // generator then deletes what it wrote) instead of ending the process at once.
                var plan = await Task.Run(() => TestModelGenerator.Generate(
                    chosenPreset, chosenQuant, chosenSeed, directory, bar.Report, cancellation));
                bar.Finish();
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"wrote {chosenPreset.Name} {TestModelQuants.Name(chosenQuant)} (seed {chosenSeed}) to {directory}: " +
                    $"{plan.TotalBytes / 1e9:F3} GB of tensors in {plan.Shards.Count} file(s), {clock.Elapsed.TotalSeconds:F1} s"));
                return 0;
            }
            catch (OperationCanceledException)
            {
                bar.Finish();
                Console.Error.WriteLine($"cancelled; removed the partial output from {directory}");
                return 130;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                bar.Finish();
                Console.Error.WriteLine($"make-test-model: {ex.Message}");
                return 1;
            }
        });
        return command;
    }

    /// <summary>A one-line progress bar on stderr, redrawn at most every 200 ms.</summary>
    private sealed class ProgressBar
    {
        private const int Width = 30;
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private long _lastDrawMs = -1000;
        private bool _drawn;

        public void Report(long written, long total)
        {
            long now = _clock.ElapsedMilliseconds;
            if (now - _lastDrawMs < 200 && written < total)
                return;
            _lastDrawMs = now;
            _drawn = true;
            double fraction = total == 0 ? 1 : (double)written / total;
            int filled = (int)(fraction * Width);
            double seconds = Math.Max(now / 1000.0, 1e-3);
            double rate = written / seconds;
            double eta = rate > 0 ? (total - written) / rate : 0;
            Console.Error.Write(string.Create(CultureInfo.InvariantCulture,
                $"\r[{new string('#', filled)}{new string('.', Width - filled)}] {fraction * 100,5:F1}%  " +
                $"{written / 1e9:F2}/{total / 1e9:F2} GB  {rate / 1e6:F0} MB/s  ETA {TimeSpan.FromSeconds(eta):hh\\:mm\\:ss} "));
        }

        public void Finish()
        {
            if (_drawn)
                Console.Error.WriteLine();
        }
    }
}
