namespace Pipeline.Host.Benchmarks;

/// <summary>CPU time counters from /proc (jiffies), read before and after timed runs.</summary>
public readonly record struct CpuTimes(long Busy, long Total, long Self, long MajorFaults)
{
    /// <summary>Now, or zeros where /proc is missing (the "clean run" checks then read 0).</summary>
    public static CpuTimes Read()
    {
        if (!File.Exists("/proc/stat") || !File.Exists("/proc/self/stat"))
            return default;
        // cpu user nice system idle iowait irq softirq steal
        long[] a = [.. File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Take(8).Select(long.Parse)];
        // Fields after "(comm) ": state is [0], majflt [9], utime [11], stime [12].
        string stat = File.ReadAllText("/proc/self/stat");
        string[] me = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return new CpuTimes(a[0] + a[1] + a[2] + a[5] + a[6] + a[7], a.Sum(), long.Parse(me[11]) + long.Parse(me[12]), long.Parse(me[9]));
    }

    /// <summary>Cores kept busy by other processes (and hypervisor steal) between two readings, as llama.cpp's run.mjs computes it.</summary>
    public static double OtherProcessCores(CpuTimes before, CpuTimes after)
    {
        long total = after.Total - before.Total;
        if (total <= 0)
            return 0;
        return (after.Busy - before.Busy - (after.Self - before.Self)) / ((double)total / Environment.ProcessorCount);
    }
}

/// <summary>Resident memory of this process from /proc/self/status, in bytes (0 where unavailable).</summary>
public readonly record struct MemoryStatus(long Rss, long PeakRss, long RssAnon, long RssFile)
{
    public static MemoryStatus Read()
    {
        if (!File.Exists("/proc/self/status"))
            return default;
        long rss = 0, peak = 0, anon = 0, file = 0;
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            int colon = line.IndexOf(':');
            if (colon < 0)
                continue;
            string key = line[..colon];
            if (key is not ("VmRSS" or "VmHWM" or "RssAnon" or "RssFile"))
                continue;
            long bytes = long.Parse(line[(colon + 1)..].Trim().Split(' ')[0]) * 1024;
            switch (key)
            {
                case "VmRSS": rss = bytes; break;
                case "VmHWM": peak = bytes; break;
                case "RssAnon": anon = bytes; break;
                case "RssFile": file = bytes; break;
            }
        }
        return new MemoryStatus(rss, peak, anon, file);
    }

    /// <summary>Resets the peak (VmHWM) to the current RSS, so a freed probe buffer does not count as the model's peak.</summary>
    public static bool TryResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}

public static class MachineInfo
{
    /// <summary>The CPU's model name from /proc/cpuinfo, or "unknown".</summary>
    public static string CpuModel()
    {
        if (File.Exists("/proc/cpuinfo"))
        {
            foreach (string line in File.ReadLines("/proc/cpuinfo"))
            {
                if (line.StartsWith("model name", StringComparison.Ordinal))
                    return line[(line.IndexOf(':') + 1)..].Trim();
            }
        }
        return "unknown";
    }
}
