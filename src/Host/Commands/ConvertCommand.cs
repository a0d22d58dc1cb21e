using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Pipeline.Convert;
using Pipeline.Kernels;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Host.Commands;

/// <summary>
/// `pipeline convert`: Hugging Face Gemma-4 (bf16/f16/f32) to the MLX layout, quantized with a recipe and
/// optionally AWQ-prescaled from a llama.cpp imatrix. Flags as in `mlx convert`.
/// </summary>
public static class ConvertCommand
{
    public static Command Create()
    {
        var input = new Option<DirectoryInfo>("--input", "-i", "--hf-path") { Description = "Hugging Face checkpoint folder (config.json, safetensors)", Required = true };
        var output = new Option<DirectoryInfo>("--output", "-o", "--mlx-path") { Description = "output folder (must not exist; written atomically)" };
        var quantize = new Option<bool>("--quantize", "-q") { Description = "quantize with --q-recipe; without it tensors are only renamed (and AWQ-folded)" };
        var bits = new Option<int>("--q-bits") { Description = "base bits d (2..8)", DefaultValueFactory = _ => 4 };
        var groupSize = new Option<int>("--q-group-size") { Description = "group size (32, 64 or 128)", DefaultValueFactory = _ => 64 };
        var recipe = new Option<string>("--q-recipe")
        {
            Description = "unsloth: embed/q/k/v d+2, gate/up d, down d+1, o_proj kept; uniform: every linear at d",
            DefaultValueFactory = _ => "uniform",
        };
        var imatrix = new Option<FileInfo>("--imatrix-path") { Description = "llama.cpp imatrix GGUF: AWQ pre-scaling folded into the norms" };
        var dtype = new Option<string>("--dtype") { Description = "dtype of unquantized tensors, scales and biases (default: the input's)" };
        dtype.AcceptOnlyFromAmong("float16", "bfloat16", "float32");
        var dryRun = new Option<bool>("--dry-run") { Description = "print the per-tensor plan (name, shape, bits, group, bytes) and total; write nothing" };

        var command = new Command("convert", "Convert a Hugging Face Gemma-4 checkpoint to MLX, optionally quantized (e.g. UD-Q2_K_XL: -q --q-bits 2 --q-recipe unsloth).")
        {
            input, output, quantize, bits, groupSize, recipe, imatrix, dtype, dryRun,
        };
        command.Validators.Add(result =>
        {
            if (!result.GetValue(dryRun) && result.GetValue(output) is null)
                result.AddError("--output is required unless --dry-run is given");
        });
        command.SetAction((parse, cancellation) =>
        {
            var options = new ConvertOptions
            {
                InputDir = parse.GetValue(input)!.FullName,
                OutputDir = parse.GetValue(output)?.FullName ?? "",
                Quantize = parse.GetValue(quantize),
                Bits = parse.GetValue(bits),
                GroupSize = parse.GetValue(groupSize),
                Recipe = parse.GetValue(recipe)!,
                ImatrixPath = parse.GetValue(imatrix)?.FullName,
                OutputType = parse.GetValue(dtype) switch
                {
                    "float16" => ScalarType.F16,
                    "bfloat16" => ScalarType.BF16,
                    "float32" => ScalarType.F32,
                    _ => null,
                },
            };
            void Warn(string message) => Console.Error.WriteLine("warning: " + message);
            try
            {
                if (parse.GetValue(dryRun))
                {
                    using var prepared = Converter.Prepare(options, Warn);
                    prepared.Plan.WriteTable(Console.Out);
                    if (prepared.Folding.FoldedGroups > 0)
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"AWQ: {prepared.Folding.FoldedGroups} layer groups rescaled"));
                    return Task.FromResult(0);
                }
                var clock = Stopwatch.StartNew();
                string written = Converter.Run(options, Console.Error, Warn, cancellation);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote {written} in {clock.Elapsed.TotalSeconds:F1} s"));
                return Task.FromResult(0);
            }
            catch (Exception e) when (e is ConvertException or CheckpointFormatException)
            {
                Console.Error.WriteLine("error: " + e.Message);
                return Task.FromResult(1);
            }
            catch (OperationCanceledException)
            {
                Console.Error.WriteLine("cancelled; no output written");
                return Task.FromResult(130);
            }
        });
        return command;
    }
}
