using System.Globalization;
using Pipeline.Actors.Client;
using Pipeline.Tokenizer.Chat;

namespace Capitals;

/// <summary>
/// The seed's benchmark conversation: four user turns in one session, each answer streamed, then each
/// turn's time to first token, prefill and decode speed, and the best decode speed over turns 2-4
/// (turn 1 includes warm-up, so the seed reports the best of the later turns).
/// </summary>
public static class CapitalsConversation
{
    public const string System = "You are a helpful assistant. Be concise.";

    public static readonly IReadOnlyList<string> Turns =
    [
        "What is the capital of France?",
        "What is the capital of Germany?",
        "What is the capital of Japan?",
        "Which of these has the largest population?",
    ];

    /// <summary>Runs the conversation on <paramref name="session"/> (its system prompt is set here); returns each turn's final event.</summary>
    public static async Task<IReadOnlyList<ChatStreamEvent>> RunAsync(ChatSession session, TextWriter output, int maxNewTokens = 2048, ulong? seed = null)
    {
        session.System = System;
        var options = new SendOptions { MaxNewTokens = maxNewTokens, Temperature = 0.6, ReasoningEffort = ReasoningEffort.Low, Seed = seed };
        var finals = new List<ChatStreamEvent>();
        for (int i = 0; i < Turns.Count; i++)
        {
            output.WriteLine($"\n[turn {i + 1}] {Turns[i]}");
            await foreach (var e in session.SendStreamAsync(Turns[i], options))
            {
                if (e.Done)
                    finals.Add(e);
                else if (!e.IsReasoning)
                    output.Write(e.Text);
            }
            var f = finals[^1];
            output.WriteLine();
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  ttft {f.TtftMs:F1} ms | prefill {f.PrefillTokensPerSecond:F1} tok/s | decode {f.DecodeTokensPerSecond:F1} tok/s " +
                $"| prompt {f.PromptTokens} (cached {f.CachedTokens}) | completion {f.CompletionTokens} | {f.FinishReason?.ToString().ToLowerInvariant()}"));
        }
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"\nbest decode over turns 2-4: {BestDecode(finals):F1} tok/s"));
        return finals;
    }

    public static double BestDecode(IReadOnlyList<ChatStreamEvent> finals) => finals.Skip(1).Select(f => f.DecodeTokensPerSecond).DefaultIfEmpty(0).Max();
}
