using Pipeline.Model;
using Pipeline.Model.Sampling;

namespace Pipeline.Actors.Tests.Infrastructure;

/// <summary>What the bare engine (no actors) generates: the fault-free, alone reference for the actor tests.</summary>
public sealed class Reference : IDisposable
{
    private readonly Engine _engine = Engine.Load(TestPaths.TinyModel, new EngineOptions { Threads = 1 });
    private readonly object _gate = new();
    private readonly Dictionary<string, Session> _conversations = [];

    /// <summary>Tokens for <paramref name="promptIds"/>: sample, stop at an end-of-turn token, a cut-off or <paramref name="maxNew"/> tokens.</summary>
    public int[] Generate(int[] promptIds, SamplingOptions options, int maxNew)
    {
        lock (_gate)
        {
            using var session = _engine.OpenSession();
            session.Prefill(promptIds);
            return Sample(session, options, maxNew);
        }
    }

    /// <summary>
    /// As <see cref="Generate"/>, on an engine session kept per <paramref name="conversation"/>: truncated to the
    /// prefix it shares with the prompt, so only the new suffix is computed (long multi-turn tests stay fast).
    /// </summary>
    public int[] GenerateInConversation(string conversation, int[] promptIds, SamplingOptions options, int maxNew)
    {
        lock (_gate)
        {
            if (!_conversations.TryGetValue(conversation, out var session))
                _conversations[conversation] = session = _engine.OpenSession();
            var held = session.Tokens;
            int common = 0;
            while (common < held.Length && common < promptIds.Length - 1 && held[common] == promptIds[common])
                common++;
            session.Truncate(common);
            session.Prefill(promptIds.AsSpan(common));
            return Sample(session, options, maxNew);
        }
    }

    private int[] Sample(Session session, SamplingOptions options, int maxNew)
    {
        {
            var stops = _engine.Checkpoint.Generation.EosTokenIds;
            var sampler = new Sampler(_engine.VocabSize, options);
            var generated = new List<int>();
            for (int produced = 1; ; produced++)
            {
                int token = sampler.Sample(session.Logits);
                var stop = sampler.Observe(token);
                if (stops.Contains(token))
                    break;
                generated.Add(token);
                if (stop != SamplerStop.None || produced >= maxNew)
                    break;
                session.Decode(token);
            }
            return generated.ToArray();
        }
    }

    public void Dispose()
    {
        foreach (var session in _conversations.Values)
            session.Dispose();
        _engine.Dispose();
    }
}
