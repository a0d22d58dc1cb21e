using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Pipeline.Convert;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Host.Commands;

/// <summary>
/// `pipeline imatrix --model DIR --text FILE -o imatrix.gguf`: the importance matrix (mean squared
/// activation entering every decoder linear) of calibration text, computed with Pipeline's own engine
/// and written as a llama.cpp imatrix GGUF for `pipeline convert --imatrix-path`.
/// </summary>
public static class ImatrixCommand
{
    public static Command Create()
    {
        var model = new Option<DirectoryInfo>("--model", "-m") { Description = "checkpoint folder (bf16 Hugging Face or MLX)", Required = true };
        var text = new Option<FileInfo>("--text", "-f") { Description = "calibration text (UTF-8)", Required = true };
        var output = new Option<FileInfo>("--output", "-o") { Description = "imatrix GGUF to write", Required = true };
        var chunk = new Option<int>("--chunk-size", "-c")
        {
            Description = "tokens per chunk, BOS included (each chunk starts a fresh context)",
            DefaultValueFactory = _ => ImatrixComputation.DefaultChunkSize,
        };
        var threads = new Option<int>("--threads") { Description = "CPU threads (0 = all cores)", DefaultValueFactory = _ => 0 };

        var command = new Command("imatrix", "Compute a llama.cpp-format importance matrix over calibration text with Pipeline's engine.")
        {
            model, text, output, chunk, threads,
        };
        command.SetAction((parse, cancellation) =>
        {
            string modelDir = parse.GetValue(model)!.FullName;
            string textPath = parse.GetValue(text)!.FullName;
            string outputPath = parse.GetValue(output)!.FullName;
            try
            {
                if (!File.Exists(textPath))
                    throw new ConvertException($"calibration text {textPath} does not exist");
                // The model's own tokenizer when it ships one, else the Gemma-4 tokenizer built into pipeline.
                var tokenizer = File.Exists(Path.Combine(modelDir, "tokenizer.json"))
                    ? Pipeline.Tokenizer.Tokenizer.Load(modelDir)
                    : Pipeline.Tokenizer.Tokenizer.LoadGemma4();
                int[] ids = tokenizer.Encode(File.ReadAllText(textPath), addSpecialTokens: false);
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{textPath}: {ids.Length} tokens"));
                var clock = Stopwatch.StartNew();
                var imatrix = ImatrixComputation.Run(
                    modelDir, ids, tokenizer.BosId, Path.GetFileName(textPath), parse.GetValue(chunk), parse.GetValue(threads),
                    (done, total) => Console.Error.Write(string.Create(CultureInfo.InvariantCulture,
                        $"\rchunk {done}/{total}  {clock.Elapsed.TotalSeconds:F1} s  ETA {clock.Elapsed.TotalSeconds / done * (total - done):F0} s ")),
                    cancellation);
                Console.Error.WriteLine();
                string partial = outputPath + ".partial";
                imatrix.Write(partial);
                File.Move(partial, outputPath, overwrite: true);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"wrote {outputPath}: {imatrix.Entries.Count} entries from {imatrix.ChunkCount} chunks of up to {imatrix.ChunkSize} tokens"));
                return Task.FromResult(0);
            }
            catch (Exception e) when (e is ConvertException or CheckpointFormatException or IOException or InvalidDataException)
            {
                Console.Error.WriteLine("error: " + e.Message);
                return Task.FromResult(1);
            }
            catch (OperationCanceledException)
            {
                Console.Error.WriteLine("cancelled; nothing written");
                return Task.FromResult(130);
            }
        });
        return command;
    }
}
