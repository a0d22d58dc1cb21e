using Akka.Actor;
using Pipeline.Actors.Execution;
using Pipeline.Actors.Faults;
using Pipeline.Actors.Sessions;

namespace Pipeline.Actors.Actors;

/// <summary>
/// The top of the pipeline's hierarchy: supervises the <see cref="SessionManager"/> with the stage
/// strategy (so even a killed manager is restarted, keeping its children) and hands its reference out.
/// </summary>
public sealed class PipelineGuardian : ReceiveActor
{
    public PipelineGuardian(PipelineModel model, PipelineSettings settings, ISessionStore store, FaultInjector faults, TaskCompletionSource<IActorRef> manager)
    {
        var sessions = Context.ActorOf(SessionManager.Props(model, settings, store, faults), "sessions");
        manager.TrySetResult(sessions);
    }

    protected override SupervisorStrategy SupervisorStrategy() => Supervision.Stages();
}
