using Akka.Actor;

namespace Pipeline.Actors.Messages;

/// <summary>A message between pipeline actors: the base actor traces every one it handles.</summary>
public interface IPipelineMessage
{
    MessageHeader Header { get; }

    /// <summary>The conversation the message belongs to, or null for messages about no session.</summary>
    string? SessionId { get; }
}

/// <summary>A message that belongs to one step of a turn (a prefill chunk or one decoded token).</summary>
public interface IStepMessage : IPipelineMessage
{
    /// <summary>Step number within the turn: prefill chunks and decode steps count up from 0.</summary>
    int Step { get; }
}

/// <summary>
/// Serialized by the configured MessagePack serializer (config/akka.hocon binds this interface), so
/// it can cross a process boundary and is verified when <c>serialize-messages = on</c>.
/// </summary>
public interface ISerializableMessage : IPipelineMessage;

/// <summary>
/// Never serialized: it carries handles (caches, activations, logits, stream writers) that only mean
/// something inside this process. Every such type states why in a <see cref="LocalOnlyAttribute"/>.
/// Akka skips serialization verification for it.
/// </summary>
public interface ILocalOnlyMessage : IPipelineMessage, INoSerializationVerificationNeeded;

/// <summary>Why a message type is local-only (see <see cref="ILocalOnlyMessage"/>).</summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class LocalOnlyAttribute(string reason) : Attribute
{
    public string Reason { get; } = reason;
}
