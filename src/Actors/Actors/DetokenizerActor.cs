using Akka.Actor;
using Pipeline.Actors.Execution;
using Pipeline.Actors.Faults;
using Pipeline.Actors.Messages;
using Pipeline.Actors.Text;

namespace Pipeline.Actors.Actors;

/// <summary>
/// Turns each session's generated tokens into events with an incremental decoder per session
/// (detokenizer and output parser, <see cref="ITurnDecoder"/>). Requests are numbered by token index:
/// the decoder must hold exactly the turn's earlier tokens, otherwise (after this actor restarted
/// and lost its state) it answers <see cref="DetokenizerOutOfSync"/> and the session resends with
/// the turn's tokens to replay. The last answer per session is kept, so a session that restarted
/// and asks again for the same token gets the same events.
/// </summary>
public sealed class DetokenizerActor : PipelineActor
{
    private sealed class TurnOutput(string turnId, ITurnDecoder decoder)
    {
        public string TurnId { get; } = turnId;
        public ITurnDecoder Decoder { get; } = decoder;
        public int Held { get; set; }
        public TokenDetokenized? LastReply { get; set; }
    }

    private readonly Dictionary<string, TurnOutput> _outputs = new(StringComparer.Ordinal);
    private readonly IChatFormat _format;
    private readonly List<ChatEvent> _events = [];

    public DetokenizerActor(PipelineModel model, FaultInjector faults)
        : base(ActorRole.Detokenizer, faults)
    {
        _format = model.ChatFormat;
        Receive<DetokenizeToken>(OnToken);
        Receive<ForgetSession>(m => _outputs.Remove(m.SessionId));
    }

    public static Props Props(PipelineModel model, PipelineSettings settings, FaultInjector faults) =>
        Akka.Actor.Props.Create(() => new DetokenizerActor(model, faults)).WithDispatcher(settings.StageDispatcher);

    private void OnToken(DetokenizeToken m)
    {
        _outputs.TryGetValue(m.SessionId, out var output);
        if (output is not null && output.TurnId == m.TurnId && output.LastReply is { } last
            && last.TokenIndex == m.TokenIndex && output.Held == m.TokenIndex + (m.Token is null ? 0 : 1))
        {
            // Asked again for the token just answered (the session restarted before it saw the answer).
            Sender.Tell(last with { Header = NewHeader(), RequestId = m.Header.MessageId });
            return;
        }
        if (m.Replay is { } replay)
        {
            if (replay.Length != m.TokenIndex)
                throw new ArgumentException($"replay of {replay.Length} tokens for token index {m.TokenIndex} of session {m.SessionId}");
            output = new TurnOutput(m.TurnId, _format.CreateDecoder(m.Settings));
            foreach (int token in replay)
                output.Decoder.Push(token, _events);
            _events.Clear();
            output.Held = replay.Length;
            _outputs[m.SessionId] = output;
        }
        else if (output is null || output.TurnId != m.TurnId)
        {
            if (m.TokenIndex != 0)
            {
                Sender.Tell(new DetokenizerOutOfSync(NewHeader(), m.SessionId, m.TurnId, m.Header.MessageId, 0));
                return;
            }
            output = new TurnOutput(m.TurnId, _format.CreateDecoder(m.Settings));
            _outputs[m.SessionId] = output;
        }
        if (output.Held != m.TokenIndex)
        {
            Sender.Tell(new DetokenizerOutOfSync(NewHeader(), m.SessionId, m.TurnId, m.Header.MessageId, output.Held));
            return;
        }

        _events.Clear();
        if (m.Token is { } id)
        {
            output.Decoder.Push(id, _events);
            output.Held++;
        }
        if (m.Flush)
            output.Decoder.Flush(_events);
        var reply = new TokenDetokenized(
            NewHeader(), m.SessionId, m.TurnId, m.TokenIndex, m.Header.MessageId, _events.ToArray(), output.Decoder.StopHit, output.Decoder.ReasoningTokens);
        output.LastReply = reply;
        _events.Clear();
        Sender.Tell(reply);
    }
}
