// The subset of the Metal Shading Language that Pipeline's kernels use, as C++14 for the CPU
// emulator. Force-included (-include metal_shim.h) into every .metal file compiled by the harness.
//
// Exactly what is here is supported; anything else fails to compile, by design:
//  - address spaces device/constant/thread/threadgroup (threadgroup only for kernel-scope arrays),
//  - the `kernel` keyword with [[buffer(n)]] and thread-position attributes on parameters
//    (unknown attributes are errors: -Werror=unknown-attributes),
//  - scalar types uint/ushort/uchar/ulong, half (load/store and explicit conversion only),
//  - vectors float2/3/4, int2/3/4, uint2/3/4, ushort2/4, half2/4 with .x/.y/.z/.w and [i],
//  - metal:: math, as_type, simd_sum/max/min, simd_shuffle/_down/_up/_xor, simd_broadcast,
//    threadgroup_barrier, simdgroup_barrier, simdgroup_matrix 8x8 load/store/multiply(_accumulate).
// No double, no bfloat type, no swizzles beyond single components, no textures, no atomics.
#ifndef PIPELINE_METAL_SHIM_H
#define PIPELINE_METAL_SHIM_H

#include <stdint.h>

#include "emu_abi.h"

typedef unsigned int uint;
typedef unsigned short ushort;
typedef unsigned char uchar;
typedef unsigned long ulong;

namespace metal_emu {

template <bool B, class T = void> struct enable_if {};
template <class T> struct enable_if<true, T> { typedef T type; };
template <class T> struct remove_reference { typedef T type; };
template <class T> struct remove_reference<T&> { typedef T type; };
template <class T> struct remove_const { typedef T type; };
template <class T> struct remove_const<const T> { typedef T type; };
template <class T> struct is_pointer { static const bool value = false; };
template <class T> struct is_pointer<T*> { static const bool value = true; };
template <class T> struct is_reference { static const bool value = false; };
template <class T> struct is_reference<T&> { static const bool value = true; };

}  // namespace metal_emu

// ---------------------------------------------------------------------------------------------
// half: storage and conversion only. Arithmetic on half is deleted so a kernel converts to float
// explicitly, which computes identically on the GPU and here.
namespace metal_emu {
inline float half_bits_to_float(uint16_t h) {
    uint32_t sign = uint32_t(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1Fu;
    uint32_t mantissa = h & 0x3FFu;
    uint32_t bits;
    if (exponent == 0x1Fu) {
        bits = sign | 0x7F800000u | (mantissa << 13);  // inf / nan
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    } else {
        float f = float(mantissa) * (1.0f / 16777216.0f);  // subnormal: mantissa * 2^-24
        __builtin_memcpy(&bits, &f, 4);
        bits |= sign;
    }
    float out;
    __builtin_memcpy(&out, &bits, 4);
    return out;
}

// Round to nearest even, as the GPU converts.
inline uint16_t float_to_half_bits(float f) {
    uint32_t x;
    __builtin_memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t magnitude = x & 0x7FFFFFFFu;
    if (magnitude >= 0x7F800000u) return uint16_t(sign | 0x7C00u | (magnitude > 0x7F800000u ? 0x200u : 0u));
    if (magnitude >= 0x477FF000u) return uint16_t(sign | 0x7C00u);  // rounds past 65504: inf
    if (magnitude < 0x38800000u) {                                  // below the smallest normal
        float a;
        __builtin_memcpy(&a, &magnitude, 4);
        float scaled = a * 16777216.0f;                             // exact; then round to an integer
        uint32_t m = uint32_t(__builtin_rintf(scaled));
        return uint16_t(sign | m);
    }
    uint32_t rounded = magnitude + 0xFFFu + ((magnitude >> 13) & 1u);
    return uint16_t(sign | ((rounded - 0x38000000u) >> 13));
}
}  // namespace metal_emu

struct half {
    uint16_t bits;
    half() = default;
    half(float f) : bits(metal_emu::float_to_half_bits(f)) {}
    operator float() const { return metal_emu::half_bits_to_float(bits); }
};
template <class T> void operator+(half, T) = delete;
template <class T> void operator-(half, T) = delete;
template <class T> void operator*(half, T) = delete;
template <class T> void operator/(half, T) = delete;
template <class T> void operator+(T, half) = delete;
template <class T> void operator-(T, half) = delete;
template <class T> void operator*(T, half) = delete;
template <class T> void operator/(T, half) = delete;
void operator-(half) = delete;

// ---------------------------------------------------------------------------------------------
// Vectors.
namespace metal_emu {

template <class T, int N> struct vec_storage;
template <class T> struct alignas(2 * sizeof(T)) vec_storage<T, 2> { T x, y; };
template <class T> struct alignas(4 * sizeof(T)) vec_storage<T, 3> { T x, y, z; };
template <class T> struct alignas(4 * sizeof(T)) vec_storage<T, 4> { T x, y, z, w; };

template <class T, int N> struct vec : vec_storage<T, N> {
    vec() = default;
    vec(T s) {
        for (int i = 0; i < N; i++) (*this)[i] = s;
    }
    template <int M = N, typename enable_if<M == 2, int>::type = 0> vec(T a, T b) {
        this->x = a;
        this->y = b;
    }
    template <int M = N, typename enable_if<M == 3, int>::type = 0> vec(T a, T b, T c) {
        this->x = a;
        this->y = b;
        this->z = c;
    }
    template <int M = N, typename enable_if<M == 4, int>::type = 0> vec(T a, T b, T c, T d) {
        this->x = a;
        this->y = b;
        this->z = c;
        this->w = d;
    }
    template <class U> explicit vec(const vec<U, N>& o) {
        for (int i = 0; i < N; i++) (*this)[i] = T(o[i]);
    }
    T& operator[](int i) { return (&this->x)[i]; }
    const T& operator[](int i) const { return (&this->x)[i]; }
};

#define METAL_EMU_VEC_OP(op)                                                               \
    template <class T, int N> vec<T, N> operator op(const vec<T, N>& a, const vec<T, N>& b) { \
        vec<T, N> r;                                                                       \
        for (int i = 0; i < N; i++) r[i] = a[i] op b[i];                                   \
        return r;                                                                          \
    }                                                                                      \
    template <class T, int N> vec<T, N> operator op(const vec<T, N>& a, T b) {             \
        vec<T, N> r;                                                                       \
        for (int i = 0; i < N; i++) r[i] = a[i] op b;                                      \
        return r;                                                                          \
    }                                                                                      \
    template <class T, int N> vec<T, N> operator op(T a, const vec<T, N>& b) {             \
        vec<T, N> r;                                                                       \
        for (int i = 0; i < N; i++) r[i] = a op b[i];                                      \
        return r;                                                                          \
    }                                                                                      \
    template <class T, int N> vec<T, N>& operator op##=(vec<T, N>& a, const vec<T, N>& b) { \
        for (int i = 0; i < N; i++) a[i] = a[i] op b[i];                                   \
        return a;                                                                          \
    }                                                                                      \
    template <class T, int N> vec<T, N>& operator op##=(vec<T, N>& a, T b) {               \
        for (int i = 0; i < N; i++) a[i] = a[i] op b;                                      \
        return a;                                                                          \
    }
METAL_EMU_VEC_OP(+)
METAL_EMU_VEC_OP(-)
METAL_EMU_VEC_OP(*)
METAL_EMU_VEC_OP(/)
#undef METAL_EMU_VEC_OP

template <class T, int N> vec<T, N> operator-(const vec<T, N>& a) {
    vec<T, N> r;
    for (int i = 0; i < N; i++) r[i] = -a[i];
    return r;
}

}  // namespace metal_emu

typedef metal_emu::vec<float, 2> float2;
typedef metal_emu::vec<float, 3> float3;
typedef metal_emu::vec<float, 4> float4;
typedef metal_emu::vec<int, 2> int2;
typedef metal_emu::vec<int, 3> int3;
typedef metal_emu::vec<int, 4> int4;
typedef metal_emu::vec<uint, 2> uint2;
typedef metal_emu::vec<uint, 3> uint3;
typedef metal_emu::vec<uint, 4> uint4;
typedef metal_emu::vec<ushort, 2> ushort2;
typedef metal_emu::vec<ushort, 4> ushort4;
typedef metal_emu::vec<ulong, 2> ulong2;
typedef metal_emu::vec<half, 2> half2;
typedef metal_emu::vec<half, 4> half4;

// ---------------------------------------------------------------------------------------------
// Math and conversions (namespace metal, brought in by the kernels' `using namespace metal;`).
#define INFINITY __builtin_inff()
#define NAN __builtin_nanf("")
#define FLT_MAX 3.40282347e+38F

namespace metal {

template <class To, class From> inline To as_type(From v) {
    static_assert(sizeof(To) == sizeof(From), "as_type: source and destination sizes differ");
    To t;
    __builtin_memcpy(&t, &v, sizeof(To));
    return t;
}

#define METAL_EMU_MATH(ns)                                                                  \
    namespace ns {                                                                          \
    inline float exp(float x) { return __builtin_expf(x); }                                 \
    inline float exp2(float x) { return __builtin_exp2f(x); }                               \
    inline float log(float x) { return __builtin_logf(x); }                                 \
    inline float log2(float x) { return __builtin_log2f(x); }                               \
    inline float sqrt(float x) { return __builtin_sqrtf(x); }                               \
    inline float rsqrt(float x) { return 1.0f / __builtin_sqrtf(x); }                       \
    inline float tanh(float x) { return __builtin_tanhf(x); }                               \
    inline float sin(float x) { return __builtin_sinf(x); }                                 \
    inline float cos(float x) { return __builtin_cosf(x); }                                 \
    inline float pow(float x, float y) { return __builtin_powf(x, y); }                     \
    inline float divide(float x, float y) { return x / y; }                                 \
    }
METAL_EMU_MATH(precise)
METAL_EMU_MATH(fast)
#undef METAL_EMU_MATH
using namespace precise;

inline float abs(float x) { return __builtin_fabsf(x); }
inline int abs(int x) { return x < 0 ? -x : x; }
inline float fabs(float x) { return __builtin_fabsf(x); }
inline float floor(float x) { return __builtin_floorf(x); }
inline float ceil(float x) { return __builtin_ceilf(x); }
inline float round(float x) { return __builtin_roundf(x); }
inline float trunc(float x) { return __builtin_truncf(x); }
inline float fma(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
inline float max(float a, float b) { return __builtin_fmaxf(a, b); }
inline float min(float a, float b) { return __builtin_fminf(a, b); }
inline float fmax(float a, float b) { return __builtin_fmaxf(a, b); }
inline float fmin(float a, float b) { return __builtin_fminf(a, b); }
inline int max(int a, int b) { return a > b ? a : b; }
inline int min(int a, int b) { return a < b ? a : b; }
inline uint max(uint a, uint b) { return a > b ? a : b; }
inline uint min(uint a, uint b) { return a < b ? a : b; }
inline float clamp(float x, float lo, float hi) { return min(max(x, lo), hi); }
inline int clamp(int x, int lo, int hi) { return min(max(x, lo), hi); }
inline uint clamp(uint x, uint lo, uint hi) { return min(max(x, lo), hi); }
inline bool isnan(float x) { return __builtin_isnan(x); }
inline bool isinf(float x) { return __builtin_isinf(x); }
inline bool isfinite(float x) { return __builtin_isfinite(x); }

template <int N> inline float dot(const metal_emu::vec<float, N>& a, const metal_emu::vec<float, N>& b) {
    float s = 0.0f;
    for (int i = 0; i < N; i++) s += a[i] * b[i];
    return s;
}

// ---------------------------------------------------------------------------------------------
// Barriers.
enum class mem_flags : uint { mem_none = 0, mem_device = 1, mem_threadgroup = 2, mem_texture = 4 };
inline mem_flags operator|(mem_flags a, mem_flags b) { return mem_flags(uint(a) | uint(b)); }

inline void threadgroup_barrier(mem_flags, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    emu_threadgroup_barrier(file, line);
}

}  // namespace metal

// ---------------------------------------------------------------------------------------------
// SIMD-group functions: collective rendezvous of the 32 lanes (see emu_runtime.cpp).
namespace metal_emu {

template <class T> inline T collective(T v, uint64_t param, emu_combine_fn fn, const char* op, const char* file,
                                       int line) {
    T out;
    emu_lane_slot slot = {&v, &out, param, fn, op, file, line};
    emu_simd_rendezvous(&slot);
    return out;
}

template <class T> inline const T& in_of(emu_lane_slot* s) { return *static_cast<const T*>(s->in); }
template <class T> inline T& out_of(emu_lane_slot* s) { return *static_cast<T*>(s->out); }

// Value a lane reads from an inactive or absent lane: all bits set (NaN for float), so misuse shows.
template <class T> inline T poison() {
    T t;
    __builtin_memset(&t, 0xFF, sizeof(T));
    return t;
}

template <class T> struct simd_ops {
    // Pairwise (butterfly-shaped) order, as the hardware reduces.
    static void sum(emu_lane_slot* const* lanes) {
        T v[EMU_SIMD_WIDTH];
        for (int i = 0; i < EMU_SIMD_WIDTH; i++) v[i] = lanes[i] ? in_of<T>(lanes[i]) : T(0);
        for (int w = EMU_SIMD_WIDTH / 2; w >= 1; w /= 2)
            for (int i = 0; i < w; i++) v[i] = v[i] + v[i + w];
        for (int i = 0; i < EMU_SIMD_WIDTH; i++)
            if (lanes[i]) out_of<T>(lanes[i]) = v[0];
    }
    static void max(emu_lane_slot* const* lanes) {
        bool any = false;
        T m = T(0);
        for (int i = 0; i < EMU_SIMD_WIDTH; i++)
            if (lanes[i] && (!any || in_of<T>(lanes[i]) > m)) {
                m = in_of<T>(lanes[i]);
                any = true;
            }
        for (int i = 0; i < EMU_SIMD_WIDTH; i++)
            if (lanes[i]) out_of<T>(lanes[i]) = m;
    }
    static void min(emu_lane_slot* const* lanes) {
        bool any = false;
        T m = T(0);
        for (int i = 0; i < EMU_SIMD_WIDTH; i++)
            if (lanes[i] && (!any || in_of<T>(lanes[i]) < m)) {
                m = in_of<T>(lanes[i]);
                any = true;
            }
        for (int i = 0; i < EMU_SIMD_WIDTH; i++)
            if (lanes[i]) out_of<T>(lanes[i]) = m;
    }
};

template <class T> struct simd_moves {
    static T read(emu_lane_slot* const* lanes, int src) {
        return src >= 0 && src < EMU_SIMD_WIDTH && lanes[src] ? in_of<T>(lanes[src]) : poison<T>();
    }
    static void shuffle(emu_lane_slot* const* lanes) {
        for (int i = 0; i < EMU_SIMD_WIDTH; i++)
            if (lanes[i]) out_of<T>(lanes[i]) = read(lanes, int(lanes[i]->param));
    }
    // Lanes whose source would be past the top keep their own value (MSL semantics).
    static void shuffle_down(emu_lane_slot* const* lanes) {
        for (int i = 0; i < EMU_SIMD_WIDTH; i++)
            if (lanes[i]) {
                int src = i + int(lanes[i]->param);
                out_of<T>(lanes[i]) = src < EMU_SIMD_WIDTH ? read(lanes, src) : in_of<T>(lanes[i]);
            }
    }
    static void shuffle_up(emu_lane_slot* const* lanes) {
        for (int i = 0; i < EMU_SIMD_WIDTH; i++)
            if (lanes[i]) {
                int src = i - int(lanes[i]->param);
                out_of<T>(lanes[i]) = src >= 0 ? read(lanes, src) : in_of<T>(lanes[i]);
            }
    }
    static void shuffle_xor(emu_lane_slot* const* lanes) {
        for (int i = 0; i < EMU_SIMD_WIDTH; i++)
            if (lanes[i]) out_of<T>(lanes[i]) = read(lanes, i ^ int(lanes[i]->param));
    }
    static void broadcast(emu_lane_slot* const* lanes) {
        uint64_t src = ~uint64_t(0);
        for (int i = 0; i < EMU_SIMD_WIDTH; i++)
            if (lanes[i]) {
                if (src != ~uint64_t(0) && lanes[i]->param != src) {
                    emu_fail("simd_broadcast: the source lane is not uniform across the simdgroup");
                    return;
                }
                src = lanes[i]->param;
            }
        for (int i = 0; i < EMU_SIMD_WIDTH; i++)
            if (lanes[i]) out_of<T>(lanes[i]) = read(lanes, int(src));
    }
};

inline void no_combine(emu_lane_slot* const*) {}

}  // namespace metal_emu

namespace metal {

#define METAL_EMU_SITE const char *file = __builtin_FILE(), int line = __builtin_LINE()

template <class T> inline T simd_sum(T v, METAL_EMU_SITE) {
    return metal_emu::collective(v, 0, &metal_emu::simd_ops<T>::sum, "simd_sum", file, line);
}
template <class T> inline T simd_max(T v, METAL_EMU_SITE) {
    return metal_emu::collective(v, 0, &metal_emu::simd_ops<T>::max, "simd_max", file, line);
}
template <class T> inline T simd_min(T v, METAL_EMU_SITE) {
    return metal_emu::collective(v, 0, &metal_emu::simd_ops<T>::min, "simd_min", file, line);
}
template <class T> inline T simd_shuffle(T v, ushort lane, METAL_EMU_SITE) {
    return metal_emu::collective(v, lane, &metal_emu::simd_moves<T>::shuffle, "simd_shuffle", file, line);
}
template <class T> inline T simd_shuffle_down(T v, ushort delta, METAL_EMU_SITE) {
    return metal_emu::collective(v, delta, &metal_emu::simd_moves<T>::shuffle_down, "simd_shuffle_down", file,
                                 line);
}
template <class T> inline T simd_shuffle_up(T v, ushort delta, METAL_EMU_SITE) {
    return metal_emu::collective(v, delta, &metal_emu::simd_moves<T>::shuffle_up, "simd_shuffle_up", file, line);
}
template <class T> inline T simd_shuffle_xor(T v, ushort mask, METAL_EMU_SITE) {
    return metal_emu::collective(v, mask, &metal_emu::simd_moves<T>::shuffle_xor, "simd_shuffle_xor", file, line);
}
template <class T> inline T simd_broadcast(T v, ushort lane, METAL_EMU_SITE) {
    return metal_emu::collective(v, lane, &metal_emu::simd_moves<T>::broadcast, "simd_broadcast", file, line);
}
inline void simdgroup_barrier(mem_flags, METAL_EMU_SITE) {
    metal_emu::collective(0, 0, &metal_emu::no_combine, "simdgroup_barrier", file, line);
}

// ---------------------------------------------------------------------------------------------
// simdgroup_matrix 8x8, distributed as on the hardware: each of the 32 lanes holds 2 of the 64
// elements (lane l: row-major elements 2l and 2l+1), and every operation is a collective of all 32
// lanes that gathers, computes and scatters once.
template <class T, int Cols, int Rows> struct simdgroup_matrix {
    static_assert(Cols == 8 && Rows == 8, "only 8x8 simdgroup matrices are supported");
    T e[2];
};
typedef simdgroup_matrix<float, 8, 8> simdgroup_float8x8;
typedef simdgroup_matrix<half, 8, 8> simdgroup_half8x8;

// Every lane sets its own elements (a lane-dependent value gives a mixed matrix, as on the GPU).
template <class T, int Cols, int Rows> inline simdgroup_matrix<T, Cols, Rows> make_filled_simdgroup_matrix(T value) {
    simdgroup_matrix<T, Cols, Rows> m;
    m.e[0] = value;
    m.e[1] = value;
    return m;
}

}  // namespace metal

namespace metal_emu {

template <class T> struct matrix_access {
    T* data;
    ulong elements_per_row;
    ulong origin_x;
    ulong origin_y;
    bool transpose;
    T* at(int row, int col) const {
        ulong r = transpose ? ulong(col) : ulong(row);
        ulong c = transpose ? ulong(row) : ulong(col);
        return data + (origin_y + r) * elements_per_row + origin_x + c;
    }
    bool same(const matrix_access& o) const {
        return data == o.data && elements_per_row == o.elements_per_row && origin_x == o.origin_x &&
               origin_y == o.origin_y && transpose == o.transpose;
    }
};

inline bool all_lanes(emu_lane_slot* const* lanes, const char* op) {
    for (int i = 0; i < EMU_SIMD_WIDTH; i++)
        if (!lanes[i]) {
            emu_fail(op);
            return false;
        }
    return true;
}

template <class T> struct matrix_ops {
    typedef metal::simdgroup_matrix<T, 8, 8> M;
    struct load_args {
        matrix_access<const T> src;
    };
    struct store_args {
        matrix_access<T> dst;
        M m;
    };
    struct mad_args {
        M a, b, c;
    };
    static void load(emu_lane_slot* const* lanes) {
        if (!all_lanes(lanes, "simdgroup_load needs all 32 lanes of the simdgroup")) return;
        const load_args& first = in_of<load_args>(lanes[0]);
        for (int i = 1; i < EMU_SIMD_WIDTH; i++)
            if (!first.src.same(in_of<load_args>(lanes[i]).src)) {
                emu_fail("simdgroup_load: source address, stride or origin differs between lanes");
                return;
            }
        for (int i = 0; i < EMU_SIMD_WIDTH; i++)
            for (int k = 0; k < 2; k++) out_of<M>(lanes[i]).e[k] = *first.src.at((2 * i + k) / 8, (2 * i + k) % 8);
    }
    static void store(emu_lane_slot* const* lanes) {
        if (!all_lanes(lanes, "simdgroup_store needs all 32 lanes of the simdgroup")) return;
        const store_args& first = in_of<store_args>(lanes[0]);
        for (int i = 1; i < EMU_SIMD_WIDTH; i++)
            if (!first.dst.same(in_of<store_args>(lanes[i]).dst)) {
                emu_fail("simdgroup_store: destination address, stride or origin differs between lanes");
                return;
            }
        for (int i = 0; i < EMU_SIMD_WIDTH; i++)
            for (int k = 0; k < 2; k++) *first.dst.at((2 * i + k) / 8, (2 * i + k) % 8) = in_of<store_args>(lanes[i]).m.e[k];
    }
    static void multiply_accumulate(emu_lane_slot* const* lanes) {
        if (!all_lanes(lanes, "simdgroup_multiply_accumulate needs all 32 lanes of the simdgroup")) return;
        float a[64], b[64], c[64];
        for (int i = 0; i < EMU_SIMD_WIDTH; i++) {
            const mad_args& m = in_of<mad_args>(lanes[i]);
            for (int k = 0; k < 2; k++) {
                a[2 * i + k] = float(m.a.e[k]);
                b[2 * i + k] = float(m.b.e[k]);
                c[2 * i + k] = float(m.c.e[k]);
            }
        }
        for (int i = 0; i < EMU_SIMD_WIDTH; i++)
            for (int k = 0; k < 2; k++) {
                int r = (2 * i + k) / 8, col = (2 * i + k) % 8;
                float acc = c[r * 8 + col];
                for (int j = 0; j < 8; j++) acc += a[r * 8 + j] * b[j * 8 + col];
                out_of<M>(lanes[i]).e[k] = T(acc);
            }
    }
};

}  // namespace metal_emu

namespace metal {

template <class T>
inline void simdgroup_load(simdgroup_matrix<T, 8, 8>& d, const T* src, ulong elements_per_row = 8,
                           ulong2 matrix_origin = ulong2(0), bool transpose_matrix = false, METAL_EMU_SITE) {
    typedef metal_emu::matrix_ops<T> ops;
    typename ops::load_args a = {{src, elements_per_row, matrix_origin.x, matrix_origin.y, transpose_matrix}};
    simdgroup_matrix<T, 8, 8> out;
    emu_lane_slot slot = {&a, &out, 0, &ops::load, "simdgroup_load", file, line};
    emu_simd_rendezvous(&slot);
    d = out;
}

template <class T>
inline void simdgroup_store(const simdgroup_matrix<T, 8, 8>& m, T* dst, ulong elements_per_row = 8,
                            ulong2 matrix_origin = ulong2(0), bool transpose_matrix = false, METAL_EMU_SITE) {
    typedef metal_emu::matrix_ops<T> ops;
    typename ops::store_args a = {{dst, elements_per_row, matrix_origin.x, matrix_origin.y, transpose_matrix}, m};
    emu_lane_slot slot = {&a, nullptr, 0, &ops::store, "simdgroup_store", file, line};
    emu_simd_rendezvous(&slot);
}

template <class T>
inline void simdgroup_multiply_accumulate(simdgroup_matrix<T, 8, 8>& d, const simdgroup_matrix<T, 8, 8>& a,
                                          const simdgroup_matrix<T, 8, 8>& b, const simdgroup_matrix<T, 8, 8>& c,
                                          METAL_EMU_SITE) {
    typedef metal_emu::matrix_ops<T> ops;
    typename ops::mad_args args = {a, b, c};
    simdgroup_matrix<T, 8, 8> out;
    emu_lane_slot slot = {&args, &out, 0, &ops::multiply_accumulate, "simdgroup_multiply_accumulate", file, line};
    emu_simd_rendezvous(&slot);
    d = out;
}

template <class T>
inline void simdgroup_multiply(simdgroup_matrix<T, 8, 8>& d, const simdgroup_matrix<T, 8, 8>& a,
                               const simdgroup_matrix<T, 8, 8>& b, METAL_EMU_SITE) {
    simdgroup_multiply_accumulate(d, a, b, make_filled_simdgroup_matrix<T, 8, 8>(T(0.0f)), file, line);
}

#undef METAL_EMU_SITE

}  // namespace metal

// ---------------------------------------------------------------------------------------------
// Binding glue used by the generated launchers (see KernelGlue.cs).
namespace metal_emu {

template <class F> struct fn_params;
template <class... A> struct fn_params<void (*)(A...)> {
    template <int I, class Head, class... Tail> struct at_impl { typedef typename at_impl<I - 1, Tail...>::type type; };
    template <class Head, class... Tail> struct at_impl<0, Head, Tail...> { typedef Head type; };
    template <int I> using at = typename at_impl<I, A...>::type;
};

template <class P, bool Pointer = is_pointer<P>::value> struct buffer_binder;
template <class P> struct buffer_binder<P, true> {
    static const int kind = 0;
    static const int size = 0;
    static P bind(void* p) { return static_cast<P>(p); }
};
template <class P> struct buffer_binder<P, false> {
    static_assert(is_reference<P>::value, "a [[buffer(n)]] parameter must be a pointer or a reference");
    typedef typename remove_reference<P>::type V;
    static const int kind = 1;
    static const int size = sizeof(V);
    static P bind(void* p) { return *static_cast<V*>(p); }
};

template <class P> struct attr_binder;
template <> struct attr_binder<uint> {
    static uint bind(const uint32_t* v) { return v[0]; }
};
template <> struct attr_binder<ushort> {
    static ushort bind(const uint32_t* v) { return ushort(v[0]); }
};
template <> struct attr_binder<uint2> {
    static uint2 bind(const uint32_t* v) { return uint2(v[0], v[1]); }
};
template <> struct attr_binder<uint3> {
    static uint3 bind(const uint32_t* v) { return uint3(v[0], v[1], v[2]); }
};
template <> struct attr_binder<ushort2> {
    static ushort2 bind(const uint32_t* v) { return ushort2(ushort(v[0]), ushort(v[1])); }
};

}  // namespace metal_emu

// ---------------------------------------------------------------------------------------------
// Keywords and attributes. Defined last so that nothing above is affected.
#define kernel [[clang::annotate("metal_kernel")]]
#define device
#define constant const
#define thread
// Threadgroup arrays are declared at kernel scope. One OS thread runs one threadgroup at a time
// (its threads are fibers), so a thread_local static is exactly one instance per threadgroup.
#define threadgroup static thread_local
#define buffer(n) clang::annotate("metal_buffer_" #n)
#define thread_position_in_grid clang::annotate("metal_attr_thread_position_in_grid")
#define thread_position_in_threadgroup clang::annotate("metal_attr_thread_position_in_threadgroup")
#define threadgroup_position_in_grid clang::annotate("metal_attr_threadgroup_position_in_grid")
#define threads_per_threadgroup clang::annotate("metal_attr_threads_per_threadgroup")
#define threadgroups_per_grid clang::annotate("metal_attr_threadgroups_per_grid")
#define threads_per_grid clang::annotate("metal_attr_threads_per_grid")
#define thread_index_in_threadgroup clang::annotate("metal_attr_thread_index_in_threadgroup")
#define thread_index_in_simdgroup clang::annotate("metal_attr_thread_index_in_simdgroup")
#define simdgroup_index_in_threadgroup clang::annotate("metal_attr_simdgroup_index_in_threadgroup")
#define threads_per_simdgroup clang::annotate("metal_attr_threads_per_simdgroup")
#define simdgroups_per_threadgroup clang::annotate("metal_attr_simdgroups_per_threadgroup")
// MSL has no double.
#define double metal_emu_double_is_not_part_of_msl

#endif
