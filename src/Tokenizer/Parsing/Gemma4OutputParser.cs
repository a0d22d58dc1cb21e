using System.Text;

namespace Pipeline.Tokenizer.Parsing;

/// <summary>
/// Splits streamed Gemma-4 output text into answer text, thinking and tool calls.
/// <list type="bullet">
/// <item><c>&lt;|channel&gt;thought\n ... &lt;channel|&gt;</c> is reasoning; everything else outside calls is content.</item>
/// <item><c>&lt;|tool_call&gt;call:NAME{...}&lt;tool_call|&gt;</c> becomes a <see cref="ToolCall"/> (never an exception).</item>
/// <item>Stop markers (<c>&lt;turn|&gt;</c>, <c>&lt;eos&gt;</c>, <c>&lt;|tool_response&gt;</c>) and stray closing markers are dropped.</item>
/// </list>
/// Feed it the text of the generated tokens with special tokens kept (the streaming detokenizer with
/// skip_special_tokens=false gives exactly that; every marker is one special token there). Deltas may be split
/// anywhere: a possible marker prefix at the end of a delta is held back until the next delta or <see cref="Finish"/>.
/// Not thread-safe; one instance per generated sequence.
/// </summary>
public sealed class Gemma4OutputParser
{
    public const string ChannelOpen = "<|channel>";
    public const string ChannelClose = "<channel|>";
    public const string ToolCallOpen = "<|tool_call>";
    public const string ToolCallClose = "<tool_call|>";

    private static readonly string[] StopMarkers = ["<turn|>", "<eos>", "<|tool_response>"];
    private static readonly string[] ContentMarkers = [ChannelOpen, ToolCallOpen, ChannelClose, ToolCallClose, .. StopMarkers];
    private static readonly string[] ReasoningMarkers = [ChannelClose, .. StopMarkers];
    private static readonly string[] CallMarkers = [ToolCallClose, ToolCallSyntax.StringDelimiter, .. StopMarkers];

    // A channel name longer than this is not a header; its text is treated as reasoning.
    private const int MaxChannelNameLength = 64;

    private enum Mode
    {
        Content,
        ChannelHeader,
        Reasoning,
        ToolCall,
    }

    private readonly StringBuilder pending = new();
    private readonly StringBuilder call = new();
    private readonly List<OutputEvent> events = [];
    private Mode mode = Mode.Content;
    private bool inCallString;
    private bool finished;

    /// <summary>The name of the channel being read, or of the last channel (normally "thought").</summary>
    public string? ChannelName { get; private set; }

    /// <summary>Parses one text delta; returns the events it completes (adjacent deltas of one kind merged).</summary>
    public IReadOnlyList<OutputEvent> Push(string delta)
    {
        ArgumentNullException.ThrowIfNull(delta);
        if (finished)
            throw new InvalidOperationException("Push after Finish.");
        pending.Append(delta);
        Process(final: false);
        return TakeEvents();
    }

    /// <summary>Ends the output: held-back text is released and an unclosed tool call is reported as Invalid.</summary>
    public IReadOnlyList<OutputEvent> Finish()
    {
        if (!finished)
        {
            Process(final: true);
            if (mode == Mode.ToolCall)
                EndCall(closed: false);
            else if (mode == Mode.ChannelHeader && call.Length > 0)
                Emit(new ReasoningDelta(call.ToString()));
            call.Clear();
            mode = Mode.Content;
            finished = true;
        }
        return TakeEvents();
    }

    /// <summary>Parses a complete output.</summary>
    public static ParsedOutput Parse(string text)
    {
        var parser = new Gemma4OutputParser();
        var all = new List<OutputEvent>(parser.Push(text));
        all.AddRange(parser.Finish());
        return new ParsedOutput(
            string.Concat(all.OfType<ContentDelta>().Select(d => d.Text)),
            string.Concat(all.OfType<ReasoningDelta>().Select(d => d.Text)),
            [.. all.OfType<ToolCall>()]);
    }

    private List<OutputEvent> TakeEvents()
    {
        var result = new List<OutputEvent>(events);
        events.Clear();
        return result;
    }

    private void Emit(OutputEvent e)
    {
        if (events.Count > 0)
        {
            switch (events[^1], e)
            {
                case (ContentDelta a, ContentDelta b):
                    events[^1] = new ContentDelta(a.Text + b.Text);
                    return;
                case (ReasoningDelta a, ReasoningDelta b):
                    events[^1] = new ReasoningDelta(a.Text + b.Text);
                    return;
            }
        }
        events.Add(e);
    }

    private void EmitText(string text)
    {
        if (text.Length == 0)
            return;
        Emit(mode == Mode.Content ? new ContentDelta(text) : new ReasoningDelta(text));
    }

    private void Process(bool final)
    {
        string text = pending.ToString();
        pending.Clear();
        int pos = 0;
        while (pos < text.Length)
        {
            int consumed = mode switch
            {
                Mode.Content => StepText(text, pos, final, ContentMarkers),
                Mode.Reasoning => StepText(text, pos, final, ReasoningMarkers),
                Mode.ChannelHeader => StepHeader(text, pos, final),
                _ => StepCall(text, pos, final),
            };
            if (consumed == 0)
                break;
            pos += consumed;
        }
        pending.Append(text, pos, text.Length - pos);
    }

    /// <summary>Finds the next '&lt;' that starts (or may start) a marker; returns how much was consumed, 0 to wait.</summary>
    private int StepText(string text, int pos, bool final, string[] markers)
    {
        int lt = text.IndexOf('<', pos);
        if (lt < 0)
        {
            EmitText(text[pos..]);
            return text.Length - pos;
        }
        if (lt > pos)
        {
            EmitText(text[pos..lt]);
            return lt - pos;
        }
        var (marker, partial) = MatchMarker(text, pos, markers);
        if (marker is null)
        {
            if (partial && !final)
                return 0;
            EmitText("<");
            return 1;
        }
        switch (marker)
        {
            case ChannelOpen:
                mode = Mode.ChannelHeader;
                call.Clear();
                break;
            case ToolCallOpen:
                mode = Mode.ToolCall;
                call.Clear();
                inCallString = false;
                break;
            case ChannelClose when mode == Mode.Reasoning:
                mode = Mode.Content;
                break;
        }
        return marker.Length;
    }

    private int StepHeader(string text, int pos, bool final)
    {
        int newline = text.IndexOf('\n', pos);
        int close = text.IndexOf(ChannelClose, pos, StringComparison.Ordinal);
        if (close >= 0 && (newline < 0 || close < newline))
        {
            // "<|channel>name<channel|>": an empty channel.
            ChannelName = call.Append(text, pos, close - pos).ToString();
            call.Clear();
            mode = Mode.Content;
            return close + ChannelClose.Length - pos;
        }
        int end = newline >= 0 ? newline : text.Length;
        call.Append(text, pos, end - pos);
        if (newline >= 0)
        {
            ChannelName = call.ToString();
            call.Clear();
            mode = Mode.Reasoning;
            return newline + 1 - pos;
        }
        if (call.Length > MaxChannelNameLength)
        {
            mode = Mode.Reasoning;
            EmitText(call.ToString());
            call.Clear();
            return end - pos;
        }
        // Keep a possible partial "<channel|>" in pending so it can still be recognized.
        int keep = final ? 0 : PartialSuffixLength(text, pos, [ChannelClose]);
        call.Length -= keep;
        return end - pos - keep;
    }

    private int StepCall(string text, int pos, bool final)
    {
        int lt = text.IndexOf('<', pos);
        if (lt < 0)
        {
            call.Append(text, pos, text.Length - pos);
            return text.Length - pos;
        }
        if (lt > pos)
        {
            call.Append(text, pos, lt - pos);
            return lt - pos;
        }
        var (marker, partial) = MatchMarker(text, pos, CallMarkers);
        if (marker is null)
        {
            if (partial && !final)
                return 0;
            call.Append('<');
            return 1;
        }
        if (marker == ToolCallSyntax.StringDelimiter)
        {
            inCallString = !inCallString;
            call.Append(marker);
        }
        else if (inCallString && marker == ToolCallClose)
            call.Append(marker);
        else
            EndCall(closed: marker == ToolCallClose);
        return marker.Length;
    }

    private void EndCall(bool closed)
    {
        string raw = call.ToString();
        call.Clear();
        mode = Mode.Content;
        Emit(closed ? ToolCallSyntax.Parse(raw) : new ToolCall(null, null, ToolCallStatus.Invalid, raw));
    }

    /// <summary>The marker starting at <paramref name="pos"/>, or whether the text there is a proper prefix of one.</summary>
    private static (string? Marker, bool Partial) MatchMarker(string text, int pos, string[] markers)
    {
        bool partial = false;
        int available = text.Length - pos;
        foreach (var marker in markers)
        {
            if (available >= marker.Length)
            {
                if (string.CompareOrdinal(text, pos, marker, 0, marker.Length) == 0)
                    return (marker, false);
            }
            else if (string.CompareOrdinal(text, pos, marker, 0, available) == 0)
                partial = true;
        }
        return (null, partial);
    }

    private static int PartialSuffixLength(string text, int start, string[] markers)
    {
        int best = 0;
        foreach (var marker in markers)
        {
            for (int length = Math.Min(marker.Length - 1, text.Length - start); length > best; length--)
            {
                if (string.CompareOrdinal(text, text.Length - length, marker, 0, length) == 0)
                {
                    best = length;
                    break;
                }
            }
        }
        return best;
    }
}
