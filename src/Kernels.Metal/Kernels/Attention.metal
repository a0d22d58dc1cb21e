// Causal attention (decode and prefill) and the KV-cache store.
//
// attention: one threadgroup per (query head, query token) (KernelGeometry.Attention), 4
// simdgroups. The visible keys j of query position i are split round-robin over the simdgroups;
// each simdgroup runs an online softmax over its keys: lane l owns dims l, l+32, ... of q and of
// the output accumulator (head_dim <= 512, so at most 16 per lane), a score is one simd_sum.
// The 4 partial (max, sum, acc) are merged through threadgroup memory. Keys of the current block
// come from block_k/block_v (row j - start), earlier ones from the cache slot j % capacity.
// Visibility as ReferenceBackend.Visible: j <= i (or both in one bidirectional range) and,
// with a window, i - j < window. Scores are q.k * scale; softmax in f32.

static constant constexpr uint kAttnSimdgroups = 4;
static constant constexpr uint kAttnMaxDimsPerLane = 16;

struct AttentionParams {
    uint tokens;
    uint heads;
    uint kv_heads;
    uint head_dim;
    uint window;       // 0 = full causal
    uint capacity;     // cache slots
    uint start;        // absolute position of the block's first token
    float scale;
    uint range_count;  // bidirectional ranges (pairs of block rows [start, end))
};

// Whether block rows a and b share a bidirectional range.
inline bool same_range(constant int* ranges, uint count, int a, int b) {
    for (uint r = 0; r < count; r++) {
        int lo = ranges[2 * r];
        int hi = ranges[2 * r + 1];
        if (a >= lo && a < hi && b >= lo && b < hi) return true;
    }
    return false;
}

kernel void attention(device const float* q [[buffer(0)]],
                      device const float* block_k [[buffer(1)]],
                      device const float* block_v [[buffer(2)]],
                      device const float* cache_k [[buffer(3)]],
                      device const float* cache_v [[buffer(4)]],
                      device float* out [[buffer(5)]],
                      constant AttentionParams& p [[buffer(6)]],
                      constant int* ranges [[buffer(7)]],
                      uint2 tg [[threadgroup_position_in_grid]],
                      uint sg [[simdgroup_index_in_threadgroup]],
                      uint lane [[thread_index_in_simdgroup]]) {
    threadgroup float part_max[kAttnSimdgroups];
    threadgroup float part_sum[kAttnSimdgroups];
    threadgroup float part_acc[kAttnSimdgroups * 32 * kAttnMaxDimsPerLane];

    const uint head = tg.x;
    const uint t = tg.y;
    const uint d = p.head_dim;
    const uint kv_head = head / (p.heads / p.kv_heads);
    const int i = int(p.start + t);

    float qv[kAttnMaxDimsPerLane];
    float acc[kAttnMaxDimsPerLane];
    device const float* qr = q + (ulong(t) * p.heads + head) * d;
    for (uint m = 0; m < kAttnMaxDimsPerLane; m++) {
        uint e = lane + 32 * m;
        qv[m] = e < d ? qr[e] : 0.0f;
        acc[m] = 0.0f;
    }

    // Candidate keys: [lo, hi]; hi extends past i only inside a bidirectional range.
    int lo = p.window > 0 ? max(0, i - int(p.window) + 1) : 0;
    int hi = i;
    for (uint r = 0; r < p.range_count; r++) {
        int a = int(p.start) + ranges[2 * r];
        int b = int(p.start) + ranges[2 * r + 1];
        if (i >= a && i < b) hi = max(hi, b - 1);
    }

    float run_max = -INFINITY;
    float run_sum = 0.0f;
    for (int j = lo + int(sg); j <= hi; j += int(kAttnSimdgroups)) {
        if (j > i && !same_range(ranges, p.range_count, i - int(p.start), j - int(p.start))) continue;
        device const float* kr;
        device const float* vr;
        if (j >= int(p.start)) {
            ulong row = (ulong(j - int(p.start)) * p.kv_heads + kv_head) * d;
            kr = block_k + row;
            vr = block_v + row;
        } else {
            ulong row = (ulong(uint(j) % p.capacity) * p.kv_heads + kv_head) * d;
            kr = cache_k + row;
            vr = cache_v + row;
        }
        float dot_part = 0.0f;
        for (uint m = 0; m < kAttnMaxDimsPerLane; m++) {
            uint e = lane + 32 * m;
            if (e < d) dot_part += qv[m] * kr[e];
        }
        float score = simd_sum(dot_part) * p.scale;
        float new_max = max(run_max, score);
        float correction = exp(run_max - new_max);
        float weight = exp(score - new_max);
        run_sum = run_sum * correction + weight;
        for (uint m = 0; m < kAttnMaxDimsPerLane; m++) {
            uint e = lane + 32 * m;
            if (e < d) acc[m] = acc[m] * correction + weight * vr[e];
        }
        run_max = new_max;
    }

    if (lane == 0) {
        part_max[sg] = run_max;
        part_sum[sg] = run_sum;
    }
    for (uint m = 0; m < kAttnMaxDimsPerLane; m++) part_acc[(sg * kAttnMaxDimsPerLane + m) * 32 + lane] = acc[m];
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (sg != 0) return;

    float total_max = part_max[0];
    for (uint s = 1; s < kAttnSimdgroups; s++) total_max = max(total_max, part_max[s]);
    float factor[kAttnSimdgroups];
    float total_sum = 0.0f;
    for (uint s = 0; s < kAttnSimdgroups; s++) {
        factor[s] = exp(part_max[s] - total_max);   // 0 for a simdgroup that saw no key
        total_sum += part_sum[s] * factor[s];
    }
    device float* o = out + (ulong(t) * p.heads + head) * d;
    for (uint m = 0; m < kAttnMaxDimsPerLane; m++) {
        uint e = lane + 32 * m;
        if (e >= d) continue;
        float v = 0.0f;
        for (uint s = 0; s < kAttnSimdgroups; s++) v += part_acc[(s * kAttnMaxDimsPerLane + m) * 32 + lane] * factor[s];
        o[e] = v / total_sum;
    }
}

// Writes block rows first..tokens-1 (the last `capacity` of the block) into slots (start + t) % capacity.
struct StoreKvParams {
    uint tokens;
    uint kv_width;
    uint capacity;
    uint start;
    uint first;
};

kernel void store_kv(device const float* block_k [[buffer(0)]],
                     device const float* block_v [[buffer(1)]],
                     device float* cache_k [[buffer(2)]],
                     device float* cache_v [[buffer(3)]],
                     constant StoreKvParams& p [[buffer(4)]],
                     uint i [[thread_position_in_grid]]) {
    uint count = (p.tokens - p.first) * p.kv_width;
    if (i >= count) return;
    uint t = p.first + i / p.kv_width;
    uint e = i % p.kv_width;
    ulong slot = ulong((p.start + t) % p.capacity);
    cache_k[slot * p.kv_width + e] = block_k[ulong(t) * p.kv_width + e];
    cache_v[slot * p.kv_width + e] = block_v[ulong(t) * p.kv_width + e];
}
