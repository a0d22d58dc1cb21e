using Akka.Actor;
using Pipeline.Actors.Execution;
using Pipeline.Actors.Hosting;

namespace Pipeline.Actors.Tests.Infrastructure;

/// <summary>
/// The tiny Gemma-4 checkpoint (tests/fixtures/gemma4-tiny-a/ud-q2kxl) with the embedded Gemma-4 tokenizer and
/// its chat template, loaded once per test class.
/// </summary>
public sealed class TinyModel : IDisposable
{
    public TinyModel()
    {
        Model = PipelineModel.Load(TestPaths.TinyModel, threads: 1);
    }

    public PipelineModel Model { get; }

    /// <summary>HOCON the actor tests share: small prefill chunks (prompts span several), short step timeout.</summary>
    public const string TestHocon = """
        pipeline.prefill-chunk = 16
        pipeline.sliding-cache-reserve = 32
        pipeline.step-timeout = 60s
        akka.actor.serialize-messages = on
        """;

    /// <summary>A fresh actor system running the pipeline on the shared model.</summary>
    public (ActorSystem System, PipelineClient Client) Start(string hocon = "", string name = "pipeline-test")
    {
        var system = ActorSystem.Create(name, PipelineConfig.Load(TestHocon + "\n" + hocon));
        return (system, PipelineClient.Start(system, Model));
    }

    public void Dispose() => Model.Dispose();
}
