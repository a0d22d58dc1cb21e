/* Interface between the MSL shim (compiled into every kernel translation unit) and the emulator
   runtime (emu_runtime.cpp). Plain C so that both sides agree on layout. */
#ifndef PIPELINE_EMU_ABI_H
#define PIPELINE_EMU_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EMU_SIMD_WIDTH 32
#define EMU_MAX_THREADS_PER_THREADGROUP 1024

/* dispatchThreadgroups:threadsPerThreadgroup: — the only dispatch form the backend uses. */
typedef struct emu_geometry {
    uint64_t threadgroups[3];
    uint64_t threads_per_threadgroup[3];
} emu_geometry;

/* Values of the MSL thread-position attributes for one thread. */
typedef struct emu_thread_ids {
    uint32_t thread_position_in_grid[3];
    uint32_t thread_position_in_threadgroup[3];
    uint32_t threadgroup_position_in_grid[3];
    uint32_t threads_per_threadgroup[3];
    uint32_t threadgroups_per_grid[3];
    uint32_t threads_per_grid[3];
    uint32_t thread_index_in_threadgroup;
    uint32_t thread_index_in_simdgroup;
    uint32_t simdgroup_index_in_threadgroup;
    uint32_t threads_per_simdgroup;
    uint32_t simdgroups_per_threadgroup;
} emu_thread_ids;

/* One lane's part in a simdgroup collective. The last lane to arrive triggers combine(), which
   reads every active lane's input and writes every active lane's output; inactive lanes (exited,
   or absent in a partial simdgroup) are passed as null. */
typedef struct emu_lane_slot emu_lane_slot;
typedef void (*emu_combine_fn)(emu_lane_slot* const* lanes);
struct emu_lane_slot {
    const void* in;
    void* out;
    uint64_t param;
    emu_combine_fn combine;
    const char* op;
    const char* file;
    int line;
};

typedef void (*emu_body_fn)(void* ctx, const emu_thread_ids* ids);

/* Called from kernel code (on a fiber). */
void emu_threadgroup_barrier(const char* file, int line);
void emu_simd_rendezvous(emu_lane_slot* slot);
void emu_fail(const char* message);

/* Called by the generated launchers: runs body for every thread of the grid. 0 = ok. */
int emu_dispatch(const emu_geometry* geometry, emu_body_fn body, void* ctx);

#ifdef __cplusplus
}
#endif

#endif
