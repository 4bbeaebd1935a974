// The passes around a conv that every layer shares: per-row coefficients, band assembly with
// reflection, statistics and storage of a conv's output, the image as the first conv reads it;
// and the map functions (load, read, totals).
#include "passes.hpp"

#include <cmath>

#include "kernels.hpp"

namespace animegan {

// ---- per-row coefficients --------------------------------------------------------------------------

namespace {

float* coefs(Scratch& s, int c) { return s.coef.as<float>(static_cast<size_t>(4 * c)); }

// a, b such that emit(lrelu?(load(row) * a + b)) is `act` applied to row r of `src`'s values,
// written as `dst` (U8: divided by the conv input's scale; the zero point is added on emit).
void row_coefs(const Map& src, int r, const Act& act, Type dst, float* a, float* b) {
    float inv = dst == Type::U8 ? 1.0f / act.qscale : 1.0f;
    const float* qs = src.store == Type::U8 ? src.row_stats(src.qscale, r) : nullptr;
    const float* qo = src.store == Type::U8 ? src.row_stats(src.qoffset, r) : nullptr;
    for (int ch = 0; ch < src.c; ++ch) {
        float sa = qs ? qs[ch] : 1.0f, sb = qo ? qo[ch] : 0.0f;
        float na = act.scale ? act.scale[ch] : 1.0f, nb = act.shift ? act.shift[ch] : 0.0f;
        a[ch] = sa * na * inv;
        b[ch] = (sb * na + nb) * inv;
    }
}

float emit_zero(const Act& act, Type dst) { return dst == Type::U8 ? act.qzero : 0.0f; }

// The (h, w, 3) u8 image's rows lo..hi and columns -pad..w+pad (reflected) as the first conv's input.
template <typename T, typename F>
void image_band_as(const uint8_t* image, int h, int w, int lo, int hi, int pad, T* out, F convert) {
    int cols = w + 2 * pad;
    for (int r = lo; r < hi; ++r) {
        const uint8_t* src = image + static_cast<size_t>(reflect(r, h)) * w * 3;
        T* line = out + static_cast<size_t>(r - lo) * cols * 3;
        for (int j = 0; j < pad; ++j) {
            for (int ch = 0; ch < 3; ++ch) {
                line[j * 3 + ch] = convert(src[reflect(j - pad, w) * 3 + ch]);
                line[(pad + w + j) * 3 + ch] = convert(src[reflect(w + j, w) * 3 + ch]);
            }
        }
        for (int i = 0; i < 3 * w; ++i) line[3 * pad + i] = convert(src[i]);
    }
}

}  // namespace

// Rows lo..hi of `src` (reflected past its edges) with `act` applied, as `dst` values, into `out`
// (hi - lo rows of w + left + right pixels), columns reflected left and right.
void assemble(const Map& src, int lo, int hi, int left, int right, const Act& act, Type dst, uint8_t* out,
              Scratch& s) {
    size_t pixel = static_cast<size_t>(src.c) * type_size(dst);
    int cols = src.w + left + right;
    float* a = coefs(s, src.c);
    float* b = a + src.c;
    bool per_row = src.store == Type::U8;
    if (!per_row) row_coefs(src, 0, act, dst, a, b);
    for (int r = lo; r < hi; ++r) {
        int sr = reflect(r, src.h);
        if (per_row) row_coefs(src, sr, act, dst, a, b);
        uint8_t* line = out + static_cast<size_t>(r - lo) * cols * pixel;
        transform(src.store, src.row(sr), dst, line + left * pixel, src.w, src.c, a, b, act.lrelu,
                  emit_zero(act, dst));
        for (int k = 1; k <= left; ++k) std::memcpy(line + (left - k) * pixel, line + (left + k) * pixel, pixel);
        for (int k = 1; k <= right; ++k) {
            std::memcpy(line + (left + src.w - 1 + k) * pixel, line + (left + src.w - 1 - k) * pixel, pixel);
        }
    }
}

// Rows r0..r1 of `out` from a conv's output `raw` (value = raw * a + b per channel; a, b null:
// as they are): per-row statistics, then the values stored in the map's type (skipped when the
// conv wrote into the map's band itself: `direct`).
void finish(Map& out, int r0, int r1, const uint8_t* raw, Type raw_t, const float* a, const float* b, bool direct,
            Scratch& s) {
    size_t row_bytes = static_cast<size_t>(out.w) * out.c * type_size(raw_t);
    float* ones = coefs(s, out.c);
    float* zeros = ones + out.c;
    float* qa = zeros + out.c;
    float* qb = qa + out.c;
    for (int ch = 0; ch < out.c; ++ch) {
        ones[ch] = 1.0f;
        zeros[ch] = 0.0f;
    }
    for (int r = r0; r < r1; ++r) {
        const uint8_t* row = raw + static_cast<size_t>(r - r0) * row_bytes;
        float* mn = out.row_stats(out.mins, r);
        float* mx = out.row_stats(out.maxs, r);
        stats(raw_t, row, out.w, out.c, a, b, out.row_stats(out.sums, r), out.row_stats(out.sumsqs, r), mn, mx);
        if (direct || out.bands.empty()) continue;
        const float* sa = a ? a : ones;
        const float* sb = b ? b : zeros;
        if (out.store != Type::U8) {
            transform(raw_t, row, out.store, out.row(r), out.w, out.c, sa, sb, false, 0.0f);
            continue;
        }
        // U8 storage: each row and channel over its own range (value = q * scale + min).
        float* qs = out.row_stats(out.qscale, r);
        float* qo = out.row_stats(out.qoffset, r);
        for (int ch = 0; ch < out.c; ++ch) {
            float step = (mx[ch] - mn[ch]) / 255.0f;
            float inv = step > 0.0f ? 1.0f / step : 0.0f;
            qs[ch] = step;
            qo[ch] = mn[ch];
            qa[ch] = sa[ch] * inv;
            qb[ch] = (sb[ch] - mn[ch]) * inv;
        }
        transform(raw_t, row, Type::U8, out.row(r), out.w, out.c, qa, qb, false, 0.0f);
    }
}

void image_band(const uint8_t* image, int h, int w, int lo, int hi, int pad, Type dst, uint8_t* out) {
    auto value = [](uint8_t p) { return static_cast<float>(p) * kImageScale - 1.0f; };
    if (dst == Type::U8) image_band_as(image, h, w, lo, hi, pad, out, [](uint8_t p) { return p; });
    if (dst == Type::F32) image_band_as(image, h, w, lo, hi, pad, reinterpret_cast<float*>(out), value);
    if (dst == Type::BF16) {
        image_band_as(image, h, w, lo, hi, pad, reinterpret_cast<uint16_t*>(out),
                      [&](uint8_t p) { return to_bf16(value(p)); });
    }
}

// ---- maps ------------------------------------------------------------------------------------------

std::unique_ptr<Map> load_map(Runner& run, const float* values, int h, int w, int c, int rows, Type store) {
    require(store != Type::S32, "maps are stored as f32, bf16 or u8");
    auto out = std::make_unique<Map>(store, c, h, w, rows, run.pool, true);
    Map& map = *out;
    run.bands(
        map.nbands(),
        [&](int k, Scratch& s) {
            int r0 = k * rows, r1 = std::min(r0 + rows, h);
            map.ensure_band(k);
            finish(map, r0, r1, reinterpret_cast<const uint8_t*>(values + static_cast<size_t>(r0) * w * c), Type::F32,
                   nullptr, nullptr, false, s);
        },
        [](int) {});
    return out;
}

void read_map(const Map& map, float* out) {
    std::vector<float> a(static_cast<size_t>(map.c), 1.0f), b(static_cast<size_t>(map.c), 0.0f);
    for (int r = 0; r < map.h; ++r) {
        if (map.store == Type::U8) {
            std::copy_n(map.row_stats(map.qscale, r), map.c, a.data());
            std::copy_n(map.row_stats(map.qoffset, r), map.c, b.data());
        }
        transform(map.store, map.row(r), Type::F32, out + static_cast<size_t>(r) * map.w * map.c, map.w, map.c,
                  a.data(), b.data(), false, 0.0f);
    }
}

long map_totals(const Map& map, double* sums, double* sumsqs, float* mins, float* maxs) {
    for (int ch = 0; ch < map.c; ++ch) {
        sums[ch] = sumsqs[ch] = 0.0;
        mins[ch] = INFINITY;
        maxs[ch] = -INFINITY;
    }
    for (int r = 0; r < map.h; ++r) {  // row after row: the same additions for any band split
        const float *s = map.row_stats(map.sums, r), *q = map.row_stats(map.sumsqs, r);
        const float *lo = map.row_stats(map.mins, r), *hi = map.row_stats(map.maxs, r);
        for (int ch = 0; ch < map.c; ++ch) {
            sums[ch] += static_cast<double>(s[ch]);
            sumsqs[ch] += static_cast<double>(q[ch]);
            mins[ch] = std::min(mins[ch], lo[ch]);
            maxs[ch] = std::max(maxs[ch], hi[ch]);
        }
    }
    return static_cast<long>(map.h) * map.w;
}

}  // namespace animegan
