using System.Text;
using Pipeline.Actors.Messages;
using Pipeline.Actors.Text;
using Pipeline.Tokenizer;
using TokenizerModel = Pipeline.Tokenizer.Tokenizer;

namespace Pipeline.Actors.Tests.Infrastructure;

/// <summary>
/// A plain Gemma-style chat format for the actor tests: turns as "&lt;|turn&gt;role\ntext&lt;turn|&gt;\n",
/// output as text only (special tokens skipped), stop strings honoured. The actors do not care what
/// the format is; this keeps their tests independent of the chat template's own tests.
/// </summary>
public sealed class TestChatFormat(TokenizerModel tokenizer) : IChatFormat
{
    public string Render(IReadOnlyList<ChatMessage> messages, PromptSettings settings)
    {
        var text = new StringBuilder("<bos>");
        foreach (var message in messages)
        {
            string role = message.Role == ChatMessage.Assistant ? "model" : message.Role;
            text.Append("<|turn>").Append(role).Append('\n').Append(message.Content).Append("<turn|>\n");
        }
        return text.Append("<|turn>model\n").ToString();
    }

    public ITurnDecoder CreateDecoder(OutputSettings settings) => new Decoder(new StreamingDetokenizer(tokenizer, skipSpecialTokens: true, settings.StopStrings));

    private sealed class Decoder(StreamingDetokenizer detokenizer) : ITurnDecoder
    {
        public bool StopHit => detokenizer.Stopped;

        public int ReasoningTokens => 0;

        public void Push(int token, List<ChatEvent> events)
        {
            var result = detokenizer.Push(token);
            if (result.Delta.Length > 0)
                events.Add(new TextDelta(result.Delta));
        }

        public void Flush(List<ChatEvent> events)
        {
            string rest = detokenizer.Flush();
            if (rest.Length > 0)
                events.Add(new TextDelta(rest));
        }
    }
}
