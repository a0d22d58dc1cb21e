using System.Diagnostics;
using MessagePack;

namespace Pipeline.Actors.Messages;

/// <summary>
/// What every pipeline message carries besides its payload: a unique id, the W3C trace context of the
/// activity that sent it (so the receiver's span is a child of the sender's) and the time it was
/// enqueued (so the receiver can record how long it waited in the mailbox).
/// </summary>
[MessagePackObject]
public sealed record MessageHeader(
    [property: Key(0)] string MessageId,
    [property: Key(1)] string? TraceParent,
    [property: Key(2)] string? TraceState,
    [property: Key(3)] long EnqueuedAtUtcTicks)
{
    /// <summary>A header stamped now, carrying <paramref name="context"/> or else <see cref="Activity.Current"/>'s context.</summary>
    public static MessageHeader Create(Activity? context = null)
    {
        var activity = context ?? Activity.Current;
        string? parent = null, state = null;
        if (activity is not null && activity.IdFormat == ActivityIdFormat.W3C)
        {
            parent = activity.Id;
            state = activity.TraceStateString;
        }
        return new MessageHeader(Guid.NewGuid().ToString("N"), parent, state, DateTime.UtcNow.Ticks);
    }

    /// <summary>The same trace context under a new id, enqueued now (a message sent again).</summary>
    public MessageHeader Resent() => this with { MessageId = Guid.NewGuid().ToString("N"), EnqueuedAtUtcTicks = DateTime.UtcNow.Ticks };

    /// <summary>The sender's context, or default when the message was sent outside any trace.</summary>
    [IgnoreMember]
    public ActivityContext ParentContext =>
        TraceParent is not null && ActivityContext.TryParse(TraceParent, TraceState, isRemote: true, out var context)
            ? context
            : default;

    /// <summary>Time since the message was enqueued.</summary>
    public TimeSpan WaitedSince(DateTime utcNow) => TimeSpan.FromTicks(Math.Max(0, utcNow.Ticks - EnqueuedAtUtcTicks));
}
