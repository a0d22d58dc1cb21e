using System.Collections.Concurrent;
using Pipeline.Actors;
using Pipeline.Actors.Messages;
using Pipeline.Actors.Text;

namespace Pipeline.Host.Tests.Serve;

/// <summary>
/// The model's real chat format, except that a test can script a turn's output: the tiny model's
/// random weights never produce reasoning or tool calls on purpose, so a queued script maps the
/// turn's k-th generated token to fixed events (and ends the turn after the last one, as a stop
/// string would). Everything else — template, tokenizer, actors, cache, HTTP — runs for real.
/// Turns without a queued script decode normally.
/// </summary>
public sealed class ScriptedChatFormat(IChatFormat inner) : IChatFormat
{
    private readonly ConcurrentQueue<Script> _scripts = new();

    public string Render(IReadOnlyList<ChatMessage> messages, PromptSettings settings) => inner.Render(messages, settings);

    public ITurnDecoder CreateDecoder(OutputSettings settings) =>
        _scripts.TryDequeue(out var script) ? new ScriptedDecoder(script) : inner.CreateDecoder(settings);

    /// <summary>The next turn's output: one entry per generated token.</summary>
    public void Enqueue(Script script) => _scripts.Enqueue(script);

    public void Clear() => _scripts.Clear();

    /// <param name="Steps">Events per generated token.</param>
    /// <param name="Hold">When set, the first token waits for it (holds the turn; the detokenizer is blocked meanwhile).</param>
    public sealed record Script(IReadOnlyList<ChatEvent[]> Steps, ManualResetEventSlim? Hold = null);

    private sealed class ScriptedDecoder(Script script) : ITurnDecoder
    {
        private int _index;

        public bool StopHit => _index >= script.Steps.Count;

        public int ReasoningTokens { get; private set; }

        public void Push(int token, List<ChatEvent> events)
        {
            if (_index == 0 && script.Hold is { } hold && !hold.Wait(TimeSpan.FromSeconds(60)))
                throw new TimeoutException("a held scripted turn was never released");
            if (_index >= script.Steps.Count)
                return;
            var step = script.Steps[_index++];
            events.AddRange(step);
            if (step.Length > 0 && step.All(e => e is ReasoningDelta))
                ReasoningTokens++;
        }

        public void Flush(List<ChatEvent> events)
        {
        }
    }
}
