using Capitals;
using Pipeline.Actors.Client;
using Pipeline.Actors.Tests.Infrastructure;

namespace Pipeline.Actors.Tests;

/// <summary>examples/Capitals runs its four-turn conversation to the end on the tiny model.</summary>
public class CapitalsTests(TinyModel tiny) : IClassFixture<TinyModel>
{
    [Fact]
    public async Task The_conversation_runs_in_one_session_and_reports_every_turn()
    {
        var (system, client) = tiny.Start();
        using var _ = system;
        await using var session = ChatSession.Attach(client);
        using var output = new StringWriter();
        var finals = await CapitalsConversation.RunAsync(session, output, maxNewTokens: 5, seed: 1);

        Assert.Equal(4, finals.Count);
        Assert.Equal(0, finals[0].CachedTokens);
        for (int i = 1; i < 4; i++)
            Assert.True(finals[i].CachedTokens > finals[i - 1].PromptTokens / 2, $"turn {i + 1} cached {finals[i].CachedTokens}");
        var transcript = await session.GetTranscriptAsync();
        Assert.Equal(CapitalsConversation.System, transcript[0].Content);
        Assert.Equal(CapitalsConversation.Turns, transcript.Where(m => m.Role == ChatMessage.User).Select(m => m.Content));
        string text = output.ToString();
        Assert.Equal(4, text.Split("ttft ").Length - 1);
        Assert.Contains("best decode over turns 2-4: ", text);
        Assert.Equal(finals.Skip(1).Max(f => f.DecodeTokensPerSecond), CapitalsConversation.BestDecode(finals));
    }
}
