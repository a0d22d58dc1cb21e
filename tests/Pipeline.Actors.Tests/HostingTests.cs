using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Pipeline.Actors.Execution;
using Pipeline.Actors.Hosting;
using Pipeline.Actors.Sessions;
using Pipeline.Actors.Tests.Infrastructure;

namespace Pipeline.Actors.Tests;

public class HostingTests(TinyModel tiny) : IClassFixture<TinyModel>
{
    [Fact]
    public async Task AddPipelineActors_runs_the_pipeline_in_a_generic_host()
    {
        var store = new InMemorySessionStore();
        var builder = Host.CreateApplicationBuilder();
        builder.Services.AddSingleton(tiny.Model);
        builder.Services.AddPipelineActors(o =>
        {
            o.ActorSystemName = "hosted";
            o.Hocon = "pipeline.layer-groups = 2\nakka.actor.serialize-messages = on";
            o.SessionStore = store;
        });
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            var client = host.Services.GetRequiredService<PipelineClient>();
            Assert.Same(client, await host.Services.GetRequiredService<PipelineStartup>().Client);
            Assert.Equal(2, client.Settings.LayerGroups);
            var result = await client.RunTurnAsync(new TurnRequest
            {
                SessionId = "hosted",
                Messages = [ChatMessage.FromUser("hi")],
                Options = new GenerationOptions { Temperature = 0, MaxNewTokens = 2 },
            }).WaitAsync(TimeSpan.FromSeconds(60));
            Assert.Null(result.Finished.Error);
            Assert.Equal(2, store.Load("hosted")!.Transcript.Count);
            await client.EndSessionAsync("hosted");
            Assert.Null(store.Load("hosted"));
        }
        finally
        {
            await host.StopAsync();
        }
    }
}
