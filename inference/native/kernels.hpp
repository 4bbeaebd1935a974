// The loops around the convolutions, over channels-last rows (pixels x C values).
//
// Every pass is one of two kernels: `transform` (load any type, a per-channel affine, optionally
// LeakyReLU, write any type: a norm applied while a band is assembled, a U8 map dequantized, an
// int8 conv's s32 output rescaled, a value quantized) and `stats` (per-channel sum, sum of
// squares, min and max of a row, pixels added in order, so a row's figures do not depend on the
// band it falls in). AVX-512 when the CPU has it and C is a multiple of 16, portable loops else.
#pragma once

#include "common.hpp"

namespace animegan {

constexpr float kSlope = 0.2f;  // LeakyReLU(0.2) of every ConvNormLReLU

// dst = emit(lrelu?(load(src) * a + b)) for `pixels` x `c` values; emit to U8 adds `zero`, rounds
// to nearest even and clamps to 0..255. src is F32, BF16, U8 or S32; dst F32, BF16 or U8.
void transform(Type src_t, const void* src, Type dst_t, void* dst, long pixels, long c, const float* a,
               const float* b, bool lrelu, float zero);

// Per-channel sum, sum of squares, min and max of load(src) * a + b over `pixels` (a, b may be
// null: the values as they are).
void stats(Type src_t, const void* src, long pixels, long c, const float* a, const float* b, float* sum,
           float* sumsq, float* mn, float* mx);

// Bilinear rows: dst = x + (y - x) * t over n floats.
void lerp(const float* x, const float* y, float t, float* dst, long n);

// One output row of a bilinear resize from a row of f32 pixels (cols x c), by column tables
// (first, second, weight of the second), emitted as dst_t (U8: v * inv + zero).
void resize_row(const float* line, const int32_t* c0, const int32_t* c1, const float* cw, long n_cols, long c,
                Type dst_t, void* dst, float inv, float zero);

// The generator's last step: clip(tanh(v), -1, 1) * 127.5 + 127.5, rounded half to even, as uint8.
void to_rgb(const float* src, uint8_t* dst, long n);

}  // namespace animegan
