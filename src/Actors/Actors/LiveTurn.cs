using System.Diagnostics;
using System.Text;
using System.Threading.Channels;

namespace Pipeline.Actors.Actors;

/// <summary>
/// The part of a turn that lives only in this process and survives a restart of the session's
/// actor by being handed over in <see cref="Messages.ResumeTurn"/>: the caller's writer and token,
/// the turn's span, and what was streamed so far (for the transcript).
/// </summary>
public sealed class LiveTurn
{
    internal LiveTurn(TurnRequest request, ChannelWriter<ChatEvent> output, CancellationToken cancellation, Activity? span)
    {
        Request = request;
        Output = output;
        Cancellation = cancellation;
        Span = span;
    }

    public TurnRequest Request { get; }
    internal ChannelWriter<ChatEvent> Output { get; }
    internal CancellationToken Cancellation { get; }
    internal Activity? Span { get; }
    internal CancellationTokenRegistration Registration { get; set; }
    internal StringBuilder Content { get; } = new();
    internal StringBuilder Reasoning { get; } = new();
    internal List<ToolCall> ToolCalls { get; } = [];
    internal bool CancelRequested { get; set; }
    internal bool Completed { get; set; }
}
