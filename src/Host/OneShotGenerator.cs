using System.Diagnostics;
using Pipeline.Model;
using Pipeline.Model.Sampling;
using Pipeline.Tokenizer;
using Pipeline.Tokenizer.Chat;
using Pipeline.Tokenizer.Parsing;

namespace Pipeline.Host;

/// <summary>What one generation produced, with its counts and timings.</summary>
public sealed record GenerationResult(
    string Content,
    string Reasoning,
    IReadOnlyList<ToolCall> ToolCalls,
    string FinishReason,
    int PromptTokens,
    int CompletionTokens,
    double TimeToFirstTokenMs,
    double PrefillTokensPerSecond,
    double DecodeTokensPerSecond);

/// <summary>
/// One prompt in, one answer out, on the bare engine (no actors): render the chat template,
/// tokenize, prefill, then sample/decode until a stop id, a stop cut-off or the token limit.
/// Text deltas are reported as they are produced.
/// </summary>
public sealed class OneShotGenerator(Engine engine, Tokenizer.Tokenizer tokenizer, ChatTemplate template)
{
    public GenerationResult Generate(
        IReadOnlyList<ChatMessage> messages,
        SamplingOptions sampling,
        int maxNewTokens,
        bool enableThinking,
        Action<OutputEvent>? onEvent = null,
        CancellationToken cancellation = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxNewTokens);
        string prompt = template.Render(new ChatRequest
        {
            Messages = messages,
            AddGenerationPrompt = true,
            EnableThinking = enableThinking,
        });
        int[] promptIds = tokenizer.Encode(prompt, addSpecialTokens: false);
        if (promptIds.Length + maxNewTokens > engine.MaxContext)
            throw new ArgumentException(
                $"prompt of {promptIds.Length} tokens plus {maxNewTokens} new tokens exceeds the context limit of {engine.MaxContext}");

        var stops = new StopTokens(engine.Checkpoint.Generation.EosTokenIds);
        var sampler = new Sampler(engine.VocabSize, sampling);
        var detokenizer = new StreamingDetokenizer(tokenizer, skipSpecialTokens: false);
        var parser = new Gemma4OutputParser();
        var content = new System.Text.StringBuilder();
        var reasoning = new System.Text.StringBuilder();
        var toolCalls = new List<ToolCall>();
        void Emit(IReadOnlyList<OutputEvent> events)
        {
            foreach (var e in events)
            {
                switch (e)
                {
                    case ContentDelta c: content.Append(c.Text); break;
                    case ReasoningDelta r: reasoning.Append(r.Text); break;
                    case ToolCall t: toolCalls.Add(t); break;
                }
                onEvent?.Invoke(e);
            }
        }

        using var session = engine.OpenSession();
        var clock = Stopwatch.StartNew();
        session.Prefill(promptIds);
        double prefillSeconds = clock.Elapsed.TotalSeconds;

        string finish = "length";
        int generated = 0;
        var decodeClock = new Stopwatch();
        while (generated < maxNewTokens)
        {
            cancellation.ThrowIfCancellationRequested();
            int token = sampler.Sample(session.Logits);
            generated++;
            if (stops.IsStop(token))
            {
                finish = "stop";
                break;
            }
            Emit(parser.Push(detokenizer.Push(token).Delta));
            if (sampler.Observe(token) != SamplerStop.None)
            {
                finish = "repetition";
                break;
            }
            if (generated == maxNewTokens)
                break;
            decodeClock.Start();
            session.Decode(token);
            decodeClock.Stop();
        }
        Emit(parser.Push(detokenizer.Flush()));
        Emit(parser.Finish());
        if (toolCalls.Count > 0 && finish == "stop")
            finish = "tool_calls";

        int decodeSteps = Math.Max(generated - 1, 0);
        return new GenerationResult(
            content.ToString(),
            reasoning.ToString(),
            toolCalls,
            finish,
            promptIds.Length,
            generated,
            prefillSeconds * 1000,
            promptIds.Length / Math.Max(prefillSeconds, 1e-9),
            decodeSteps == 0 ? 0 : decodeSteps / Math.Max(decodeClock.Elapsed.TotalSeconds, 1e-9));
    }
}
