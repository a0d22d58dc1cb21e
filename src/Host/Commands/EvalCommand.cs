using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Pipeline.Model;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Host.Commands;

/// <summary>
/// `pipeline eval --model DIR --ids 2,105,... [--top 16] [--json] [--mode prefill|stepwise]`: runs the
/// ids through the model and prints, for every position, the top-k (id, logit) pairs of the logits
/// after that position and their logsumexp. With --json the output is one JSON array holding one
/// object per position, each on its own line: {"pos": i, "top": [[id, logit], ...], "logsumexp": x}.
/// --mode prefill feeds all ids as one prefill; stepwise feeds them one token at a time.
/// </summary>
public static class EvalCommand
{
    public static Command Create()
    {
        var model = new Option<DirectoryInfo>("--model") { Description = "checkpoint folder (config.json, *.safetensors)", Required = true };
        var ids = new Option<string>("--ids") { Description = "comma-separated token ids, e.g. 2,105,2364", Required = true };
        var top = new Option<int>("--top") { Description = "how many of the largest logits to print per position", DefaultValueFactory = _ => 16 };
        var json = new Option<bool>("--json") { Description = "print a JSON array with one object per position" };
        var mode = new Option<string>("--mode") { Description = "prefill: one prefill of all ids; stepwise: one token at a time", DefaultValueFactory = _ => "prefill" };
        mode.AcceptOnlyFromAmong("prefill", "stepwise");
        var threads = new Option<int>("--threads") { Description = "CPU threads (0 = all cores)", DefaultValueFactory = _ => 0 };

        var command = new Command("eval", "Run token ids through the model; print each position's top logits and logsumexp.")
        {
            model, ids, top, json, mode, threads,
        };
        command.SetAction(parse =>
        {
            var output = parse.InvocationConfiguration.Output;
            try
            {
                int[] tokens = ParseIds(parse.GetValue(ids)!);
                int k = parse.GetValue(top);
                if (k <= 0)
                    throw new ArgumentException($"--top must be positive, found {k}");
                using var engine = Engine.Load(parse.GetValue(model)!.FullName, new EngineOptions { Threads = parse.GetValue(threads) });
                Run(engine, tokens, k, parse.GetValue(json), parse.GetValue(mode) == "stepwise", output);
                return 0;
            }
            catch (Exception e) when (e is ArgumentException or CheckpointFormatException or IOException or NotSupportedException)
            {
                parse.InvocationConfiguration.Error.WriteLine($"pipeline eval: {e.Message}");
                return 1;
            }
        });
        return command;
    }

    /// <summary>"2, 105,2364" to ids; a clear error names the first bad entry.</summary>
    public static int[] ParseIds(string text)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        var result = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out result[i]))
                throw new ArgumentException($"--ids entry {i} is '{parts[i]}', not an integer token id");
        }
        return result;
    }

    /// <summary>Feeds <paramref name="ids"/> to a fresh session and writes one report per position.</summary>
    public static void Run(Engine engine, int[] ids, int top, bool json, bool stepwise, TextWriter output)
    {
        using var session = engine.OpenSession();
        var report = new Report(output, json, Math.Min(top, engine.VocabSize));
        if (stepwise)
        {
            for (int i = 0; i < ids.Length; i++)
            {
                session.Prefill(ids.AsSpan(i, 1));
                report.Position(i, session.Logits);
            }
        }
        else
        {
            session.Prefill(ids, report.Position);
        }
        report.Finish();
    }

    private sealed class Report(TextWriter output, bool json, int top)
    {
        private readonly int[] _ids = new int[top];
        private int _written;

        public void Position(int position, ReadOnlySpan<float> logits)
        {
            LogitMath.TopK(logits, _ids);
            double logSumExp = LogitMath.LogSumExp(logits);
            if (json)
            {
                using var buffer = new MemoryStream();
                using (var writer = new Utf8JsonWriter(buffer))
                {
                    writer.WriteStartObject();
                    writer.WriteNumber("pos", position);
                    writer.WriteStartArray("top");
                    foreach (int id in _ids)
                    {
                        writer.WriteStartArray();
                        writer.WriteNumberValue(id);
                        writer.WriteNumberValue(logits[id]);
                        writer.WriteEndArray();
                    }
                    writer.WriteEndArray();
                    writer.WriteNumber("logsumexp", logSumExp);
                    writer.WriteEndObject();
                }
                output.Write(_written == 0 ? "[\n" : ",\n");
                output.Write(System.Text.Encoding.UTF8.GetString(buffer.ToArray()));
            }
            else
            {
                output.Write(string.Create(CultureInfo.InvariantCulture, $"pos {position}  logsumexp {logSumExp:F6}  top"));
                foreach (int id in _ids)
                    output.Write(string.Create(CultureInfo.InvariantCulture, $" {id}:{logits[id]:F6}"));
                output.WriteLine();
            }
            _written++;
        }

        public void Finish()
        {
            if (json)
                output.Write(_written == 0 ? "[]\n" : "\n]\n");
        }
    }
}
