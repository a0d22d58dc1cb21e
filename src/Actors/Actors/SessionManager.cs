using System.Text;
using Akka.Actor;
using Pipeline.Actors.Execution;
using Pipeline.Actors.Faults;
using Pipeline.Actors.Messages;
using Pipeline.Actors.Sessions;

namespace Pipeline.Actors.Actors;

/// <summary>
/// Entry point of the pipeline: finds or creates the <see cref="SessionActor"/> of each conversation
/// id and forwards its messages, and owns the shared stages — the tokenizer pool, the layer-group
/// executors (contiguous ranges from config, the last one with the head), the sampler and the
/// detokenizer. It supervises all of them with <see cref="Supervision.Stages"/>: whatever fails is
/// restarted alone. A restart of the manager itself keeps its children and re-finds them.
/// </summary>
public sealed class SessionManager : PipelineActor
{
    private const string SessionPrefix = "session-";
    private readonly PipelineModel _model;
    private readonly PipelineSettings _settings;
    private readonly ISessionStore _store;
    private readonly StageRefs _stages;
    private readonly Dictionary<string, IActorRef> _sessions = new(StringComparer.Ordinal);
    private long _created;

    public SessionManager(PipelineModel model, PipelineSettings settings, ISessionStore store, FaultInjector faults)
        : base(ActorRole.SessionManager, faults)
    {
        _model = model;
        _settings = settings;
        _store = store;

        var groups = settings.ResolveLayerGroups(model.Text.NumHiddenLayers);
        IActorRef? next = null;
        for (int g = groups.Count - 1; g >= 0; g--)
            next = ChildOf($"executor-{g}", LayerGroupExecutor.Props(model, settings, g, groups[g].First, groups[g].End, next, faults));
        _stages = new StageRefs(
            ChildOf("tokenizer", TokenizerActor.PoolProps(model, settings, faults)),
            next!,
            ChildOf("sampler", SamplerActor.Props(model, settings, faults)),
            ChildOf("detokenizer", DetokenizerActor.Props(model, settings, faults)),
            model.Checkpoint.Vision is null ? null : ChildOf("vision-encoder", VisionEncoderActor.Props(model, settings, faults)));
        foreach (var child in Context.GetChildren())
        {
            if (child.Path.Name.StartsWith(SessionPrefix, StringComparison.Ordinal))
            {
                _created = Math.Max(_created, long.Parse(child.Path.Name.AsSpan(SessionPrefix.Length, child.Path.Name.IndexOf('-', SessionPrefix.Length) - SessionPrefix.Length)));
                _sessions[SessionIdOf(child.Path.Name)] = child;
                Context.Watch(child);
            }
        }

        Receive<StartTurn>(m => Session(m.Request.SessionId).Forward(m));
        Receive<GetTranscript>(m => Session(m.SessionId).Forward(m));
        Receive<CancelTurn>(m =>
        {
            if (_sessions.TryGetValue(m.SessionId, out var session))
                session.Forward(m);
        });
        Receive<EndSession>(m =>
        {
            if (_sessions.Remove(m.SessionId, out var session))
            {
                // Forgotten now: a turn for the same id that arrives while it stops gets a new actor.
                session.Forward(m);
            }
            else
            {
                _store.Delete(m.SessionId);
                Sender.Tell(new SessionEnded(NewHeader(), m.SessionId));
            }
        });
        Receive<Redelivered>(m =>
        {
            // A request this actor lost to its own failure: route it as if it had just arrived.
            string? session = m.Message switch
            {
                StartTurn s => s.Request.SessionId,
                IPipelineMessage p => p.SessionId,
                _ => null,
            };
            if (session is not null)
                Session(session).Tell(m.Message, m.ReplyTo);
        });
        Receive<Terminated>(m =>
        {
            string id = SessionIdOf(m.ActorRef.Path.Name);
            if (_sessions.TryGetValue(id, out var session) && session.Equals(m.ActorRef))
                _sessions.Remove(id);
        });
    }

    public static Props Props(PipelineModel model, PipelineSettings settings, ISessionStore store, FaultInjector faults) =>
        Akka.Actor.Props.Create(() => new SessionManager(model, settings, store, faults));

    protected override SupervisorStrategy SupervisorStrategy() => Supervision.Stages();

    /// <summary>Keeps the children (sessions and stages) across a restart of the manager.</summary>
    protected override void PreRestart(Exception reason, object message)
    {
        if (message is StartTurn or GetTranscript or CancelTurn or EndSession)
            Self.Tell(new Redelivered(MessageHeader.Create(), (message as IPipelineMessage)?.SessionId, message, CurrentSender, 1), CurrentSender);
        else if (message is Redelivered { Attempt: < 8 } again)
            Self.Tell(again with { Attempt = again.Attempt + 1 }, again.ReplyTo);
    }

    protected override void PostRestart(Exception reason)
    {
    }

    private IActorRef ChildOf(string name, Props props)
    {
        var existing = Context.Child(name);
        return existing.IsNobody() ? Context.ActorOf(props, name) : existing;
    }

    private IActorRef Session(string sessionId)
    {
        if (_sessions.TryGetValue(sessionId, out var session))
            return session;
        string name = $"{SessionPrefix}{++_created}-{Convert.ToHexString(Encoding.UTF8.GetBytes(sessionId))}";
        session = Context.ActorOf(SessionActor.Props(sessionId, _model, _settings, _store, _stages, Faults), name);
        Context.Watch(session);
        _sessions[sessionId] = session;
        return session;
    }

    /// <summary>Child names are session-{n}-{hex of the id's UTF-8}: valid actor names for any id, unique per incarnation.</summary>
    private static string SessionIdOf(string childName) =>
        Encoding.UTF8.GetString(Convert.FromHexString(childName.AsSpan(childName.IndexOf('-', SessionPrefix.Length) + 1)));
}
