using System.Collections.Concurrent;
using Akka.Actor;
using Pipeline.Actors.Messages;

namespace Pipeline.Actors.Tests.Infrastructure;

/// <summary>Collects <see cref="TurnCompleted"/> from an actor system's event stream, by turn id.</summary>
public sealed class TurnRecorder : ReceiveActor
{
    public TurnRecorder(ConcurrentDictionary<string, TurnCompleted> turns)
    {
        Receive<TurnCompleted>(m => turns[m.TurnId] = m);
    }
}

public static class TurnRecording
{
    public static ConcurrentDictionary<string, TurnCompleted> Attach(ActorSystem system)
    {
        var turns = new ConcurrentDictionary<string, TurnCompleted>();
        var recorder = system.ActorOf(Props.Create(() => new TurnRecorder(turns)));
        system.EventStream.Subscribe(recorder, typeof(TurnCompleted));
        return turns;
    }
}
