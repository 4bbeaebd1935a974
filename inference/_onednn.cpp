// Native bf16 kernels of the banded engine (inference/runtime_onednn.py loads this with ctypes).
//
// Maps are channels-last (rows x cols x C) bf16 arrays, the layout oneDNN's bf16 convolutions run
// in (AVX512_BF16 and AMX kernels alike), so no band ever pays a layout reorder on its way in or
// out. oneDNN runs the convolutions; the passes around them are plain loops here: a GroupNorm's
// scale/shift + LeakyReLU on the way into a band, per-channel sums of a band's output (f32 per
// row, accumulated in double), the residual add, the bilinear upsample of a band's rows.
//
// Builds against oneDNN 2.x (Debian 12's libdnnl-dev) and 3.x.
//
// Every call runs in its caller's thread with one OpenMP thread: the engine runs one band per
// thread, and a band's result never depends on how many run beside it.

#include <Python.h>  // only for the module's init: pip builds this as the extension `inference._onednn`
#include <dnnl.hpp>
// GCC 12 warns on its own intrinsics' "undefined" operands under -Wall (a known false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

thread_local std::string last_error;

dnnl::engine& cpu() {
    static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    return engine;
}

inline float from_bf16(uint16_t v) {
    uint32_t bits = static_cast<uint32_t>(v) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

inline uint16_t to_bf16(float f) {  // round to nearest even, as oneDNN and OpenVINO convert
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    bits += 0x7FFFu + ((bits >> 16) & 1u);
    return static_cast<uint16_t>(bits >> 16);
}

// One convolution layer: its f32 weights, and a primitive (with weights in the primitive's own
// bf16 layout) per input band shape. A job has two band shapes per layer (full bands and the
// last one); the cache keeps the few most recent, so images of other sizes do not pile up.
struct Conv {
    int ic, oc, k, stride, groups;
    bool f32_out;
    std::vector<float> weights, bias;
    struct Prim {
        int h, w;
        dnnl::convolution_forward prim;
        memory wei, bia;
        memory::desc src, dst, scratch;
    };
    std::vector<std::shared_ptr<Prim>> cache;
    std::mutex lock;
    static constexpr size_t kCached = 4;

    std::shared_ptr<Prim> get(int h, int w) {
        std::lock_guard<std::mutex> guard(lock);
        for (size_t i = 0; i < cache.size(); ++i) {
            if (cache[i]->h == h && cache[i]->w == w) {
                auto hit = cache[i];
                cache.erase(cache.begin() + static_cast<long>(i));
                cache.push_back(hit);
                return hit;
            }
        }
        auto made = make(h, w);
        if (cache.size() >= kCached) cache.erase(cache.begin());
        cache.push_back(made);
        return made;
    }

    std::shared_ptr<Prim> make(int h, int w) {
        auto& eng = cpu();
        int oh = (h - k) / stride + 1, ow = (w - k) / stride + 1;
        memory::desc src({1, ic, h, w}, dt::bf16, tag::nhwc);
        memory::desc dst({1, oc, oh, ow}, f32_out ? dt::f32 : dt::bf16, tag::nhwc);
        memory::dims wdims = groups > 1 ? memory::dims{groups, oc / groups, ic / groups, k, k}
                                        : memory::dims{oc, ic, k, k};
        memory::desc wany(wdims, dt::bf16, tag::any);
        memory::desc bdesc({oc}, dt::f32, tag::a);
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // per call: concurrent bands share the primitive
#if DNNL_VERSION_MAJOR >= 3
        dnnl::convolution_forward::primitive_desc pd(eng, dnnl::prop_kind::forward_inference,
                                                     dnnl::algorithm::convolution_direct, src, wany, bdesc, dst,
                                                     {stride, stride}, {0, 0}, {0, 0}, attr);
#else
        dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                             src, wany, bdesc, dst, {stride, stride}, {0, 0}, {0, 0});
        dnnl::convolution_forward::primitive_desc pd(desc, attr, eng);
#endif
        auto p = std::make_shared<Prim>();
        p->h = h;
        p->w = w;
        p->prim = dnnl::convolution_forward(pd);
        p->src = src;
        p->dst = dst;
        p->scratch = pd.scratchpad_desc();
        memory plain(memory::desc(wdims, dt::f32, groups > 1 ? tag::goihw : tag::oihw), eng, weights.data());
        p->wei = memory(pd.weights_desc(), eng);
        p->bia = memory(bdesc, eng);
        std::memcpy(p->bia.get_data_handle(), bias.data(), sizeof(float) * static_cast<size_t>(oc));
        dnnl::stream s(eng);
        dnnl::reorder(plain, p->wei).execute(s, plain, p->wei);
        s.wait();
        return p;
    }
};

thread_local std::vector<uint8_t> scratchpad;

}  // namespace

extern "C" {

const char* ad_last_error() { return last_error.c_str(); }

// A convolution (OIHW or, grouped, G x O/G x I/G x K x K f32 weights; bias may be null); the
// caller pads rows and columns itself (reflection). `f32_out`: the output is float32 (the last
// layer), else bf16.
void* ad_conv_new(int ic, int oc, int k, int stride, int groups, const float* weights, const float* bias, int f32_out) {
    try {
        auto* c = new Conv();
        c->ic = ic;
        c->oc = oc;
        c->k = k;
        c->stride = stride;
        c->groups = groups;
        c->f32_out = f32_out != 0;
        size_t n = static_cast<size_t>(oc) * static_cast<size_t>(ic / groups) * static_cast<size_t>(k * k);
        c->weights.assign(weights, weights + n);
        c->bias.assign(static_cast<size_t>(oc), 0.0f);
        if (bias != nullptr) c->bias.assign(bias, bias + oc);
        return c;
    } catch (const std::exception& e) {
        last_error = e.what();
        return nullptr;
    }
}

void ad_conv_free(void* handle) { delete static_cast<Conv*>(handle); }

// Drops the cached primitives (their weights and kernels) of a layer, e.g. after a job.
void ad_conv_trim(void* handle) {
    auto* c = static_cast<Conv*>(handle);
    std::lock_guard<std::mutex> guard(c->lock);
    c->cache.clear();
}

// src: h x w x ic bf16 (already padded), dst: oh x ow x oc (bf16, or f32 for f32_out).
int ad_conv_run(void* handle, const uint16_t* src, int h, int w, void* dst) {
    try {
        omp_set_num_threads(1);
        auto* c = static_cast<Conv*>(handle);
        auto p = c->get(h, w);
        auto& eng = cpu();
        memory s(p->src, eng, const_cast<uint16_t*>(src));
        memory d(p->dst, eng, dst);
        size_t need = p->scratch.get_size();
        if (scratchpad.size() < need) scratchpad.resize(need);
        memory pad(p->scratch, eng, scratchpad.data());
        dnnl::stream stream(eng);
        p->prim.execute(stream, {{DNNL_ARG_SRC, s},
                                 {DNNL_ARG_WEIGHTS, p->wei},
                                 {DNNL_ARG_BIAS, p->bia},
                                 {DNNL_ARG_DST, d},
                                 {DNNL_ARG_SCRATCHPAD, pad}});
        stream.wait();
        return 0;
    } catch (const std::exception& e) {
        last_error = e.what();
        return -1;
    }
}

// dst = lrelu(src * scale + shift) over 16 channels at a time (the compiler does not vectorise
// the scalar form: 0.9 s of a 2.4 s image at 1024x576). max(v, slope * v) is LeakyReLU for slope < 1.
__attribute__((target("avx512f"))) static void affine_lrelu_avx512(
    const uint16_t* src, long src_pitch, uint16_t* dst, long dst_pitch, long rows, long cols, long c,
    const float* scale, const float* shift, float slope) {
    const __m512 sl = _mm512_set1_ps(slope);
    const __m512i one = _mm512_set1_epi32(1), half = _mm512_set1_epi32(0x7FFF);
    for (long r = 0; r < rows; ++r) {
        const uint16_t* s = src + r * src_pitch * c;
        uint16_t* d = dst + r * dst_pitch * c;
        for (long p = 0; p < cols; ++p, s += c, d += c) {
            for (long ch = 0; ch < c; ch += 16) {
                __m512i raw = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + ch)));
                __m512 v = _mm512_castsi512_ps(_mm512_slli_epi32(raw, 16));
                v = _mm512_fmadd_ps(v, _mm512_loadu_ps(scale + ch), _mm512_loadu_ps(shift + ch));
                v = _mm512_max_ps(v, _mm512_mul_ps(v, sl));
                __m512i bits = _mm512_castps_si512(v);
                bits = _mm512_add_epi32(bits, _mm512_add_epi32(half, _mm512_and_si512(_mm512_srli_epi32(bits, 16), one)));
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + ch), _mm512_cvtepi32_epi16(_mm512_srli_epi32(bits, 16)));
            }
        }
    }
}

// dst = lrelu(src * scale + shift) per channel, for `rows` rows of `cols` pixels; row pitches in
// pixels (so a band can be written into the interior of a padded buffer). src and dst either do
// not overlap or are the same array.
void ad_affine_lrelu(const uint16_t* src, long src_pitch, uint16_t* dst, long dst_pitch, long rows, long cols, long c,
                     const float* scale, const float* shift, float slope) {
    if (c % 16 == 0 && __builtin_cpu_supports("avx512f")) {
        affine_lrelu_avx512(src, src_pitch, dst, dst_pitch, rows, cols, c, scale, shift, slope);
        return;
    }
    for (long r = 0; r < rows; ++r) {
        const uint16_t* s = src + r * src_pitch * c;
        uint16_t* d = dst + r * dst_pitch * c;
        for (long i = 0; i < cols * c; ++i) {
            float v = from_bf16(s[i]) * scale[i % c] + shift[i % c];
            d[i] = to_bf16(v > 0.0f ? v : v * slope);
        }
    }
}

inline void affine_add_pixel(const uint16_t* p, const uint16_t* r, uint16_t* d,
                             long c, const float* __restrict scale, const float* __restrict shift) {
    if (r == nullptr) {
        for (long ch = 0; ch < c; ++ch) d[ch] = to_bf16(from_bf16(p[ch]) * scale[ch] + shift[ch]);
    } else {
        for (long ch = 0; ch < c; ++ch) d[ch] = to_bf16(from_bf16(p[ch]) * scale[ch] + shift[ch] + from_bf16(r[ch]));
    }
}

// dst = p * scale + shift (+ r when given): an InvertedResBlock's last norm and residual add;
// dst may be p (each value is read before it is written).
__attribute__((target_clones("avx512f", "avx2", "default"))) void ad_affine_add(
    const uint16_t* p, const uint16_t* r, uint16_t* dst, long pixels, long c, const float* scale, const float* shift) {
    for (long i = 0; i < pixels; ++i) affine_add_pixel(p + i * c, r == nullptr ? nullptr : r + i * c, dst + i * c, c, scale, shift);
}

// Per-channel sum and sum of squares of each of `rows` rows of `cols` x `c` bf16 values, in f32,
// pixels added in order: a row's partial sums are the same whichever band it falls in, so the
// engine's in-order float64 totals of them, and the statistics, do not depend on the band split.
__attribute__((target("avx512f"))) static void stats_avx512(const uint16_t* y, long rows, long cols, long c,
                                                            float* sums, float* sumsqs) {
    for (long r = 0; r < rows; ++r) {
        for (long ch = 0; ch < c; ch += 16) {
            __m512 s = _mm512_setzero_ps(), q = _mm512_setzero_ps();
            const uint16_t* p = y + r * cols * c + ch;
            for (long i = 0; i < cols; ++i, p += c) {
                __m512i raw = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
                __m512 v = _mm512_castsi512_ps(_mm512_slli_epi32(raw, 16));
                s = _mm512_add_ps(s, v);
                q = _mm512_fmadd_ps(v, v, q);
            }
            _mm512_storeu_ps(sums + r * c + ch, s);
            _mm512_storeu_ps(sumsqs + r * c + ch, q);
        }
    }
}

void ad_stats(const uint16_t* y, long rows, long cols, long c, float* sums, float* sumsqs) {
    if (c % 16 == 0 && __builtin_cpu_supports("avx512f")) {
        stats_avx512(y, rows, cols, c, sums, sumsqs);
        return;
    }
    for (long r = 0; r < rows; ++r) {
        for (long ch = 0; ch < c; ++ch) {
            float s = 0.0f, q = 0.0f;
            for (long i = 0; i < cols; ++i) {
                float v = from_bf16(y[(r * cols + i) * c + ch]);
                s += v;
                q = std::fma(v, v, q);
            }
            sums[r * c + ch] = s;
            sumsqs[r * c + ch] = q;
        }
    }
}

// float32 -> bf16 (the image, once per job).
void ad_to_bf16(const float* src, uint16_t* dst, long n) {
    for (long i = 0; i < n; ++i) dst[i] = to_bf16(src[i]);
}

// Bilinear resampling of activated source rows (m x w x c bf16) into n_rows x n_cols x c:
// output (i, j) = lerp over rows r0[i], r1[i] (weight rw[i] of r1) of lerps over columns c0[j],
// c1[j] (weight cw[j] of c1). The tables carry torch's coordinates and any reflection padding.
__attribute__((target_clones("avx512f", "avx2", "default"))) void ad_resample(
    const uint16_t* src, long w, long c, const int32_t* r0, const int32_t* r1, const float* rw, long n_rows,
    const int32_t* c0, const int32_t* c1, const float* cw, long n_cols, uint16_t* dst) {
    std::vector<float> line(static_cast<size_t>(w * c));
    float* lp = line.data();
    for (long i = 0; i < n_rows; ++i) {
        const uint16_t* a = src + r0[i] * w * c;
        const uint16_t* b = src + r1[i] * w * c;
        float t = rw[i];
        for (long x = 0; x < w * c; ++x) {
            float u = from_bf16(a[x]);
            lp[x] = u + (from_bf16(b[x]) - u) * t;
        }
        uint16_t* out = dst + i * n_cols * c;
        for (long j = 0; j < n_cols; ++j) {
            const float* p = lp + c0[j] * c;
            const float* q = lp + c1[j] * c;
            float s = cw[j];
            for (long ch = 0; ch < c; ++ch) out[j * c + ch] = to_bf16(p[ch] + (q[ch] - p[ch]) * s);
        }
    }
}

}  // extern "C"

// An empty Python module, so `inference._onednn` imports like any module of the package (its
// functions are reached through ctypes, which lets them run without the GIL).
static PyModuleDef onednn_module = {PyModuleDef_HEAD_INIT, "_onednn", "Native bf16 kernels; see inference.runtime_onednn.", -1,
                                    nullptr, nullptr, nullptr, nullptr, nullptr};

PyMODINIT_FUNC PyInit__onednn(void) { return PyModule_Create(&onednn_module); }
