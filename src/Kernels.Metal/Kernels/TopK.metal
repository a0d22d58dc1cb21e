// Top-k of a logits row for sampling, without reading 262,144 logits back to the host.
// One threadgroup (256 threads) per chunk of up to 2048 candidates: the chunk is staged in
// threadgroup memory, then k rounds each pick the largest remaining value (ties: lowest index)
// by a threadgroup reduction and retire it. Pass 1 runs over the logits (indices implicit),
// further passes over the survivors (values + indices) until one chunk remains
// (KernelGeometry.TopK). Output per chunk: k values descending, and their indices.

static constant constexpr uint kTopKThreads = 256;
static constant constexpr uint kTopKChunk = 2048;

struct TopKParams {
    uint n;             // candidates
    uint k;
    uint has_indices;   // 0: candidate c has index c
};

// Orders (value, index) pairs: larger value first, then lower index.
inline bool topk_better(float v, uint i, float best_v, uint best_i) {
    return v > best_v || (v == best_v && i < best_i);
}

kernel void topk(device const float* values [[buffer(0)]],
                 device const uint* indices [[buffer(1)]],
                 device float* out_values [[buffer(2)]],
                 device uint* out_indices [[buffer(3)]],
                 constant TopKParams& p [[buffer(4)]],
                 uint chunk [[threadgroup_position_in_grid]],
                 uint tid [[thread_index_in_threadgroup]],
                 uint sg [[simdgroup_index_in_threadgroup]],
                 uint lane [[thread_index_in_simdgroup]]) {
    threadgroup float vals[kTopKChunk];
    threadgroup uint ids[kTopKChunk];
    threadgroup float best_v[kTopKThreads / 32];
    threadgroup uint best_i[kTopKThreads / 32];
    threadgroup uint best_slot[kTopKThreads / 32];

    const uint base = chunk * kTopKChunk;
    for (uint s = tid; s < kTopKChunk; s += kTopKThreads) {
        uint c = base + s;
        vals[s] = c < p.n ? values[c] : -INFINITY;
        ids[s] = c < p.n ? (p.has_indices != 0 ? indices[c] : c) : 0xFFFFFFFFu;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    for (uint round = 0; round < p.k; round++) {
        float v = -INFINITY;
        uint id = 0xFFFFFFFFu;
        uint slot = 0;
        for (uint s = tid; s < kTopKChunk; s += kTopKThreads)
            if (topk_better(vals[s], ids[s], v, id)) {
                v = vals[s];
                id = ids[s];
                slot = s;
            }
        // Simdgroup winner: largest value, then lowest index among lanes holding it.
        float sv = simd_max(v);
        uint si = simd_min(v == sv ? id : 0xFFFFFFFFu);
        uint sslot = simd_min(v == sv && id == si ? slot : 0xFFFFFFFFu);
        if (lane == 0) {
            best_v[sg] = sv;
            best_i[sg] = si;
            best_slot[sg] = sslot;
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
        if (tid == 0) {
            uint w = 0;
            for (uint g = 1; g < kTopKThreads / 32; g++)
                if (topk_better(best_v[g], best_i[g], best_v[w], best_i[w])) w = g;
            out_values[chunk * p.k + round] = best_v[w];
            out_indices[chunk * p.k + round] = best_i[w];
            vals[best_slot[w]] = -INFINITY;
            ids[best_slot[w]] = 0xFFFFFFFFu;
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
}
