// Emulator runtime: runs every thread of a threadgroup concurrently as a fiber on the calling OS
// thread. A fiber runs until it reaches a synchronisation point (threadgroup_barrier, a simd
// collective) or exits; then the scheduler runs the others. Barriers release only when every
// thread of the threadgroup has arrived at the same barrier; simd collectives complete only when
// every non-exited lane of the 32-lane simdgroup has arrived at the same call. The order in which
// runnable fibers are resumed changes from round to round (forward, reverse, rotated) so that a
// missing barrier reads stale data instead of happening to work.
#if !(defined(__x86_64__) && defined(__ELF__)) || defined(EMU_USE_UCONTEXT)
#define EMU_UCONTEXT 1
#define _XOPEN_SOURCE 700  // macOS exposes the ucontext calls only with it
#define _DARWIN_C_SOURCE 1
#endif
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "emu_abi.h"

#define EMU_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

// Fiber stacks are kStackSize-aligned: [guard page][header: Fiber*]...[stack, growing down]. Kernel
// code finds its fiber from the address of any local (no thread-local lookup on the hot path).
const size_t kStackSize = 128 * 1024;
const size_t kHeaderOffset = 16 * 1024;   // past the guard page for 4 KB and 16 KB pages

enum class State { Runnable, AtBarrier, AtSimd, Done, Failed };

struct Scheduler;

struct Fiber {
    Scheduler* owner = nullptr;
    void* sp = nullptr;
    State state = State::Runnable;
    emu_lane_slot* slot = nullptr;
    const char* file = nullptr;
    int line = 0;
    emu_thread_ids ids{};
    char* stack_top = nullptr;
};

struct Simdgroup {
    int live = 0;
    int arrived = 0;
};

struct Scheduler {
    void* sched_sp = nullptr;
    Fiber* current = nullptr;
    std::vector<Fiber> fibers;
    std::vector<Simdgroup> simdgroups;
    char* mapping = nullptr;
    char* stacks = nullptr;
    size_t stack_size = 0;
    int capacity = 0;
    emu_body_fn body = nullptr;
    void* ctx = nullptr;
    std::string error;
    uint64_t round = 0;
};

thread_local Scheduler* t_scheduler = nullptr;

// Releases this thread's fiber stacks when the thread exits (each guard page is a separate
// mapping, and the kernel limits how many a process may have).
struct SchedulerOwner {
    ~SchedulerOwner() {
        if (t_scheduler) {
            if (t_scheduler->mapping)
                munmap(t_scheduler->mapping, t_scheduler->stack_size * size_t(t_scheduler->capacity) + kStackSize);
            delete t_scheduler;
            t_scheduler = nullptr;
        }
    }
};
thread_local SchedulerOwner t_scheduler_owner;
thread_local std::string t_last_error;

inline Fiber* current_fiber() {
    char probe;
    uintptr_t base = reinterpret_cast<uintptr_t>(&probe) & ~uintptr_t(kStackSize - 1);
    return *reinterpret_cast<Fiber**>(base + kHeaderOffset);
}

}  // namespace

extern "C" void emu_fiber_entry(Fiber* f);

#if !defined(EMU_UCONTEXT)
// Saves the callee-saved registers on the current stack, stores the stack pointer in *save_sp,
// switches to load_sp and restores the same set from there. (Kernels never change the FP control
// words, so they are not switched.)
extern "C" void emu_ctx_switch(void** save_sp, void* load_sp);
extern "C" void emu_fiber_trampoline();
asm(R"(
.text
.globl emu_ctx_switch
.hidden emu_ctx_switch
.type emu_ctx_switch,@function
emu_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
.size emu_ctx_switch, .-emu_ctx_switch

.globl emu_fiber_trampoline
.hidden emu_fiber_trampoline
.type emu_fiber_trampoline,@function
emu_fiber_trampoline:
    movq %r12, %rdi
    call *%r13
    ud2
.size emu_fiber_trampoline, .-emu_fiber_trampoline
)");

static void* prepare_stack(Fiber* f) {
    uint64_t* top = reinterpret_cast<uint64_t*>(f->stack_top);  // 16-byte aligned
    top[-1] = reinterpret_cast<uint64_t>(&emu_fiber_trampoline);  // ret target; rsp = top after it
    top[-2] = 0;                                                  // rbp
    top[-3] = 0;                                                  // rbx
    top[-4] = reinterpret_cast<uint64_t>(f);                      // r12: fiber
    top[-5] = reinterpret_cast<uint64_t>(&emu_fiber_entry);       // r13: entry
    top[-6] = 0;                                                  // r14
    top[-7] = 0;                                                  // r15
    return &top[-7];
}

static void switch_to(void** save, void* load) { emu_ctx_switch(save, load); }

#else
// Portable fallback (other CPUs, macOS); also built and tested on x86-64 with -DEMU_USE_UCONTEXT.
#include <ucontext.h>

namespace {
thread_local std::vector<ucontext_t> t_contexts;
thread_local ucontext_t t_sched_context;
}  // namespace

static void ucontext_entry(unsigned hi, unsigned lo) {
    emu_fiber_entry(reinterpret_cast<Fiber*>((uint64_t(hi) << 32) | lo));
}

static void* prepare_stack(Fiber* f) {
    Scheduler* s = t_scheduler;
    size_t index = size_t(f - s->fibers.data());
    if (t_contexts.size() < s->fibers.size()) t_contexts.resize(s->fibers.size());
    ucontext_t* uc = &t_contexts[index];
    getcontext(uc);
    uc->uc_stack.ss_sp = f->stack_top - s->stack_size + getpagesize();
    uc->uc_stack.ss_size = s->stack_size - getpagesize();
    uc->uc_link = nullptr;
    uint64_t p = reinterpret_cast<uint64_t>(f);
    makecontext(uc, reinterpret_cast<void (*)()>(&ucontext_entry), 2, unsigned(p >> 32), unsigned(p));
    return uc;
}

static void switch_to(void** save, void* load) {
    // save points at either the scheduler's or a fiber's sp slot; both hold ucontext pointers.
    ucontext_t* from = *save ? static_cast<ucontext_t*>(*save) : &t_sched_context;
    *save = from;
    swapcontext(from, static_cast<ucontext_t*>(load));
}
#endif

static Scheduler* scheduler_for_this_thread(int threads) {
    Scheduler* s = t_scheduler;
    if (!s) {
        (void)&t_scheduler_owner;  // registers the thread-exit cleanup
        s = new Scheduler();
        t_scheduler = s;
    }
    if (s->capacity < threads) {
        if (s->mapping) munmap(s->mapping, s->stack_size * size_t(s->capacity) + kStackSize);
        s->stack_size = kStackSize;
        int capacity = 64;
        while (capacity < threads) capacity *= 2;
        s->capacity = capacity;
        size_t bytes = s->stack_size * size_t(s->capacity);
        // One extra stack of slack to align the first stack to kStackSize.
        void* mem = mmap(nullptr, bytes + kStackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (mem == MAP_FAILED) return nullptr;
        s->mapping = static_cast<char*>(mem);
        s->stacks = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(mem) + kStackSize - 1) & ~uintptr_t(kStackSize - 1));
        // A guard page at the low end of every stack turns an overflow into a fault, not corruption.
        for (int i = 0; i < s->capacity; i++) mprotect(s->stacks + s->stack_size * size_t(i), size_t(getpagesize()), PROT_NONE);
        s->fibers.resize(size_t(s->capacity));
        for (int i = 0; i < s->capacity; i++) {
            Fiber& f = s->fibers[size_t(i)];
            char* base = s->stacks + s->stack_size * size_t(i);
            f.owner = s;
            // Stagger the tops: stacks a power of two apart would all map to the same cache sets.
            f.stack_top = base + s->stack_size - size_t(i % 64) * 256 - size_t(i / 64 % 4) * 64;
            *reinterpret_cast<Fiber**>(base + kHeaderOffset) = &f;
        }
        s->simdgroups.resize(size_t((s->capacity + EMU_SIMD_WIDTH - 1) / EMU_SIMD_WIDTH));
    }
    return s;
}

static void yield_to_scheduler(Fiber* f) {
    Scheduler* s = f->owner;
    s->current = nullptr;
    switch_to(&f->sp, s->sched_sp);
}

extern "C" void emu_fiber_entry(Fiber* f) {
    Scheduler* s = f->owner;
    s->body(s->ctx, &f->ids);
    f->state = State::Done;
    yield_to_scheduler(f);
    __builtin_trap();
}

extern "C" void emu_threadgroup_barrier(const char* file, int line) {
    Fiber* f = current_fiber();
    f->state = State::AtBarrier;
    f->file = file;
    f->line = line;
    yield_to_scheduler(f);
}

extern "C" void emu_simd_rendezvous(emu_lane_slot* slot) {
    Fiber* f = current_fiber();
    f->state = State::AtSimd;
    f->slot = slot;
    yield_to_scheduler(f);
}

extern "C" void emu_fail(const char* message) {
    Scheduler* s = t_scheduler;
    if (s->error.empty()) s->error = message;
    Fiber* f = s->current;
    if (f) {  // called from kernel code: this thread stops here
        f->state = State::Failed;
        yield_to_scheduler(f);
    }
}

static std::string site(const char* op, const char* file, int line) {
    std::string name = file ? file : "?";
    size_t slash = name.find_last_of('/');
    if (slash != std::string::npos) name = name.substr(slash + 1);
    return std::string(op) + " at " + name + ":" + std::to_string(line);
}

static std::string describe_thread(const Fiber& f) {
    const emu_thread_ids& t = f.ids;
    return "thread " + std::to_string(t.thread_index_in_threadgroup) + " of threadgroup (" +
           std::to_string(t.threadgroup_position_in_grid[0]) + "," + std::to_string(t.threadgroup_position_in_grid[1]) +
           "," + std::to_string(t.threadgroup_position_in_grid[2]) + ")";
}

static bool complete_simdgroup(Scheduler* s, int threads, int g) {
    emu_lane_slot* lanes[EMU_SIMD_WIDTH] = {};
    Fiber* first = nullptr;
    for (int lane = 0; lane < EMU_SIMD_WIDTH; lane++) {
        int i = g * EMU_SIMD_WIDTH + lane;
        if (i >= threads) break;
        Fiber& f = s->fibers[size_t(i)];
        if (f.state != State::AtSimd) continue;
        if (first && (f.slot->combine != first->slot->combine || f.slot->line != first->slot->line ||
                      (f.slot->file != first->slot->file && strcmp(f.slot->file, first->slot->file) != 0))) {
            s->error = "divergent simdgroup: " + describe_thread(*first) + " waits in " +
                       site(first->slot->op, first->slot->file, first->slot->line) + " but " + describe_thread(f) +
                       " in " + site(f.slot->op, f.slot->file, f.slot->line);
            return false;
        }
        if (!first) first = &f;
        lanes[lane] = f.slot;
    }
    first->slot->combine(lanes);
    if (!s->error.empty()) return false;
    for (int lane = 0; lane < EMU_SIMD_WIDTH; lane++) {
        int i = g * EMU_SIMD_WIDTH + lane;
        if (i < threads && s->fibers[size_t(i)].state == State::AtSimd) s->fibers[size_t(i)].state = State::Runnable;
    }
    s->simdgroups[size_t(g)].arrived = 0;
    return true;
}

static bool complete_barrier(Scheduler* s, int threads, int exited) {
    Fiber* first = nullptr;
    for (int i = 0; i < threads; i++) {
        Fiber& f = s->fibers[size_t(i)];
        if (f.state != State::AtBarrier) continue;
        if (exited > 0) {
            s->error = "threadgroup_barrier (" + site("threadgroup_barrier", f.file, f.line) + ") reached after " +
                       std::to_string(exited) + " thread(s) of the threadgroup exited: every thread must reach it";
            return false;
        }
        if (first && (f.line != first->line || (f.file != first->file && strcmp(f.file, first->file) != 0))) {
            s->error = "threads of one threadgroup wait at different barriers: " + describe_thread(*first) + " at " +
                       site("threadgroup_barrier", first->file, first->line) + ", " + describe_thread(f) + " at " +
                       site("threadgroup_barrier", f.file, f.line);
            return false;
        }
        if (!first) first = &f;
    }
    for (int i = 0; i < threads; i++)
        if (s->fibers[size_t(i)].state == State::AtBarrier) s->fibers[size_t(i)].state = State::Runnable;
    return true;
}

static std::string describe_deadlock(Scheduler* s, int threads) {
    std::string text = "deadlock: no thread can proceed;";
    int shown = 0;
    for (int i = 0; i < threads && shown < 6; i++) {
        const Fiber& f = s->fibers[size_t(i)];
        if (f.state == State::AtBarrier) {
            text += " " + describe_thread(f) + " waits in " + site("threadgroup_barrier", f.file, f.line) + ";";
            shown++;
        } else if (f.state == State::AtSimd) {
            text += " " + describe_thread(f) + " waits in " + site(f.slot->op, f.slot->file, f.slot->line) + ";";
            shown++;
        }
    }
    return text;
}

// Runs one threadgroup to completion. Returns false with s->error set on a violation.
static bool run_threadgroup(Scheduler* s, const emu_geometry* g, const uint32_t tg[3]) {
    const uint32_t tx = uint32_t(g->threads_per_threadgroup[0]);
    const uint32_t ty = uint32_t(g->threads_per_threadgroup[1]);
    const uint32_t tz = uint32_t(g->threads_per_threadgroup[2]);
    const int threads = int(tx * ty * tz);
    const int groups = (threads + EMU_SIMD_WIDTH - 1) / EMU_SIMD_WIDTH;
    for (int i = 0; i < threads; i++) {
        Fiber& f = s->fibers[size_t(i)];
        f.state = State::Runnable;
        f.slot = nullptr;
        emu_thread_ids& t = f.ids;
        uint32_t pos[3] = {uint32_t(i) % tx, (uint32_t(i) / tx) % ty, uint32_t(i) / (tx * ty)};
        for (int d = 0; d < 3; d++) {
            t.thread_position_in_threadgroup[d] = pos[d];
            t.threadgroup_position_in_grid[d] = tg[d];
            t.threads_per_threadgroup[d] = uint32_t(g->threads_per_threadgroup[d]);
            t.threadgroups_per_grid[d] = uint32_t(g->threadgroups[d]);
            t.threads_per_grid[d] = uint32_t(g->threadgroups[d] * g->threads_per_threadgroup[d]);
            t.thread_position_in_grid[d] = tg[d] * uint32_t(g->threads_per_threadgroup[d]) + pos[d];
        }
        t.thread_index_in_threadgroup = uint32_t(i);
        t.thread_index_in_simdgroup = uint32_t(i % EMU_SIMD_WIDTH);
        t.simdgroup_index_in_threadgroup = uint32_t(i / EMU_SIMD_WIDTH);
        t.threads_per_simdgroup = EMU_SIMD_WIDTH;
        t.simdgroups_per_threadgroup = uint32_t(groups);
        f.sp = prepare_stack(&f);
    }
    for (int gi = 0; gi < groups; gi++) {
        int lanes = threads - gi * EMU_SIMD_WIDTH;
        s->simdgroups[size_t(gi)].live = lanes < EMU_SIMD_WIDTH ? lanes : EMU_SIMD_WIDTH;
        s->simdgroups[size_t(gi)].arrived = 0;
    }
    int live = threads, exited = 0, at_barrier = 0;
    while (live > 0) {
        bool progressed = false;
        uint64_t r = s->round++;
        bool reverse = (r & 1) != 0;
        int start = int((r * 2654435761u) % uint64_t(threads));
        for (int k = 0; k < threads; k++) {
            int i = (start + (reverse ? threads - k : k)) % threads;
            Fiber& f = s->fibers[size_t(i)];
            if (f.state != State::Runnable) continue;
            progressed = true;
            s->current = &f;
            switch_to(&s->sched_sp, f.sp);
            s->current = nullptr;
            Simdgroup& sg = s->simdgroups[size_t(i / EMU_SIMD_WIDTH)];
            switch (f.state) {
                case State::Failed:
                    return false;
                case State::Done:
                    live--;
                    exited++;
                    sg.live--;
                    if (sg.arrived > 0 && sg.arrived == sg.live && !complete_simdgroup(s, threads, i / EMU_SIMD_WIDTH))
                        return false;
                    if (at_barrier > 0 && at_barrier == live) {
                        if (!complete_barrier(s, threads, exited)) return false;
                        at_barrier = 0;
                    }
                    break;
                case State::AtSimd:
                    sg.arrived++;
                    if (sg.arrived == sg.live && !complete_simdgroup(s, threads, i / EMU_SIMD_WIDTH)) return false;
                    break;
                case State::AtBarrier:
                    at_barrier++;
                    if (at_barrier == live) {
                        if (!complete_barrier(s, threads, exited)) return false;
                        at_barrier = 0;
                    }
                    break;
                case State::Runnable:
                    break;
            }
        }
        if (!progressed) {
            s->error = describe_deadlock(s, threads);
            return false;
        }
    }
    return true;
}

EMU_EXPORT const char* emu_last_error() { return t_last_error.c_str(); }

namespace {
std::atomic<int> g_workers{1};
const uint64_t kMinThreadgroupsPerWorker = 64;
}  // namespace

// OS threads a large dispatch may spread its threadgroups over (each runs whole threadgroups).
EMU_EXPORT void emu_set_workers(int workers) { g_workers = workers < 1 ? 1 : workers; }

// Runs threadgroups [next..) of the grid on the calling thread until none is left or one failed.
static void run_threadgroups(const emu_geometry* g, emu_body_fn body, void* ctx, int threads, uint64_t total,
                             std::atomic<uint64_t>* next, std::atomic<bool>* failed, std::mutex* error_lock,
                             std::string* error) {
    Scheduler* s = scheduler_for_this_thread(threads);
    if (!s) {
        std::lock_guard<std::mutex> lock(*error_lock);
        if (error->empty()) *error = "could not allocate fiber stacks";
        failed->store(true);
        return;
    }
    if (s->body) {
        std::lock_guard<std::mutex> lock(*error_lock);
        if (error->empty()) *error = "nested dispatch on one thread";
        failed->store(true);
        return;
    }
    s->body = body;
    s->ctx = ctx;
    s->error.clear();
    const uint64_t gx = g->threadgroups[0], gy = g->threadgroups[1];
    for (;;) {
        if (failed->load(std::memory_order_relaxed)) break;
        uint64_t i = next->fetch_add(1, std::memory_order_relaxed);
        if (i >= total) break;
        uint32_t tg[3] = {uint32_t(i % gx), uint32_t((i / gx) % gy), uint32_t(i / (gx * gy))};
        if (!run_threadgroup(s, g, tg)) {
            std::lock_guard<std::mutex> lock(*error_lock);
            if (error->empty()) *error = s->error;
            failed->store(true);
            break;
        }
    }
    s->body = nullptr;
    s->ctx = nullptr;
    s->current = nullptr;
}

extern "C" int emu_dispatch(const emu_geometry* g, emu_body_fn body, void* ctx) {
    t_last_error.clear();
    uint64_t threads = 1, groups = 1;
    for (int d = 0; d < 3; d++) {
        if (g->threads_per_threadgroup[d] == 0 || g->threadgroups[d] == 0) {
            t_last_error = "dispatch with an empty dimension";
            return 1;
        }
        threads *= g->threads_per_threadgroup[d];
        groups *= g->threadgroups[d];
    }
    if (threads > EMU_MAX_THREADS_PER_THREADGROUP) {
        t_last_error = "threads per threadgroup " + std::to_string(threads) + " exceeds Metal's limit of " +
                       std::to_string(EMU_MAX_THREADS_PER_THREADGROUP);
        return 1;
    }
    if (groups * threads > (uint64_t(1) << 32)) {
        t_last_error = "grid too large";
        return 1;
    }
    std::atomic<uint64_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex error_lock;
    std::string error;
    uint64_t workers = uint64_t(g_workers.load());
    if (workers > groups / kMinThreadgroupsPerWorker) workers = groups / kMinThreadgroupsPerWorker;
    std::vector<std::thread> helpers;
    for (uint64_t w = 1; w < workers; w++)
        helpers.emplace_back(run_threadgroups, g, body, ctx, int(threads), groups, &next, &failed, &error_lock, &error);
    run_threadgroups(g, body, ctx, int(threads), groups, &next, &failed, &error_lock, &error);
    for (auto& h : helpers) h.join();
    if (failed.load()) {
        t_last_error = error;
        return 1;
    }
    return 0;
}
