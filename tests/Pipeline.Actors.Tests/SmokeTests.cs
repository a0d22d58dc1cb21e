using Pipeline.Actors.Tests.Infrastructure;

namespace Pipeline.Actors.Tests;

public class SmokeTests(TinyModel tiny, Xunit.Abstractions.ITestOutputHelper output) : IClassFixture<TinyModel>
{
    [Fact]
    public async Task A_turn_streams_text_and_finishes_with_usage()
    {
        var (system, client) = tiny.Start();
        using var _ = system;
        var result = await client.RunTurnAsync(new TurnRequest
        {
            SessionId = "smoke",
            Messages = [ChatMessage.FromUser("Hello there, how are you today?")],
            Options = new GenerationOptions { Temperature = 0, MaxNewTokens = 6 },
        }).WaitAsync(TimeSpan.FromSeconds(60));
        output.WriteLine($"{result.Finished} text='{result.Text}'");
        Assert.Null(result.Finished.Error);
        Assert.True(result.Finished.Usage.PromptTokens > 10);
        Assert.True(result.Finished.Usage.CompletionTokens >= 1);
        Assert.Equal(0, result.Finished.Usage.CachedTokens);
        var second = await client.RunTurnAsync(new TurnRequest
        {
            SessionId = "smoke",
            Messages = [ChatMessage.FromUser("And again")],
            Options = new GenerationOptions { Temperature = 0, MaxNewTokens = 40 },
        }).WaitAsync(TimeSpan.FromSeconds(60));
        output.WriteLine($"{second.Finished} text='{second.Text}'");
    }
}
