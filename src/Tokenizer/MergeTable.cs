using System.Numerics;
using System.Runtime.CompilerServices;

namespace Pipeline.Tokenizer;

/// <summary>
/// The BPE merge list as an open-addressing hash map (leftId, rightId) -> (rank, mergedId).
/// Built once at load; lookups are lock-free and allocation-free, which matters because
/// every adjacent symbol pair of every encoded word is looked up here.
/// </summary>
internal sealed class MergeTable
{
    private const ulong EmptyKey = ulong.MaxValue; // ids are non-negative, so (-1,-1) never occurs

    private Entry[] _entries; // [capacity], power of two, load factor <= 0.5
    private int _shift;
    private int _count;

    private struct Entry
    {
        public ulong Key;
        public int Rank;
        public int MergedId;
    }

    public MergeTable(int expectedCount)
    {
        _entries = Allocate(expectedCount * 2, out _shift);
    }

    private static Entry[] Allocate(int minCapacity, out int shift)
    {
        int capacity = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(16, minCapacity));
        var entries = new Entry[capacity];
        entries.AsSpan().Fill(new Entry { Key = EmptyKey });
        shift = 64 - BitOperations.Log2((uint)capacity);
        return entries;
    }

    public int Count => _count;

    /// <summary>Adds or overwrites: a pair listed twice keeps its last rank, as HF's HashMap collect does.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // runs once per load: skip tier-0 JIT
    public void Set(int left, int right, int rank, int mergedId)
    {
        if (_count * 2 >= _entries.Length)
            Grow();
        ulong key = Pack(left, right);
        int slot = Slot(key);
        while (true)
        {
            ref Entry e = ref _entries[slot];
            if (e.Key == EmptyKey)
            {
                e = new Entry { Key = key, Rank = rank, MergedId = mergedId };
                _count++;
                return;
            }
            if (e.Key == key)
            {
                e.Rank = rank;
                e.MergedId = mergedId;
                return;
            }
            slot = (slot + 1) & (_entries.Length - 1);
        }
    }

    public bool TryGet(int left, int right, out int rank, out int mergedId)
    {
        ulong key = Pack(left, right);
        int slot = Slot(key);
        Entry[] entries = _entries;
        while (true)
        {
            ref Entry e = ref entries[slot];
            if (e.Key == key)
            {
                rank = e.Rank;
                mergedId = e.MergedId;
                return true;
            }
            if (e.Key == EmptyKey)
            {
                rank = 0;
                mergedId = 0;
                return false;
            }
            slot = (slot + 1) & (entries.Length - 1);
        }
    }

    /// <summary>Whether any merge has <paramref name="id"/> as an operand.</summary>
    public bool HasOperand(int id)
    {
        foreach (var e in _entries)
        {
            if (e.Key != EmptyKey && ((int)(e.Key >> 32) == id || (int)(uint)e.Key == id))
                return true;
        }
        return false;
    }

    private void Grow()
    {
        Entry[] old = _entries;
        _entries = Allocate(old.Length * 2, out _shift);
        _count = 0;
        foreach (var e in old)
        {
            if (e.Key != EmptyKey)
                Set((int)(e.Key >> 32), (int)(uint)e.Key, e.Rank, e.MergedId);
        }
    }

    private static ulong Pack(int left, int right) => ((ulong)(uint)left << 32) | (uint)right;

    // Fibonacci hashing: the high bits of key * 2^64/phi spread consecutive ids well.
    private int Slot(ulong key) => (int)((key * 0x9E3779B97F4A7C15UL) >> _shift);
}
