using System.Diagnostics;
using System.Globalization;

namespace Pipeline.Convert;

/// <summary>A one-line progress bar with bytes/s and ETA, redrawn in place at most four times a second.</summary>
public sealed class ProgressBar(TextWriter writer, long totalBytes, string label)
{
    private const int Width = 30;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private long _done;
    private long _lastRenderTicks = -Stopwatch.Frequency; // render on the first update

    public long Done => _done;

    public void Advance(long bytes)
    {
        _done += bytes;
        long now = _clock.ElapsedTicks;
        if (now - _lastRenderTicks >= Stopwatch.Frequency / 4)
        {
            _lastRenderTicks = now;
            Render();
        }
    }

    public void Finish()
    {
        Render();
        writer.WriteLine();
    }

    private void Render()
    {
        double fraction = totalBytes == 0 ? 1 : Math.Clamp((double)_done / totalBytes, 0, 1);
        double seconds = _clock.Elapsed.TotalSeconds;
        double rate = seconds > 0 ? _done / seconds : 0;
        string eta = rate > 0 ? FormatDuration((totalBytes - _done) / rate) : "--:--";
        int filled = (int)(fraction * Width);
        writer.Write(string.Create(CultureInfo.InvariantCulture,
            $"\r{label} [{new string('#', filled)}{new string('.', Width - filled)}] {fraction * 100,5:0.0}%  {ConversionPlan.FormatSize(_done)} / {ConversionPlan.FormatSize(totalBytes)}  {ConversionPlan.FormatSize(rate)}/s  ETA {eta}   "));
        writer.Flush();
    }

    private static string FormatDuration(double seconds)
    {
        var span = TimeSpan.FromSeconds(Math.Max(0, Math.Round(seconds)));
        return span.TotalHours >= 1
            ? string.Create(CultureInfo.InvariantCulture, $"{(int)span.TotalHours}:{span.Minutes:D2}:{span.Seconds:D2}")
            : string.Create(CultureInfo.InvariantCulture, $"{span.Minutes}:{span.Seconds:D2}");
    }
}
