// Kernels that exercise the emulator itself: attribute values, barriers, simd collectives,
// simdgroup matrices, and the violations the emulator must report.
#include <metal_stdlib>
using namespace metal;

// 19 values per thread, at the thread's linear index in the grid.
kernel void probe_thread_ids(device uint* out [[buffer(0)]],
                             uint3 gid [[thread_position_in_grid]],
                             uint3 lid [[thread_position_in_threadgroup]],
                             uint3 tgid [[threadgroup_position_in_grid]],
                             uint3 tptg [[threads_per_threadgroup]],
                             uint2 tgpg [[threadgroups_per_grid]],
                             uint3 tpg [[threads_per_grid]],
                             uint tindex [[thread_index_in_threadgroup]],
                             ushort lane [[thread_index_in_simdgroup]],
                             uint sg [[simdgroup_index_in_threadgroup]],
                             uint width [[threads_per_simdgroup]],
                             uint sgs [[simdgroups_per_threadgroup]]) {
    uint linear = (gid.z * tpg.y + gid.y) * tpg.x + gid.x;
    device uint* o = out + linear * 19;
    o[0] = gid.x; o[1] = gid.y; o[2] = gid.z;
    o[3] = lid.x; o[4] = lid.y; o[5] = lid.z;
    o[6] = tgid.x; o[7] = tgid.y; o[8] = tgid.z;
    o[9] = tptg.x * tptg.y * tptg.z;
    o[10] = tgpg.x; o[11] = tgpg.y;
    o[12] = tpg.x * tpg.y * tpg.z;
    o[13] = tindex; o[14] = lane; o[15] = sg; o[16] = width; o[17] = sgs;
    o[18] = 0xC0FFEEu;
}

// Sum of each threadgroup's 256 inputs: tree reduction in threadgroup memory.
kernel void probe_reduce(device const float* x [[buffer(0)]],
                         device float* y [[buffer(1)]],
                         uint gid [[thread_position_in_grid]],
                         uint tid [[thread_index_in_threadgroup]],
                         uint tg [[threadgroup_position_in_grid]]) {
    threadgroup float partial[256];
    partial[tid] = x[gid];
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint stride = 128; stride > 0; stride /= 2) {
        if (tid < stride) partial[tid] += partial[tid + stride];
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    if (tid == 0) y[tg] = partial[0];
}

// The same reduction with the barrier after the first store missing: thread 0 can read slots
// the other threads have not written yet.
kernel void probe_reduce_missing_barrier(device const float* x [[buffer(0)]],
                                         device float* y [[buffer(1)]],
                                         uint gid [[thread_position_in_grid]],
                                         uint tid [[thread_index_in_threadgroup]],
                                         uint tg [[threadgroup_position_in_grid]]) {
    threadgroup float partial[256];
    partial[tid] = x[gid];
    for (uint stride = 128; stride > 0; stride /= 2) {
        if (tid < stride) partial[tid] += partial[tid + stride];
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    if (tid == 0) y[tg] = partial[0];
}

// Per thread: 8 results of simd collectives over x (lanes of a partial last simdgroup are absent).
kernel void probe_simd_ops(device const float* x [[buffer(0)]],
                           device float* out [[buffer(1)]],
                           uint gid [[thread_position_in_grid]],
                           ushort lane [[thread_index_in_simdgroup]]) {
    float v = x[gid];
    device float* o = out + gid * 8;
    o[0] = simd_sum(v);
    o[1] = simd_max(v);
    o[2] = simd_min(v);
    o[3] = simd_shuffle(v, ushort((lane * 7) % 32));
    o[4] = simd_shuffle_down(v, 3);
    o[5] = simd_shuffle_up(v, 5);
    o[6] = simd_shuffle_xor(v, 6);
    o[7] = simd_broadcast(v, 9);
}

// Lanes at or past n exit first; simd_sum then covers only the lanes still running.
kernel void probe_simd_sum_after_exit(device const float* x [[buffer(0)]],
                                      device float* out [[buffer(1)]],
                                      constant uint& n [[buffer(2)]],
                                      uint gid [[thread_position_in_grid]]) {
    if (gid >= n) return;
    out[gid] = simd_sum(x[gid]);
}

// D = A * B + C for 8x8 row-major matrices, with B loaded transposed from BT; one simdgroup.
kernel void probe_simdgroup_matmul(device const float* a [[buffer(0)]],
                                   device const float* bt [[buffer(1)]],
                                   device const float* c [[buffer(2)]],
                                   device float* d [[buffer(3)]],
                                   ushort lane [[thread_index_in_simdgroup]]) {
    threadgroup float staged[2 * 64];
    staged[lane] = a[lane];
    staged[lane + 32] = a[lane + 32];
    staged[64 + lane] = bt[lane];
    staged[64 + lane + 32] = bt[lane + 32];
    threadgroup_barrier(mem_flags::mem_threadgroup);
    simdgroup_float8x8 ma, mb, mc;
    simdgroup_load(ma, staged, 8);
    simdgroup_load(mb, staged + 64, 8, ulong2(0), true);
    simdgroup_load(mc, c, 8);
    simdgroup_multiply_accumulate(mc, ma, mb, mc);
    simdgroup_store(mc, d, 8);
}

// Violation: a barrier only half of the threadgroup reaches.
kernel void probe_divergent_barrier(device float* y [[buffer(0)]],
                                    uint tid [[thread_index_in_threadgroup]]) {
    if (tid < 16) {
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    y[tid] = 1.0f;
}

// Violation: threads return early, the rest wait at a barrier.
kernel void probe_barrier_after_exit(device float* y [[buffer(0)]],
                                     uint tid [[thread_index_in_threadgroup]]) {
    if (tid >= 40) return;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    y[tid] = 1.0f;
}

// Violation: lanes of one simdgroup meet different collectives.
kernel void probe_divergent_simd(device float* y [[buffer(0)]],
                                 ushort lane [[thread_index_in_simdgroup]]) {
    float v = float(lane);
    if (lane < 8) {
        v = simd_sum(v);
    } else {
        v = simd_max(v);
    }
    y[lane] = v;
}

// Violation: simd_broadcast from a lane that is not the same for all lanes.
kernel void probe_nonuniform_broadcast(device float* y [[buffer(0)]],
                                       ushort lane [[thread_index_in_simdgroup]]) {
    y[lane] = simd_broadcast(float(lane), ushort(lane % 2));
}
