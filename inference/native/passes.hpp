// The passes around a conv that every layer shares (passes.cpp): band assembly with reflection
// and the pending norm, statistics and storage of a conv's output, the image as the first conv
// reads it, a conv's dequantization.
#pragma once

#include <vector>

#include "common.hpp"
#include "conv.hpp"
#include "layers.hpp"

namespace animegan {

// Rows lo..hi of `src` (reflected past its edges) with `act` applied, as `dst` values, into `out`
// (hi - lo rows of w + left + right pixels), columns reflected left and right.
void assemble(const Map& src, int lo, int hi, int left, int right, const Act& act, Type dst, uint8_t* out,
              Scratch& s);
// Rows r0..r1 of `out` from a conv's output `raw` (value = raw * a + b per channel; a, b null:
// as they are): per-row statistics, then the values stored in the map's type (skipped when the
// conv wrote into the map's band itself: `direct`).
void finish(Map& out, int r0, int r1, const uint8_t* raw, Type raw_t, const float* a, const float* b, bool direct,
            Scratch& s);
// The (h, w, 3) u8 image's rows lo..hi and columns -pad..w+pad (reflected) as the first conv's input.
void image_band(const uint8_t* image, int h, int w, int lo, int hi, int pad, Type dst, uint8_t* out);

// The dequantization of a conv's output for an input quantized as (qscale, qzero): per-channel
// a, b (empty: the conv's output is its value, as for F32 and BF16 convs).
struct Dequant {
    std::vector<float> a, b;
    Dequant(const Conv& conv, float qscale, float qzero) {
        if (conv.mode != Mode::INT8) return;
        a.resize(static_cast<size_t>(conv.oc));
        b.resize(static_cast<size_t>(conv.oc));
        conv.dequant(qscale, qzero, a.data(), b.data());
    }
    const float* pa() const { return a.empty() ? nullptr : a.data(); }
    const float* pb() const { return b.empty() ? nullptr : b.data(); }
};

// The conv writes straight into the map's band when it produces the map's own type.
inline bool writes_directly(const Conv& conv, const Map& out) { return conv.out_type == out.store; }

inline size_t bytes_of(int rows, int cols, int c, Type t) {
    return static_cast<size_t>(rows) * static_cast<size_t>(cols) * static_cast<size_t>(c) * type_size(t);
}

}  // namespace animegan
