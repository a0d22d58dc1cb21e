using Akka.Actor;
using Pipeline.Actors.Execution;

namespace Pipeline.Actors.Messages;

/// <summary>
/// One step of one session through the layer groups: <see cref="Ids"/> at positions
/// StartPosition.. of the session's cache. Sent by the session to the first executor, forwarded
/// group to group with a fresh header (same <see cref="RequestId"/>); the last group answers
/// <see cref="StepComputed"/> to <see cref="ReplyTo"/>. See <see cref="SessionCache"/> for who
/// may touch what while the step is in flight.
/// </summary>
[LocalOnly("carries the session's KV cache and activation buffers (backend memory, gigabytes for the 31B) and the session's actor reference")]
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
    IActorRef ReplyTo) : ILocalOnlyMessage, IStageRequest, IStepMessage
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
