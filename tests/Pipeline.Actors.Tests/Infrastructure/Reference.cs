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
    /// As <see cref="Generate"/>, and how many leading tokens the engine's numerics decide: a draw that a
    /// change of the logits by <see cref="Wobble"/> (the scale of f32 rounding differences between the
    /// matvec of one row and the GEMM of a batch, which sum in different orders) would turn into
    /// another token is undecided, and so is everything after it. Batched and alone runs must agree on
    /// the decided tokens; past that point a batched run may legitimately take the other branch.
    /// </summary>
    public (int[] Tokens, int Decided) GenerateDecided(int[] promptIds, SamplingOptions options, int maxNew)
    {
        lock (_gate)
        {
            using var session = _engine.OpenSession();
            session.Prefill(promptIds);
            int decided = -1;
            var tokens = Sample(session, options, maxNew, (sampler, logits, token, produced) =>
            {
                if (decided < 0 && !Decided(sampler, logits, token))
                    decided = produced - 1;
            });
            return (tokens, decided < 0 ? tokens.Length : decided);
        }
    }

    /// <summary>
    /// Largest change of any logit, relative to the largest |logit|, that a decided draw withstands: 4x the
    /// largest batched-vs-alone difference measured on this model (3e-5 at |logit| 12.8).
    /// </summary>
    public const float Wobble = 1e-5f;

    /// <summary>
    /// Whether <paramref name="token"/> is also drawn from the logits moved by <see cref="Wobble"/>: scaled
    /// up and down (shifts every boundary one way) and moved by a fixed random pattern of signs both ways.
    /// </summary>
    private static bool Decided(Sampler sampler, ReadOnlySpan<float> logits, int token)
    {
        float largest = 0;
        foreach (float logit in logits)
            largest = Math.Max(largest, Math.Abs(logit));
        float step = Wobble * largest;
        var moved = new float[logits.Length];
        var state = sampler.Capture();
        bool decided = true;
        for (int variant = 0; variant < 4 && decided; variant++)
        {
            var pattern = new Random(17);
            for (int i = 0; i < logits.Length; i++)
            {
                moved[i] = variant switch
                {
                    0 => logits[i] * (1 + Wobble),
                    1 => logits[i] * (1 - Wobble),
                    2 => logits[i] + step * (pattern.Next(2) * 2 - 1),
                    _ => logits[i] - step * (pattern.Next(2) * 2 - 1),
                };
            }
            sampler.Restore(state);
            decided = sampler.Sample(moved) == token;
        }
        sampler.Restore(state);
        return decided;
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

    /// <summary>Called before each draw with the sampler (state before the draw), the logits, the token drawn and its 1-based number.</summary>
    private delegate void DrawObserver(Sampler sampler, ReadOnlySpan<float> logits, int token, int produced);

    private int[] Sample(Session session, SamplingOptions options, int maxNew, DrawObserver? observe = null)
    {
        {
            var stops = _engine.Checkpoint.Generation.EosTokenIds;
            var sampler = new Sampler(_engine.VocabSize, options);
            var generated = new List<int>();
            for (int produced = 1; ; produced++)
            {
                int token;
                if (observe is null)
                {
                    token = sampler.Sample(session.Logits);
                }
                else
                {
                    var before = sampler.Capture();
                    token = sampler.Sample(session.Logits);
                    var after = sampler.Capture();
                    sampler.Restore(before);
                    observe(sampler, session.Logits, token, produced);
                    sampler.Restore(after);
                }
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
