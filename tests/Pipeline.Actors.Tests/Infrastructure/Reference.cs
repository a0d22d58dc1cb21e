using Pipeline.Model;
using Pipeline.Model.Sampling;

namespace Pipeline.Actors.Tests.Infrastructure;

/// <summary>What the bare engine (no actors) generates: the fault-free, alone reference for the actor tests.</summary>
public sealed class Reference : IDisposable
{
    private readonly Engine _engine = Engine.Load(TestPaths.TinyModel, new EngineOptions { Threads = 1 });
    private readonly object _gate = new();

    /// <summary>Tokens for <paramref name="promptIds"/>: sample, stop at an end-of-turn token, a cut-off or <paramref name="maxNew"/> tokens.</summary>
    public int[] Generate(int[] promptIds, SamplingOptions options, int maxNew)
    {
        lock (_gate)
        {
            var stops = _engine.Checkpoint.Generation.EosTokenIds;
            using var session = _engine.OpenSession();
            session.Prefill(promptIds);
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

    public void Dispose() => _engine.Dispose();
}
