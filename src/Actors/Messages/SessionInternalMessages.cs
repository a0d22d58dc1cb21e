using Akka.Actor;

namespace Pipeline.Actors.Messages;

/// <summary>
/// A session's live turn handed from a failed instance of its actor to the next one (sent to itself
/// from PreRestart); the durable progress is in the session store.
/// </summary>
[LocalOnly("carries the caller's stream writer, cancellation token and the turn's open span")]
public sealed record ResumeTurn(MessageHeader Header, string SessionId, Actors.LiveTurn Live, int Attempt) : ILocalOnlyMessage;

/// <summary>A request an actor lost to its own failure, delivered again to its next instance (bounded by Attempt).</summary>
[LocalOnly("wraps a message that may itself be local-only (StartTurn carries a stream writer)")]
public sealed record Redelivered(MessageHeader Header, string? SessionId, object Message, IActorRef ReplyTo, int Attempt) : ILocalOnlyMessage;
