using MessagePack;
using Pipeline.Model.Sampling;

namespace Pipeline.Actors.Messages;

/// <summary>A request a session sends to a stage; a stage that fails on it answers <see cref="StageFailed"/> with <see cref="RequestId"/>.</summary>
public interface IStageRequest : IPipelineMessage
{
    /// <summary>Stable across forwarding (executor to executor); the session matches failures to its outstanding request by it.</summary>
    string RequestId { get; }

    string TurnId { get; }
}

/// <summary>
/// Sent by a restarting stage (from its PreRestart hook) to the session whose request it lost, so
/// the session can retry it (bounded) or end the turn with an error event.
/// </summary>
[MessagePackObject]
public sealed record StageFailed(
    [property: Key(0)] MessageHeader Header,
    [property: Key(1)] string SessionId,
    [property: Key(2)] string TurnId,
    [property: Key(3)] string RequestId,
    [property: Key(4)] ActorRole Role,
    [property: Key(5)] string Reason) : ISerializableMessage
{
    string? IPipelineMessage.SessionId => SessionId;
}

/// <summary>What the chat template needs besides the messages.</summary>
[MessagePackObject]
public sealed record PromptSettings(
    [property: Key(0)] bool? EnableThinking,
    [property: Key(1)] string? ReasoningEffort,
    [property: Key(2)] string? ToolsJson);

/// <summary>Renders the transcript with the chat template (generation prompt appended).</summary>
[MessagePackObject]
public sealed record RenderPrompt(
    [property: Key(0)] MessageHeader Header,
    [property: Key(1)] string SessionId,
    [property: Key(2)] string TurnId,
    [property: Key(3)] IReadOnlyList<ChatMessage> Messages,
    [property: Key(4)] PromptSettings Settings) : ISerializableMessage, IStageRequest
{
    string? IPipelineMessage.SessionId => SessionId;
    string IStageRequest.RequestId => Header.MessageId;
}

[MessagePackObject]
public sealed record PromptRendered(
    [property: Key(0)] MessageHeader Header,
    [property: Key(1)] string SessionId,
    [property: Key(2)] string TurnId,
    [property: Key(3)] string RequestId,
    [property: Key(4)] string Text) : ISerializableMessage
{
    string? IPipelineMessage.SessionId => SessionId;
}

/// <summary>Tokenizes a rendered prompt (special tokens in the text are recognized; no BOS is added: the template writes it).</summary>
[MessagePackObject]
public sealed record TokenizePrompt(
    [property: Key(0)] MessageHeader Header,
    [property: Key(1)] string SessionId,
    [property: Key(2)] string TurnId,
    [property: Key(3)] string Text) : ISerializableMessage, IStageRequest
{
    string? IPipelineMessage.SessionId => SessionId;
    string IStageRequest.RequestId => Header.MessageId;
}

[MessagePackObject]
public sealed record PromptTokenized(
    [property: Key(0)] MessageHeader Header,
    [property: Key(1)] string SessionId,
    [property: Key(2)] string TurnId,
    [property: Key(3)] string RequestId,
    [property: Key(4)] int[] Ids) : ISerializableMessage
{
    string? IPipelineMessage.SessionId => SessionId;
}

/// <summary>Samples the next token from the logits the last executor left in the session's cache handle.</summary>
[LocalOnly("refers to the session's logits buffer ([vocab] floats, 1 MiB for Gemma 4) and carries the sampler's in-process state snapshot")]
public sealed record SampleToken(
    MessageHeader Header,
    string SessionId,
    string TurnId,
    int Step,
    ReadOnlyMemory<float> Logits,
    SamplingOptions Options,
    SamplerState? State) : ILocalOnlyMessage, IStageRequest, IStepMessage
{
    string? IPipelineMessage.SessionId => SessionId;
    string IStageRequest.RequestId => Header.MessageId;
}

/// <summary>The sampled token, the cut-off verdict after observing it, and the sampler state after it.</summary>
[LocalOnly("carries the sampler's in-process state snapshot (SamplerState has no serialized form)")]
public sealed record TokenSampled(
    MessageHeader Header,
    string SessionId,
    string TurnId,
    int Step,
    string RequestId,
    int Token,
    SamplerStop Stop,
    SamplerState State) : ILocalOnlyMessage, IStepMessage
{
    string? IPipelineMessage.SessionId => SessionId;
}

/// <summary>How the detokenizer turns tokens into events for one turn.</summary>
[MessagePackObject]
public sealed record OutputSettings(
    [property: Key(0)] IReadOnlyList<string> StopStrings,
    [property: Key(1)] bool ToolsDeclared);

/// <summary>
/// Feeds the turn's token number <see cref="TokenIndex"/> (null: none, e.g. after end of turn) to the
/// session's incremental detokenizer and output parser; <see cref="Flush"/> ends the turn's output.
/// The detokenizer answers <see cref="DetokenizerOutOfSync"/> when it does not hold the turn's first
/// TokenIndex tokens (it was restarted); the session then resends with <see cref="Replay"/> = those tokens.
/// </summary>
[MessagePackObject]
public sealed record DetokenizeToken(
    [property: Key(0)] MessageHeader Header,
    [property: Key(1)] string SessionId,
    [property: Key(2)] string TurnId,
    [property: Key(3)] int TokenIndex,
    [property: Key(4)] int? Token,
    [property: Key(5)] bool Flush,
    [property: Key(6)] OutputSettings Settings,
    [property: Key(7)] int[]? Replay) : ISerializableMessage, IStageRequest, IStepMessage
{
    string? IPipelineMessage.SessionId => SessionId;
    string IStageRequest.RequestId => Header.MessageId;
    int IStepMessage.Step => TokenIndex;
}

/// <summary>
/// Events for one token; <see cref="StopHit"/>: a stop string appeared (the text before it is in the
/// events); <see cref="ReasoningTokens"/>: how many of the turn's tokens so far were reasoning.
/// </summary>
[MessagePackObject]
public sealed record TokenDetokenized(
    [property: Key(0)] MessageHeader Header,
    [property: Key(1)] string SessionId,
    [property: Key(2)] string TurnId,
    [property: Key(3)] int TokenIndex,
    [property: Key(4)] string RequestId,
    [property: Key(5)] IReadOnlyList<ChatEvent> Events,
    [property: Key(6)] bool StopHit,
    [property: Key(7)] int ReasoningTokens) : ISerializableMessage, IStepMessage
{
    string? IPipelineMessage.SessionId => SessionId;
    int IStepMessage.Step => TokenIndex;
}

[MessagePackObject]
public sealed record DetokenizerOutOfSync(
    [property: Key(0)] MessageHeader Header,
    [property: Key(1)] string SessionId,
    [property: Key(2)] string TurnId,
    [property: Key(3)] string RequestId,
    [property: Key(4)] int HeldTokens) : ISerializableMessage
{
    string? IPipelineMessage.SessionId => SessionId;
}

/// <summary>Drops a session's detokenizer and sampler scratch state (the session ended).</summary>
[MessagePackObject]
public sealed record ForgetSession(
    [property: Key(0)] MessageHeader Header,
    [property: Key(1)] string SessionId) : ISerializableMessage
{
    string? IPipelineMessage.SessionId => SessionId;
}
