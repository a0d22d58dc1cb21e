using Akka.Actor;
using Akka.Routing;
using Pipeline.Actors.Execution;
using Pipeline.Actors.Faults;
using Pipeline.Actors.Messages;

namespace Pipeline.Actors.Actors;

/// <summary>
/// Renders conversations with the chat template and tokenizes prompts. Stateless, so it runs as a
/// pool (round-robin) whose routees restart independently; a restarted routee reports the request
/// it lost (<see cref="StageFailed"/>) and the session resends it.
/// </summary>
public sealed class TokenizerActor : PipelineActor
{
    public TokenizerActor(PipelineModel model, FaultInjector faults)
        : base(ActorRole.Tokenizer, faults)
    {
        Receive<RenderPrompt>(m =>
        {
            string text = model.ChatFormat.Render(m.Messages, m.Settings);
            Sender.Tell(new PromptRendered(NewHeader(), m.SessionId, m.TurnId, m.Header.MessageId, text));
        });
        Receive<TokenizePrompt>(m =>
        {
            int[] ids = model.Tokenizer.Encode(m.Text, addSpecialTokens: false);
            Sender.Tell(new PromptTokenized(NewHeader(), m.SessionId, m.TurnId, m.Header.MessageId, ids));
        });
    }

    public static Props PoolProps(PipelineModel model, PipelineSettings settings, FaultInjector faults) =>
        Akka.Actor.Props.Create(() => new TokenizerActor(model, faults))
            .WithDispatcher(settings.StageDispatcher)
            .WithRouter(new RoundRobinPool(settings.TokenizerPoolSize).WithSupervisorStrategy(Supervision.Stages()));
}
