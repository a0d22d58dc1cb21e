using System.Diagnostics;
using Akka.Actor;
using Pipeline.Actors.Faults;
using Pipeline.Actors.Messages;
using Pipeline.Actors.Telemetry;

namespace Pipeline.Actors;

/// <summary>
/// Base of every pipeline actor. For each <see cref="IPipelineMessage"/> it handles it opens an
/// <see cref="Activity"/> ("{role} {message type}", child of the sender's W3C context from the
/// header) tagged with role, message type and id, session, step and mailbox wait, records the wait
/// on the meter, and runs test-only fault injection. Outgoing messages get headers from
/// <see cref="NewHeader"/>, so the next hop's span is a child of the current one.
/// <para>
/// A stage that restarts loses the request it was handling; <see cref="PreRestart"/> answers the
/// requester with <see cref="StageFailed"/> so the session can retry it.
/// </para>
/// </summary>
public abstract class PipelineActor : ReceiveActor
{
    private static readonly KeyValuePair<string, object?>[] s_noTags = [];
    private Activity? _activity;
    private bool _detached;
    private IActorRef _currentSender = ActorRefs.Nobody;

    protected PipelineActor(ActorRole role, FaultInjector faults)
    {
        Role = role;
        Faults = faults;
        RoleTag = new KeyValuePair<string, object?>(PipelineTags.Role, role.ConfigName());
    }

    protected ActorRole Role { get; }

    protected FaultInjector Faults { get; }

    protected KeyValuePair<string, object?> RoleTag { get; }

    /// <summary>The span of the message being handled (null when nothing listens).</summary>
    protected Activity? CurrentActivity => _activity;

    /// <summary>Sender of the pipeline message being (or last) handled; valid in <see cref="PreRestart"/> too.</summary>
    protected IActorRef CurrentSender => _currentSender;

    /// <summary>A header for a message sent now: trace context of <paramref name="parent"/>, else of the current span.</summary>
    protected MessageHeader NewHeader(Activity? parent = null) => MessageHeader.Create(parent ?? _activity);

    /// <summary>
    /// Keeps the current message's span open after the handler returns; the caller must Dispose it
    /// (e.g. an executor ends a step's span when its batch finished).
    /// </summary>
    protected Activity? DetachActivity()
    {
        _detached = true;
        return _activity;
    }

    /// <summary>Role-specific span tags for a message (layer group, batch size...).</summary>
    protected virtual void Describe(Activity activity, IPipelineMessage message)
    {
    }

    /// <summary>Whether test-only fault injection runs before handling <paramref name="message"/> (executors inject at their batch pass instead).</summary>
    protected virtual bool InjectsFaultsOnReceive(object message) => true;

    protected override bool AroundReceive(Receive receive, object message)
    {
        if (message is not IPipelineMessage pipelineMessage)
            return base.AroundReceive(receive, message);

        _currentSender = Sender;
        var header = pipelineMessage.Header;
        double waitMs = header.WaitedSince(DateTime.UtcNow).TotalMilliseconds;
        PipelineTelemetry.MailboxWait.Record(waitMs, RoleTag);

        var previous = Activity.Current;
        string type = message.GetType().Name;
        var activity = PipelineTelemetry.ActivitySource.StartActivity(
            $"{Role.ConfigName()} {type}", ActivityKind.Consumer, header.ParentContext, s_noTags);
        if (activity is not null)
        {
            activity.SetTag(PipelineTags.Role, Role.ConfigName());
            activity.SetTag(PipelineTags.MessageType, type);
            activity.SetTag(PipelineTags.MessageId, header.MessageId);
            activity.SetTag(PipelineTags.MailboxWaitMs, waitMs);
            if (pipelineMessage.SessionId is { } session)
                activity.SetTag(PipelineTags.SessionId, session);
            if (pipelineMessage is IStepMessage step)
                activity.SetTag(PipelineTags.Step, step.Step);
            Describe(activity, pipelineMessage);
        }
        _activity = activity;
        _detached = false;
        try
        {
            if (InjectsFaultsOnReceive(message))
                Faults.BeforeHandling(Role, message);
            return base.AroundReceive(receive, message);
        }
        catch (Exception e)
        {
            activity?.SetStatus(ActivityStatusCode.Error, e.Message);
            activity?.SetTag(PipelineTags.Error, e.GetType().FullName);
            throw;
        }
        finally
        {
            if (!_detached)
                activity?.Dispose();
            _activity = null;
            Activity.Current = previous;
        }
    }

    protected override void PreRestart(Exception reason, object message)
    {
        PipelineTelemetry.Restarts.Add(1, RoleTag);
        ReportLostRequests(reason, message);
        base.PreRestart(reason, message);
    }

    /// <summary>Called before a restart: by default, a failed <see cref="IStageRequest"/> is reported to its sender.</summary>
    protected virtual void ReportLostRequests(Exception reason, object message)
    {
        if (message is IStageRequest request)
            ReportLost(request, reason, _currentSender);
    }

    /// <summary>Tells <paramref name="requester"/> its request was lost in a failure.</summary>
    protected void ReportLost(IStageRequest request, Exception reason, IActorRef requester)
    {
        if (request.SessionId is not { } session || requester.IsNobody())
            return;
        requester.Tell(new StageFailed(NewHeader(), session, request.TurnId, request.RequestId, Role, ErrorText(reason)), ActorRefs.NoSender);
    }

    /// <summary>One line for an error event: the exception type and message.</summary>
    protected static string ErrorText(Exception e) => $"{e.GetType().Name}: {e.Message}";
}
