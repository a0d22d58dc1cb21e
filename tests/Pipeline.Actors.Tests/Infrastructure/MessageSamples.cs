using Pipeline.Actors.Messages;

namespace Pipeline.Actors.Tests.Infrastructure;

/// <summary>One filled-in instance of every serializable message type (every field non-default where it can be).</summary>
public static class MessageSamples
{
    public static MessageHeader Header { get; } =
        new("0af7651916cd43dd8448eb211c80319c", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "vendor=abc", 638_000_000_000_000_000);

    private static readonly ChatMessage[] s_messages =
    [
        ChatMessage.FromSystem("You are concise."),
        ChatMessage.FromUser("Capital of France?") with { Images = [new ImagePart("image/png", [1, 2, 3], null), new ImagePart(null, null, "https://x/y.png")] },
        new ChatMessage
        {
            Role = ChatMessage.Assistant, Content = "Paris.", Reasoning = "easy",
            ToolCalls = [new ToolCall("call_1", "lookup", "{\"q\":\"France\"}")],
        },
        new ChatMessage { Role = ChatMessage.Tool, Content = "{\"capital\":\"Paris\"}", ToolCallId = "call_1", Name = "lookup" },
    ];

    private static readonly ChatEvent[] s_events =
    [
        new TextDelta("Par"),
        new ReasoningDelta("thinking"),
        new ToolCallEvent(new ToolCall("call_2", "f", "{}")),
        new TurnFinished(FinishReason.ToolCalls, new TurnUsage(10, 4, 3, 1), new TurnTimings(12.5, 100.25, 20.5, 99), "none"),
    ];

    public static IReadOnlyList<ISerializableMessage> All() =>
    [
        new CancelTurn(Header, "s1", "t1"),
        new GetTranscript(Header, "s1"),
        new TranscriptReply(Header, "s1", s_messages, Busy: true),
        new EndSession(Header, "s1"),
        new SessionEnded(Header, "s1"),
        new StageFailed(Header, "s1", "t1", "r1", ActorRole.Sampler, "InjectedFaultException: boom"),
        new RenderPrompt(Header, "s1", "t1", s_messages, new PromptSettings(true, "low", "[{\"type\":\"function\"}]")),
        new PromptRendered(Header, "s1", "t1", "r1", "<bos><|turn>user\nhi<turn|>\n"),
        new TokenizePrompt(Header, "s1", "t1", "<bos>hi"),
        new PromptTokenized(Header, "s1", "t1", "r1", [2, 105, 2364, 107]),
        new DetokenizeToken(Header, "s1", "t1", 3, 1234, Flush: true, new OutputSettings(["\n\n", "END"], true), [5, 6, 7]),
        new TokenDetokenized(Header, "s1", "t1", 3, "r1", s_events, StopHit: true, ReasoningTokens: 2),
        new DetokenizerOutOfSync(Header, "s1", "t1", "r1", 2),
        new ForgetSession(Header, "s1"),
        new EncodeImages(Header, "s1", "t1", [new ImagePart("image/png", [137, 80, 78, 71], null)]),
        new ImagesRejected(Header, "s1", "t1", "r1", "image 1 of 1 is not a PNG, JPEG or WebP image"),
    ];
}
