using Akka.Actor;
using Pipeline.Actors.Execution;
using Pipeline.Model;

namespace Pipeline.Actors.Messages;

/// <summary>
/// One step of one session through the layer groups: <see cref="Ids"/> at positions
/// StartPosition.. of the session's cache. Sent by the session to the first executor, forwarded
/// group to group with a fresh header (same <see cref="RequestId"/>); the last group answers
/// <see cref="StepComputed"/> to <see cref="ReplyTo"/>. See <see cref="SessionCache"/> for who
/// may touch what while the step is in flight. <see cref="Embedded"/>: image rows among the ids
/// (starts counted from Ids[0]); each is whole in the step, since its rows attend to each other.
/// </summary>
[LocalOnly("carries the session's KV cache and activation buffers (backend memory, gigabytes for the 31B), the session's actor reference and image rows by reference")]
public sealed record ForwardStep(
    MessageHeader Header,
    string SessionId,
    string TurnId,
    int Step,
    string RequestId,
    int[] Ids,
    int StartPosition,
    bool WantLogits,
    SessionCache Cache,
    IActorRef ReplyTo,
    EmbeddingSpan[]? Embedded = null) : ILocalOnlyMessage, IStageRequest, IStepMessage
{
    string? IPipelineMessage.SessionId => SessionId;
}

/// <summary>A step went through every layer; when it asked for logits they are in <see cref="SessionCache.Logits"/>.</summary>
[LocalOnly("refers to the session's cache handle, whose logits buffer ([vocab] floats) holds the result")]
public sealed record StepComputed(
    MessageHeader Header,
    string SessionId,
    string TurnId,
    int Step,
    string RequestId,
    int Rows,
    SessionCache Cache) : ILocalOnlyMessage, IStepMessage
{
    string? IPipelineMessage.SessionId => SessionId;
}
