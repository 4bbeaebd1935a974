#include "kernels.hpp"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <string>

// GCC 12 warns on its own intrinsics' "undefined" operands under -Wall (a known false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

namespace animegan {

const char* type_name(Type t) {
    switch (t) {
        case Type::F32: return "f32";
        case Type::BF16: return "bf16";
        case Type::U8: return "u8";
        case Type::S32: return "s32";
    }
    return "?";
}

namespace {

// oneDNN's ISA cap (ONEDNN_MAX_CPU_ISA, or DNNL_MAX_CPU_ISA) below AVX-512, as a benchmark sets it
// to show an older CPU: these loops keep to it too.
bool capped_below_avx512() {
    const char* cap = std::getenv("ONEDNN_MAX_CPU_ISA");
    if (cap == nullptr) cap = std::getenv("DNNL_MAX_CPU_ISA");
    if (cap == nullptr) return false;
    std::string name(cap);
    for (auto& ch : name) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    return name == "SSE41" || name == "AVX" || name == "AVX2" || name == "AVX2_VNNI";
}

bool has_avx512() {
    static const bool yes = __builtin_cpu_supports("avx512f") && !capped_below_avx512();
    return yes;
}

// ---- portable loops ------------------------------------------------------------------------------

template <Type S>
inline float load1(const void* p, long i) {
    if constexpr (S == Type::F32) return static_cast<const float*>(p)[i];
    if constexpr (S == Type::BF16) return from_bf16(static_cast<const uint16_t*>(p)[i]);
    if constexpr (S == Type::U8) return static_cast<float>(static_cast<const uint8_t*>(p)[i]);
    if constexpr (S == Type::S32) return static_cast<float>(static_cast<const int32_t*>(p)[i]);
    return 0.0f;
}

template <Type D>
inline void store1(void* p, long i, float v, float zero) {
    if constexpr (D == Type::F32) static_cast<float*>(p)[i] = v;
    if constexpr (D == Type::BF16) static_cast<uint16_t*>(p)[i] = to_bf16(v);
    if constexpr (D == Type::U8) {
        v = std::nearbyint(std::min(std::max(v + zero, 0.0f), 255.0f));
        static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(v);
    }
}

bool has_avx2() {
    static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return yes;
}

// The portable loops are compiled twice, for AVX2 + FMA and for the baseline, by wrappers that
// inline one body (GCC vectorises them over the channels).
template <Type S, Type D>
__attribute__((always_inline)) inline void transform_body(const void* src, void* dst, long pixels, long c,
                                                          const float* a, const float* b, bool lrelu, float zero) {
    for (long p = 0; p < pixels; ++p) {
        for (long ch = 0; ch < c; ++ch) {
            long i = p * c + ch;
            float v = load1<S>(src, i) * a[ch] + b[ch];
            if (lrelu) v = std::max(v, v * kSlope);
            store1<D>(dst, i, v, zero);
        }
    }
}

template <Type S, Type D>
__attribute__((target("avx2,fma"))) void transform_avx2(const void* src, void* dst, long pixels, long c,
                                                        const float* a, const float* b, bool lrelu, float zero) {
    transform_body<S, D>(src, dst, pixels, c, a, b, lrelu, zero);
}

template <Type S, Type D>
void transform_plain(const void* src, void* dst, long pixels, long c, const float* a, const float* b, bool lrelu,
                     float zero) {
    transform_body<S, D>(src, dst, pixels, c, a, b, lrelu, zero);
}

template <Type S>
void stats_scalar(const void* src, long pixels, long c, const float* a, const float* b, float* sum, float* sumsq,
                  float* mn, float* mx) {
    for (long ch = 0; ch < c; ++ch) {
        float s = 0.0f, q = 0.0f, lo = INFINITY, hi = -INFINITY;
        float sa = a == nullptr ? 1.0f : a[ch], sb = b == nullptr ? 0.0f : b[ch];
        for (long p = 0; p < pixels; ++p) {
            float v = load1<S>(src, p * c + ch) * sa + sb;
            s += v;
            q = std::fma(v, v, q);
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
        sum[ch] = s;
        sumsq[ch] = q;
        mn[ch] = lo;
        mx[ch] = hi;
    }
}

// ---- AVX-512 (16 channels at a time) --------------------------------------------------------------

template <Type S>
__attribute__((target("avx512f"))) inline __m512 load16(const void* p, long i) {
    if constexpr (S == Type::F32) {
        return _mm512_loadu_ps(static_cast<const float*>(p) + i);
    } else if constexpr (S == Type::BF16) {
        auto raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + i));
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
    } else if constexpr (S == Type::U8) {
        auto raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint8_t*>(p) + i));
        return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(raw));
    } else {
        return _mm512_cvtepi32_ps(_mm512_loadu_si512(static_cast<const int32_t*>(p) + i));
    }
}

template <Type D>
__attribute__((target("avx512f"))) inline void store16(void* p, long i, __m512 v, __m512 zero) {
    if constexpr (D == Type::F32) {
        _mm512_storeu_ps(static_cast<float*>(p) + i, v);
    } else if constexpr (D == Type::BF16) {
        __m512i bits = _mm512_castps_si512(v);
        __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
        bits = _mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), lsb));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(static_cast<uint16_t*>(p) + i),
                            _mm512_cvtepi32_epi16(_mm512_srli_epi32(bits, 16)));
    } else {
        v = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, zero), _mm512_setzero_ps()), _mm512_set1_ps(255.0f));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<uint8_t*>(p) + i),
                         _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)));  // rounds to nearest even
    }
}

template <Type S, Type D>
__attribute__((target("avx512f"))) void transform_avx512(const void* src, void* dst, long pixels, long c,
                                                          const float* a, const float* b, bool lrelu, float zero) {
    const __m512 slope = _mm512_set1_ps(lrelu ? kSlope : 1.0f), z = _mm512_set1_ps(zero);
    for (long p = 0; p < pixels; ++p) {
        for (long ch = 0; ch < c; ch += 16) {
            long i = p * c + ch;
            __m512 v = _mm512_fmadd_ps(load16<S>(src, i), _mm512_loadu_ps(a + ch), _mm512_loadu_ps(b + ch));
            v = _mm512_max_ps(v, _mm512_mul_ps(v, slope));  // slope 1: the identity
            store16<D>(dst, i, v, z);
        }
    }
}

template <Type S>
__attribute__((target("avx512f"))) void stats_avx512(const void* src, long pixels, long c, const float* a,
                                                      const float* b, float* sum, float* sumsq, float* mn, float* mx) {
    for (long ch = 0; ch < c; ch += 16) {
        __m512 s = _mm512_setzero_ps(), q = _mm512_setzero_ps();
        __m512 lo = _mm512_set1_ps(INFINITY), hi = _mm512_set1_ps(-INFINITY);
        __m512 sa = a == nullptr ? _mm512_set1_ps(1.0f) : _mm512_loadu_ps(a + ch);
        __m512 sb = b == nullptr ? _mm512_setzero_ps() : _mm512_loadu_ps(b + ch);
        for (long p = 0; p < pixels; ++p) {
            __m512 v = load16<S>(src, p * c + ch);
            if (a != nullptr) v = _mm512_fmadd_ps(v, sa, sb);
            s = _mm512_add_ps(s, v);
            q = _mm512_fmadd_ps(v, v, q);
            lo = _mm512_min_ps(lo, v);
            hi = _mm512_max_ps(hi, v);
        }
        _mm512_storeu_ps(sum + ch, s);
        _mm512_storeu_ps(sumsq + ch, q);
        _mm512_storeu_ps(mn + ch, lo);
        _mm512_storeu_ps(mx + ch, hi);
    }
}

template <Type S, Type D>
void transform_typed(const void* src, void* dst, long pixels, long c, const float* a, const float* b, bool lrelu,
                     float zero) {
    if (c % 16 == 0 && has_avx512()) {
        transform_avx512<S, D>(src, dst, pixels, c, a, b, lrelu, zero);
    } else if (has_avx2()) {
        transform_avx2<S, D>(src, dst, pixels, c, a, b, lrelu, zero);
    } else {
        transform_plain<S, D>(src, dst, pixels, c, a, b, lrelu, zero);
    }
}

template <Type S>
void transform_to(Type dst_t, const void* src, void* dst, long pixels, long c, const float* a, const float* b,
                  bool lrelu, float zero) {
    switch (dst_t) {
        case Type::F32: return transform_typed<S, Type::F32>(src, dst, pixels, c, a, b, lrelu, zero);
        case Type::BF16: return transform_typed<S, Type::BF16>(src, dst, pixels, c, a, b, lrelu, zero);
        case Type::U8: return transform_typed<S, Type::U8>(src, dst, pixels, c, a, b, lrelu, zero);
        default: throw ArgError("transform: cannot write s32");
    }
}

template <Type S>
void stats_typed(const void* src, long pixels, long c, const float* a, const float* b, float* sum, float* sumsq,
                 float* mn, float* mx) {
    // The scalar loop adds each channel's pixels in the same order as the vector lanes do, so
    // both give the same sums.
    if (c % 16 == 0 && has_avx512()) {
        stats_avx512<S>(src, pixels, c, a, b, sum, sumsq, mn, mx);
    } else {
        stats_scalar<S>(src, pixels, c, a, b, sum, sumsq, mn, mx);
    }
}

}  // namespace

void transform(Type src_t, const void* src, Type dst_t, void* dst, long pixels, long c, const float* a,
               const float* b, bool lrelu, float zero) {
    switch (src_t) {
        case Type::F32: return transform_to<Type::F32>(dst_t, src, dst, pixels, c, a, b, lrelu, zero);
        case Type::BF16: return transform_to<Type::BF16>(dst_t, src, dst, pixels, c, a, b, lrelu, zero);
        case Type::U8: return transform_to<Type::U8>(dst_t, src, dst, pixels, c, a, b, lrelu, zero);
        case Type::S32: return transform_to<Type::S32>(dst_t, src, dst, pixels, c, a, b, lrelu, zero);
    }
}

void stats(Type src_t, const void* src, long pixels, long c, const float* a, const float* b, float* sum,
           float* sumsq, float* mn, float* mx) {
    switch (src_t) {
        case Type::F32: return stats_typed<Type::F32>(src, pixels, c, a, b, sum, sumsq, mn, mx);
        case Type::BF16: return stats_typed<Type::BF16>(src, pixels, c, a, b, sum, sumsq, mn, mx);
        case Type::U8: return stats_typed<Type::U8>(src, pixels, c, a, b, sum, sumsq, mn, mx);
        case Type::S32: return stats_typed<Type::S32>(src, pixels, c, a, b, sum, sumsq, mn, mx);
    }
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void lerp(const float* x, const float* y, float t,
                                                                         float* dst, long n) {
    for (long i = 0; i < n; ++i) dst[i] = x[i] + (y[i] - x[i]) * t;
}

namespace {

template <Type D>
__attribute__((always_inline)) inline void resize_body(const float* line, const int32_t* c0, const int32_t* c1,
                                                       const float* cw, long n_cols, long c, void* dst, float inv,
                                                       float zero) {
    for (long j = 0; j < n_cols; ++j) {
        const float* p = line + static_cast<long>(c0[j]) * c;
        const float* q = line + static_cast<long>(c1[j]) * c;
        float s = cw[j];
        for (long ch = 0; ch < c; ++ch) {
            float v = p[ch] + (q[ch] - p[ch]) * s;
            if constexpr (D == Type::U8) {
                v = std::nearbyint(std::min(std::max(v * inv + zero, 0.0f), 255.0f));
                static_cast<uint8_t*>(dst)[j * c + ch] = static_cast<uint8_t>(v);
            } else if constexpr (D == Type::BF16) {
                static_cast<uint16_t*>(dst)[j * c + ch] = to_bf16(v);
            } else {
                static_cast<float*>(dst)[j * c + ch] = v;
            }
        }
    }
}

template <Type D>
__attribute__((target("avx2,fma"))) void resize_avx2(const float* line, const int32_t* c0, const int32_t* c1,
                                                     const float* cw, long n_cols, long c, void* dst, float inv,
                                                     float zero) {
    resize_body<D>(line, c0, c1, cw, n_cols, c, dst, inv, zero);
}

template <Type D>
void resize_plain(const float* line, const int32_t* c0, const int32_t* c1, const float* cw, long n_cols, long c,
                  void* dst, float inv, float zero) {
    resize_body<D>(line, c0, c1, cw, n_cols, c, dst, inv, zero);
}

template <Type D>
void resize_row_typed(const float* line, const int32_t* c0, const int32_t* c1, const float* cw, long n_cols, long c,
                      void* dst, float inv, float zero) {
    if (has_avx2()) {
        resize_avx2<D>(line, c0, c1, cw, n_cols, c, dst, inv, zero);
    } else {
        resize_plain<D>(line, c0, c1, cw, n_cols, c, dst, inv, zero);
    }
}

}  // namespace

void resize_row(const float* line, const int32_t* c0, const int32_t* c1, const float* cw, long n_cols, long c,
                Type dst_t, void* dst, float inv, float zero) {
    switch (dst_t) {
        case Type::F32: return resize_row_typed<Type::F32>(line, c0, c1, cw, n_cols, c, dst, inv, zero);
        case Type::BF16: return resize_row_typed<Type::BF16>(line, c0, c1, cw, n_cols, c, dst, inv, zero);
        case Type::U8: return resize_row_typed<Type::U8>(line, c0, c1, cw, n_cols, c, dst, inv, zero);
        default: throw ArgError("resize: cannot write s32");
    }
}

namespace {

// tanh(x) = sign(x) (1 - e) / (1 + e) with e = exp(-2|x|): exp by a degree-6 polynomial on the
// reduced argument and a power of two (about 1e-7 absolute: far below the 8-bit output's step).
__attribute__((target("avx512f"))) long to_rgb_avx512(const float* src, uint8_t* dst, long n) {
    const __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(127.5f);
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(src + i);
        __m512 z = _mm512_mul_ps(_mm512_min_ps(_mm512_abs_ps(x), _mm512_set1_ps(20.0f)), _mm512_set1_ps(-2.0f));
        __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(z, _mm512_set1_ps(1.44269504f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), z);
        r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
        __m512 p = _mm512_set1_ps(1.0f / 720);
        for (float c : {1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        __m512 e = _mm512_scalef_ps(p, k);
        __m512 t = _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e));
        __m512i sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(static_cast<int>(0x80000000u)));
        t = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(t), sign));
        t = _mm512_min_ps(_mm512_max_ps(t, _mm512_set1_ps(-1.0f)), one);
        __m512i q = _mm512_cvtps_epi32(_mm512_fmadd_ps(t, half, half));  // rounds to nearest even
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm512_cvtepi32_epi8(q));
    }
    return i;
}

}  // namespace

void to_rgb(const float* src, uint8_t* dst, long n) {
    long i = has_avx512() ? to_rgb_avx512(src, dst, n) : 0;
    for (; i < n; ++i) {
        float v = std::min(std::max(std::tanh(src[i]), -1.0f), 1.0f) * 127.5f + 127.5f;
        dst[i] = static_cast<uint8_t>(std::nearbyint(v));
    }
}

}  // namespace animegan
