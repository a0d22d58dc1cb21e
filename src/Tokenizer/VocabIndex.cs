using System.Numerics;
using System.Runtime.CompilerServices;

namespace Pipeline.Tokenizer;

/// <summary>
/// Token text -> id for the model vocabulary, looked up by span. Open addressing over one
/// array of (hash, id) slots, so a lookup touches the slot array and, on a hash match, the token
/// string: loading does ~1.5M lookups (three per merge), where Dictionary's extra indirection
/// showed up as the largest load cost.
/// </summary>
internal sealed class VocabIndex
{
    private readonly string?[] _tokens; // [id] -> token
    private readonly ulong[] _slots;    // (hash << 32) | (id + 1); 0 = empty
    private readonly int _shift;

    /// <summary>Indexes every non-null entry; <paramref name="duplicate"/> reports a token listed under two ids.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // runs once per load: skip tier-0 JIT
    public VocabIndex(string?[] tokensById, Action<string, int, int> duplicate)
    {
        _tokens = tokensById;
        int capacity = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(16, tokensById.Length * 2));
        _slots = new ulong[capacity];
        _shift = 32 - BitOperations.Log2((uint)capacity);
        for (int id = 0; id < tokensById.Length; id++)
        {
            if (tokensById[id] is not { } token)
                continue;
            uint hash = Hash(token);
            int slot = Slot(hash);
            while (_slots[slot] != 0)
            {
                int other = (int)(uint)_slots[slot] - 1;
                if ((uint)(_slots[slot] >> 32) == hash && tokensById[other] == token)
                    duplicate(token, other, id);
                slot = (slot + 1) & (_slots.Length - 1);
            }
            _slots[slot] = ((ulong)hash << 32) | (uint)(id + 1);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)] // into the load loop, which is compiled optimized up front
    public bool TryGetId(ReadOnlySpan<char> token, out int id)
    {
        uint hash = Hash(token);
        ulong[] slots = _slots;
        for (int slot = Slot(hash); ; slot = (slot + 1) & (slots.Length - 1))
        {
            ulong entry = slots[slot];
            if (entry == 0)
                break;
            if ((uint)(entry >> 32) == hash)
            {
                int candidate = (int)(uint)entry - 1;
                if (token.SequenceEqual(_tokens[candidate]))
                {
                    id = candidate;
                    return true;
                }
            }
        }
        id = -1;
        return false;
    }

    private int Slot(uint hash) => (int)((hash * 0x9E3779B1u) >> _shift);

    // FNV-1a over UTF-16 units with a final avalanche; collisions only cost a probe.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Hash(ReadOnlySpan<char> s)
    {
        uint h = 2166136261u;
        foreach (char c in s)
            h = (h ^ c) * 16777619u;
        return h ^ (h >> 16);
    }
}
