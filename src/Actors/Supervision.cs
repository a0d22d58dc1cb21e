using Akka.Actor;

namespace Pipeline.Actors;

/// <summary>
/// The pipeline's supervisor strategies. Stages (tokenizer, sampler, detokenizer, executors) are
/// always needed and hold nothing that a restart could not rebuild, so any failure — also an
/// <see cref="ActorKilledException"/> — restarts the one actor that failed, without limit; the
/// restarting actor reports the requests it lost (see <see cref="PipelineActor.PreRestart"/>).
/// Sessions restart from their store; a session that keeps failing
/// (<paramref name="maxSessionRestarts"/> within <paramref name="window"/>) is stopped, which ends
/// its turn with an error event.
/// </summary>
public static class Supervision
{
    public static SupervisorStrategy Stages() =>
        new OneForOneStrategy(maxNrOfRetries: -1, withinTimeRange: Timeout.InfiniteTimeSpan, localOnlyDecider: _ => Directive.Restart);

    public static SupervisorStrategy Sessions(int maxSessionRestarts, TimeSpan window) =>
        new OneForOneStrategy(maxSessionRestarts, window, localOnlyDecider: _ => Directive.Restart);
}
