#include "layers.hpp"

#include <cmath>

#include "kernels.hpp"
#include "passes.hpp"

namespace animegan {

// ---- layers ----------------------------------------------------------------------------------------

std::unique_ptr<Map> head_stats(Runner& run, const uint8_t* image, int h, int w, Conv& first, int rows) {
    require(first.ic == 3 && first.stride == 1 && first.k % 2 == 1, "the head's first conv is a stride-1 RGB conv");
    auto out = std::make_unique<Map>(Type::F32, first.oc, h, w, rows, run.pool, false);
    Map& map = *out;
    int pad = first.k / 2;
    Dequant dq(first, kImageScale, kImageZero);
    run.bands(
        map.nbands(),
        [&](int k, Scratch& s) {
            int r0 = k * rows, r1 = std::min(r0 + rows, h);
            uint8_t* in = s.in.get(bytes_of(r1 - r0 + 2 * pad, w + 2 * pad, 3, first.in_type));
            image_band(image, h, w, r0 - pad, r1 + pad, pad, first.in_type, in);
            uint8_t* raw = s.raw.get(bytes_of(r1 - r0, w, first.oc, first.out_type));
            first.run(in, r1 - r0 + 2 * pad, w + 2 * pad, raw, s);
            finish(map, r0, r1, raw, first.out_type, dq.pa(), dq.pb(), false, s);
        },
        [](int) {});
    return out;
}

std::unique_ptr<Map> head(Runner& run, const uint8_t* image, int h, int w, Conv& first, Conv& second,
                          const Act& act, int rows, Type store) {
    require(second.ic == first.oc && second.stride == 2 && second.k == 3, "the head's second conv is 3x3, stride 2");
    require(h >= 4 && w >= 4, "the head needs at least 4 rows and columns");
    int out_h = h / 2, out_w = w / 2, pad = first.k / 2;
    auto out = std::make_unique<Map>(store, second.oc, out_h, out_w, rows, run.pool, true);
    Map& map = *out;
    Dequant dq_first(first, kImageScale, kImageZero), dq_second(second, act.qscale, act.qzero);
    // The first conv's output value (its dequantization) through act: one affine per channel.
    std::vector<float> a(static_cast<size_t>(first.oc)), b(static_cast<size_t>(first.oc));
    float inv = second.in_type == Type::U8 ? 1.0f / act.qscale : 1.0f;
    for (int ch = 0; ch < first.oc; ++ch) {
        float da = dq_first.a.empty() ? 1.0f : dq_first.a[static_cast<size_t>(ch)];
        float db = dq_first.b.empty() ? 0.0f : dq_first.b[static_cast<size_t>(ch)];
        float na = act.scale ? act.scale[ch] : 1.0f, nb = act.shift ? act.shift[ch] : 0.0f;
        a[static_cast<size_t>(ch)] = da * na * inv;
        b[static_cast<size_t>(ch)] = (db * na + nb) * inv;
    }
    float zero = second.in_type == Type::U8 ? act.qzero : 0.0f;
    run.bands(
        map.nbands(),
        [&](int k, Scratch& s) {
            // Output rows i0..i1 read first-conv rows 2*i0 .. 2*i1 + 1; row h (reached when h is
            // even) and column w are the second conv's bottom and right reflection pads.
            int i0 = k * rows, i1 = std::min(i0 + rows, out_h);
            int f0 = 2 * i0, f1 = std::min(2 * i1 + 1, h), n = 2 * (i1 - i0) + 1;
            uint8_t* in = s.in.get(bytes_of(f1 - f0 + 2 * pad, w + 2 * pad, 3, first.in_type));
            image_band(image, h, w, f0 - pad, f1 + pad, pad, first.in_type, in);
            uint8_t* raw = s.aux.get(bytes_of(f1 - f0, w, first.oc, first.out_type));
            first.run(in, f1 - f0 + 2 * pad, w + 2 * pad, raw, s);
            size_t pixel = static_cast<size_t>(first.oc) * type_size(second.in_type);
            size_t line = pixel * static_cast<size_t>(w + 1);
            uint8_t* band = s.line.get(line * static_cast<size_t>(n));
            size_t raw_row = bytes_of(1, w, first.oc, first.out_type);
            for (int t = 0; t < f1 - f0; ++t) {
                uint8_t* dst = band + line * static_cast<size_t>(t);
                transform(first.out_type, raw + raw_row * static_cast<size_t>(t), second.in_type, dst, w, first.oc,
                          a.data(), b.data(), act.lrelu, zero);
                std::memcpy(dst + pixel * static_cast<size_t>(w), dst + pixel * static_cast<size_t>(w - 2), pixel);
            }
            if (f1 - f0 < n) {
                std::memcpy(band + line * static_cast<size_t>(f1 - f0), band + line * static_cast<size_t>(f1 - f0 - 2), line);
            }
            map.ensure_band(k);
            bool direct = writes_directly(second, map);
            uint8_t* y = direct ? map.row(i0) : s.raw.get(bytes_of(i1 - i0, out_w, second.oc, second.out_type));
            second.run(band, n, w + 1, y, s);
            finish(map, i0, i1, y, second.out_type, dq_second.pa(), dq_second.pb(), direct, s);
        },
        [](int) {});
    return out;
}

std::unique_ptr<Map> conv_layer(Runner& run, Map& src, Conv& conv, const Act& act, const Pads& pads, int rows,
                                Type store, bool keep_source) {
    require(src.c == conv.ic, "the conv's input channels differ from the map's");
    require(!src.bands.empty(), "the input map has no bands");
    int in_h = src.h + pads.top + pads.bottom, in_w = src.w + pads.left + pads.right;
    require(in_h >= conv.k && in_w >= conv.k, "the map is smaller than the conv's kernel");
    require(pads.left < src.w && pads.right < src.w && pads.top < src.h && pads.bottom < src.h,
            "reflection pads must be smaller than the map");
    int out_h = conv.out_rows(in_h), out_w = conv.out_cols(in_w);
    auto out = std::make_unique<Map>(store, conv.oc, out_h, out_w, rows, run.pool, true);
    Map& map = *out;
    Dequant dq(conv, act.qscale, act.qzero);
    bool identity = act.scale == nullptr && act.shift == nullptr && !act.lrelu;
    bool pointwise = conv.k == 1 && conv.stride == 1 && pads.left + pads.right + pads.top + pads.bottom == 0;
    bool in_place = pointwise && identity && src.store == conv.in_type && src.store != Type::U8 && rows == src.rows;
    std::vector<int> next_rows(static_cast<size_t>(map.nbands()), 0);
    run.bands(
        map.nbands(),
        [&](int k, Scratch& s) {
            int r0 = k * rows, r1 = std::min(r0 + rows, out_h);
            int lo = conv.stride * r0 - pads.top, hi = conv.stride * (r1 - 1) + conv.k - pads.top;
            const uint8_t* x;
            if (in_place) {
                x = src.row(lo);  // a 1x1 conv reads its input band where it lies
            } else {
                uint8_t* in = s.in.get(bytes_of(hi - lo, in_w, conv.ic, conv.in_type));
                assemble(src, lo, hi, pads.left, pads.right, act, conv.in_type, in, s);
                x = in;
            }
            map.ensure_band(k);
            bool direct = writes_directly(conv, map);
            uint8_t* y = direct ? map.row(r0) : s.raw.get(bytes_of(r1 - r0, out_w, conv.oc, conv.out_type));
            conv.run(x, hi - lo, in_w, y, s);
            finish(map, r0, r1, y, conv.out_type, dq.pa(), dq.pb(), direct, s);
            next_rows[static_cast<size_t>(k)] = conv.stride * r1 - pads.top;
        },
        [&](int k) {
            if (!keep_source) src.release_before(next_rows[static_cast<size_t>(k)]);
        });
    if (!keep_source) src.release_before(src.h + src.rows);
    return out;
}

std::unique_ptr<Map> upsample_conv(Runner& run, Map& src, Conv& conv, const Act& act, const Table& rows_table,
                                   const Table& cols_table, int rows, Type store) {
    require(src.c == conv.ic && conv.stride == 1, "the upsampled conv reads the map's channels, stride 1");
    require(!src.bands.empty(), "the input map has no bands");
    int reach = conv.k - 1;  // rows and columns the conv reads beyond its output (both sides)
    int out_h = rows_table.n - reach, out_w = cols_table.n - reach;
    require(out_h >= 1 && out_w >= 1, "the tables are shorter than the kernel");
    for (const Table* t : {&rows_table, &cols_table}) {
        int limit = t == &rows_table ? src.h : src.w;
        for (int i = 0; i < t->n; ++i) {
            require(t->first[i] >= 0 && t->first[i] < limit && t->second[i] >= 0 && t->second[i] < limit,
                    "a bilinear table points outside the map");
        }
    }
    auto out = std::make_unique<Map>(store, conv.oc, out_h, out_w, rows, run.pool, true);
    Map& map = *out;
    Dequant dq(conv, act.qscale, act.qzero);
    Act plain = act;  // the activation in f32; the conv input's quantization is applied after resizing
    float inv = conv.in_type == Type::U8 ? 1.0f / act.qscale : 1.0f;
    std::vector<int> next_rows(static_cast<size_t>(map.nbands()), 0);
    run.bands(
        map.nbands(),
        [&](int k, Scratch& s) {
            int j0 = k * rows, j1 = std::min(j0 + rows, out_h), n = j1 - j0 + reach;
            int top = src.h, end = 0;
            for (int t = j0; t < j0 + n; ++t) {
                top = std::min(top, std::min(rows_table.first[t], rows_table.second[t]));
                end = std::max(end, std::max(rows_table.first[t], rows_table.second[t]) + 1);
            }
            size_t src_line = static_cast<size_t>(src.w) * src.c;
            float* activated = s.rows.as<float>(src_line * static_cast<size_t>(end - top));
            assemble(src, top, end, 0, 0, plain, Type::F32, reinterpret_cast<uint8_t*>(activated), s);
            float* line = s.aux.as<float>(src_line);
            size_t in_line = bytes_of(1, cols_table.n, conv.ic, conv.in_type);
            uint8_t* in = s.in.get(in_line * static_cast<size_t>(n));
            for (int t = 0; t < n; ++t) {
                int i = j0 + t;
                lerp(activated + src_line * static_cast<size_t>(rows_table.first[i] - top),
                     activated + src_line * static_cast<size_t>(rows_table.second[i] - top), rows_table.weight[i],
                     line, static_cast<long>(src_line));
                resize_row(line, cols_table.first, cols_table.second, cols_table.weight, cols_table.n, conv.ic,
                           conv.in_type, in + in_line * static_cast<size_t>(t), inv, act.qzero);
            }
            map.ensure_band(k);
            bool direct = writes_directly(conv, map);
            uint8_t* y = direct ? map.row(j0) : s.raw.get(bytes_of(j1 - j0, out_w, conv.oc, conv.out_type));
            conv.run(in, n, cols_table.n, y, s);
            finish(map, j0, j1, y, conv.out_type, dq.pa(), dq.pb(), direct, s);
            // The next band's first resized row is j1 (table index): rows above its pair are done.
            next_rows[static_cast<size_t>(k)] = j1 < out_h ? rows_table.first[j1] : src.h;
        },
        [&](int k) { src.release_before(next_rows[static_cast<size_t>(k)]); });
    src.release_before(src.h + src.rows);
    return out;
}

void residual(Runner& run, Map& project, Map* block_input, const float* scale, const float* shift) {
    require(!project.bands.empty(), "the block's map has no bands");
    if (block_input != nullptr) {
        require(block_input->c == project.c && block_input->h == project.h && block_input->w == project.w &&
                    block_input->rows == project.rows && !block_input->bands.empty(),
                "the residual's maps differ in shape");
    }
    size_t line = static_cast<size_t>(project.w) * project.c;
    Act norm;
    norm.scale = scale;
    norm.shift = shift;
    Act none;
    run.bands(
        project.nbands(),
        [&](int k, Scratch& s) {
            int r0 = k * project.rows, r1 = std::min(r0 + project.rows, project.h);
            float* v = s.rows.as<float>(2 * line);
            float* r = v + line;
            for (int row = r0; row < r1; ++row) {
                assemble(project, row, row + 1, 0, 0, norm, Type::F32, reinterpret_cast<uint8_t*>(v), s);
                if (block_input != nullptr) {
                    assemble(*block_input, row, row + 1, 0, 0, none, Type::F32, reinterpret_cast<uint8_t*>(r), s);
                    for (size_t i = 0; i < line; ++i) v[i] += r[i];
                }
                finish(project, row, row + 1, reinterpret_cast<uint8_t*>(v), Type::F32, nullptr, nullptr, false, s);
            }
        },
        [](int) {});
    if (block_input != nullptr) block_input->release_before(block_input->h + block_input->rows);
}

void output(Runner& run, Map& src, Conv& conv, const Act& act, uint8_t* rgb) {
    require(src.c == conv.ic && conv.k == 1 && conv.stride == 1 && conv.oc == 3, "the output conv is 1x1 to RGB");
    require(!src.bands.empty(), "the input map has no bands");
    Dequant dq(conv, act.qscale, act.qzero);
    run.bands(
        src.nbands(),
        [&](int k, Scratch& s) {
            int r0 = k * src.rows, r1 = std::min(r0 + src.rows, src.h);
            uint8_t* in = s.in.get(bytes_of(r1 - r0, src.w, conv.ic, conv.in_type));
            assemble(src, r0, r1, 0, 0, act, conv.in_type, in, s);
            size_t n = static_cast<size_t>(r1 - r0) * src.w * 3;
            auto* y = s.raw.as<float>(n);
            conv.run(in, r1 - r0, src.w, y, s);
            if (conv.out_type == Type::S32) {
                transform(Type::S32, y, Type::F32, y, static_cast<long>(n / 3), 3, dq.pa(), dq.pb(), false, 0.0f);
            } else if (conv.out_type == Type::BF16) {
                throw ArgError("the output conv must produce f32 or s32");
            }
            to_rgb(y, rgb + static_cast<size_t>(r0) * src.w * 3, static_cast<long>(n));
        },
        [&](int k) { src.release_before(std::min((k + 1) * src.rows, src.h)); });
    src.release_before(src.h + src.rows);
}

}  // namespace animegan
