using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Pipeline.Kernels.Cpu;
using Pipeline.Model.Checkpoint;
using Pipeline.Model.TestModels;
using Pipeline.Model.Vision;

namespace Pipeline.Host.Commands;

/// <summary>
/// `pipeline bench-vision`: times the vision tower and projector for one image on Gemma-4-31B's vision
/// shapes (27 layers, hidden 1152, bf16 weights, projection to 5376). The weights are random: a
/// checkpoint holding only a token text model beside the full-size tower is generated into a
/// temporary folder (about 1.2 GB) and removed afterwards. Not a test: a measurement to run by hand.
/// </summary>
public static class BenchVisionCommand
{
    /// <summary>The 31B's text width (for the projector) with a one-layer, narrow text model nobody runs.</summary>
    private static readonly TestModelPreset s_shapes = new(
        "vision-bench", HiddenSize: 5376, NumLayers: 1, IntermediateSize: 64, NumHeads: 1, NumKvHeads: 1, HeadDim: 64,
        NumGlobalKvHeads: 1, GlobalHeadDim: 64, SlidingWindow: 16, FullAttentionPeriod: 2, VocabSize: 256, MaxPositionEmbeddings: 1024)
    { Vision = TestVisionPreset.Gemma31B };

    public static Command Create()
    {
        var budget = new Option<int>("--budget") { Description = "soft-token budget of the image: 70, 140, 280, 560 or 1120", DefaultValueFactory = _ => Gemma4ImageProcessor.DefaultBudget };
        budget.AcceptOnlyFromAmong([.. Gemma4ImageProcessor.SupportedBudgets.Select(b => b.ToString(CultureInfo.InvariantCulture))]);
        var runs = new Option<int>("--runs") { Description = "timed runs after one warm-up run; the minimum is reported", DefaultValueFactory = _ => 1 };
        var threads = new Option<int>("--threads") { Description = "CPU threads (0 = all cores)", DefaultValueFactory = _ => 0 };
        var command = new Command("bench-vision", "Time the vision tower for one image on Gemma-4-31B's vision shapes (random bf16 weights in a temporary folder).")
        {
            budget, runs, threads,
        };
        command.Validators.Add(result =>
        {
            if (result.GetValue(runs) < 1)
                result.AddError("--runs must be at least 1");
        });
        command.SetAction(parse =>
        {
            int softTokens = parse.GetValue(budget);
            string directory = Path.Combine(Path.GetTempPath(), "pipeline-bench-vision-" + Guid.NewGuid().ToString("N"));
            try
            {
                var clock = Stopwatch.StartNew();
                TestModelGenerator.Generate(s_shapes, TestModelQuant.UdQ2Kxl, seed: 1, directory);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"generated the 31B vision tower (random bf16) in {clock.Elapsed.TotalSeconds:F1} s"));

                using var checkpoint = Gemma4Checkpoint.Open(directory);
                using var backend = new CpuBackend(parse.GetValue(threads));
                using var encoder = new Gemma4VisionEncoder(backend, checkpoint, softTokens);
                var image = Gemma4ImageProcessor.Preprocess(FullBudgetImage(softTokens), checkpoint.Vision!, softTokens);
                Console.WriteLine($"image {image.Width}x{image.Height}: {image.PatchCount} patches, {image.SoftTokens} soft tokens; {checkpoint.Vision!.NumHiddenLayers} layers, hidden {checkpoint.Vision.HiddenSize}, {backend.Threads} threads");

                var times = new List<double>();
                for (int run = 0; run <= parse.GetValue(runs); run++)
                {
                    clock.Restart();
                    var rows = encoder.EncodeToHost(image);
                    double ms = clock.Elapsed.TotalMilliseconds;
                    if (!Array.TrueForAll(rows, float.IsFinite))
                        throw new InvalidOperationException("the tower produced non-finite embeddings");
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{(run == 0 ? "warm-up" : "run " + run)}: {ms:F0} ms"));
                    if (run > 0)
                        times.Add(ms);
                }
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"tower + projector, {image.SoftTokens} soft tokens: min {times.Min():F0} ms over {times.Count} run(s) ({image.PatchCount / (times.Min() / 1000):F0} patches/s)"));
                return 0;
            }
            finally
            {
                if (Directory.Exists(directory))
                    Directory.Delete(directory, recursive: true);
            }
        });
        return command;
    }

    /// <summary>An RGB pattern whose size preprocessing keeps as it is and which fills the budget: 14 x 20 groups of 48 px for 280.</summary>
    private static RgbImage FullBudgetImage(int softTokens)
    {
        var (rows, cols) = softTokens switch
        {
            70 => (7, 10),
            140 => (10, 14),
            280 => (14, 20),
            560 => (20, 28),
            _ => (28, 40),
        };
        int height = rows * 48, width = cols * 48;
        var pixels = new byte[width * height * 3];
        var random = new Random(1);
        random.NextBytes(pixels);
        return new RgbImage(width, height, pixels);
    }
}
