using Akka.Actor;
using Pipeline.Actors.Execution;
using Pipeline.Actors.Faults;
using Pipeline.Actors.Messages;
using Pipeline.Model.Sampling;

namespace Pipeline.Actors.Actors;

/// <summary>
/// Samples next tokens. The state that decides a session's tokens (RNG, repetition history) is the
/// session's: each request carries its snapshot and each answer returns the next one, so a
/// restarted sampler changes nothing. Per session it only keeps a <see cref="Sampler"/> for its
/// vocabulary-sized scratch buffers (dropped by <see cref="ForgetSession"/>).
/// </summary>
public sealed class SamplerActor : PipelineActor
{
    private readonly Dictionary<string, Sampler> _samplers = new(StringComparer.Ordinal);

    public SamplerActor(PipelineModel model, FaultInjector faults)
        : base(ActorRole.Sampler, faults)
    {
        int vocab = model.Text.VocabSize;
        Receive<SampleToken>(m =>
        {
            if (!_samplers.TryGetValue(m.SessionId, out var sampler) || sampler.Options != m.Options)
                _samplers[m.SessionId] = sampler = new Sampler(vocab, m.Options);
            if (m.State is null)
                sampler.Reset();
            else
                sampler.Restore(m.State);
            int token = sampler.Sample(m.Logits.Span);
            var stop = sampler.Observe(token);
            Sender.Tell(new TokenSampled(NewHeader(), m.SessionId, m.TurnId, m.Step, m.Header.MessageId, token, stop, sampler.Capture()));
        });
        Receive<ForgetSession>(m => _samplers.Remove(m.SessionId));
    }

    public static Props Props(PipelineModel model, PipelineSettings settings, FaultInjector faults) =>
        Akka.Actor.Props.Create(() => new SamplerActor(model, faults)).WithDispatcher(settings.StageDispatcher);
}
