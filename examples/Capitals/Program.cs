using System.Globalization;
using Capitals;
using Pipeline.Actors.Client;
using Pipeline.Model.TestModels;

// Usage: Capitals [--model DIR] [--max-tokens N] [--seed N] [--threads N]
// Without --model it runs on the built-in tiny test model (random weights: the answers are noise, the timings are real).
const string Usage = "usage: Capitals [--model DIR] [--max-tokens N] [--seed N] [--threads N]";
string? model = null;
int maxTokens = 2048, threads = 0;
ulong? seed = null;
for (int i = 0; i < args.Length; i++)
{
    string option = args[i];
    string? value = i + 1 < args.Length ? args[++i] : null;
    try
    {
        switch (option)
        {
            case "--model" when value is not null: model = value; break;
            case "--max-tokens" when value is not null: maxTokens = int.Parse(value, CultureInfo.InvariantCulture); break;
            case "--seed" when value is not null: seed = ulong.Parse(value, CultureInfo.InvariantCulture); break;
            case "--threads" when value is not null: threads = int.Parse(value, CultureInfo.InvariantCulture); break;
            default:
                Console.Error.WriteLine($"Capitals: unknown argument '{option}' or missing value; {Usage}");
                return 2;
        }
    }
    catch (Exception e) when (e is FormatException or OverflowException)
    {
        Console.Error.WriteLine($"Capitals: {option} '{value}' is not a valid number; {Usage}");
        return 2;
    }
}

string directory = model ?? BuiltInModel.Ensure(Console.Error);
Console.Error.WriteLine($"Capitals: loading {directory}");
await using var session = await ChatSession.LoadAsync(directory, new ChatSessionOptions { Threads = threads });
await CapitalsConversation.RunAsync(session, Console.Out, maxTokens, seed);
return 0;
