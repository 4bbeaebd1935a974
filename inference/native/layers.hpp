// The engine's layers, a whole layer per call: every band of it (halo assembly with reflection,
// the pending norm and LeakyReLU, the conv, the per-row statistics, storage) on the runner's
// threads, merged in band order; input bands are given back as soon as no later band needs them.
// Results do not depend on the thread count or the band split: every figure is per row.
#pragma once

#include <dnnl.hpp>

#include <condition_variable>
#include <functional>
#include <memory>
#include <thread>

#include "common.hpp"
#include "conv.hpp"

namespace animegan {

// A thread's working memory, kept for a job: assembled input bands, conv outputs, oneDNN's
// scratchpad, rows of floats, per-channel coefficients; and its oneDNN stream.
struct Scratch {
    Aligned in, raw, aux, pad, rows, line, coef;
    dnnl::stream& stream(dnnl::engine& engine) {
        if (!stream_) stream_ = std::make_unique<dnnl::stream>(engine);
        return *stream_;
    }
    void clear() {
        for (Aligned* a : {&in, &raw, &aux, &pad, &rows, &line, &coef}) a->clear();
    }

   private:
    std::unique_ptr<dnnl::stream> stream_;
};

// What a layer applies to its input values before its conv: a per-channel affine (a GroupNorm's
// scale and shift; null: none), LeakyReLU, and for a U8 conv input the map's quantization
// (q = v / qscale + qzero).
struct Act {
    const float* scale = nullptr;
    const float* shift = nullptr;
    bool lrelu = false;
    float qscale = 1.0f, qzero = 0.0f;
};

// Conv pads (left, right, top, bottom): reflection, done while a band is assembled.
struct Pads {
    int left = 0, right = 0, top = 0, bottom = 0;
};

// The image as the first conv reads it: u8 pixels p stand for p * 2 / 255 - 1 (exact in U8:
// scale 2/255, zero point 127.5).
constexpr float kImageScale = 2.0f / 255.0f;
constexpr float kImageZero = 127.5f;

class Runner {
   public:
    explicit Runner(int threads);
    ~Runner();
    Runner(const Runner&) = delete;
    Runner& operator=(const Runner&) = delete;

    int threads() const { return static_cast<int>(scratch_.size()); }
    std::shared_ptr<Pool> pool = std::make_shared<Pool>();

    // work(k, scratch) for k in 0..n-1 on all threads; in_order(k) for each k in order of k, once
    // every band before it is done (where input bands are released).
    void bands(int n, const std::function<void(int, Scratch&)>& work, const std::function<void(int)>& in_order);
    void clear();  // frees every thread's scratch and the pool's free buffers

   private:
    void run_all(const std::function<void(int)>& fn);
    void worker(int tid);

    std::vector<Scratch> scratch_;
    std::vector<std::thread> workers_;
    std::mutex lock_;
    std::condition_variable wake_, idle_;
    const std::function<void(int)>* task_ = nullptr;
    uint64_t generation_ = 0;
    int running_ = 0;
    bool stop_ = false;
};

// A map from a (h, w, c) f32 array (tests and tools), stored as `store`.
std::unique_ptr<Map> load_map(Runner& run, const float* values, int h, int w, int c, int rows, Type store);
// The map's values as f32 (h, w, c).
void read_map(const Map& map, float* out);
// Whole-map totals per channel: sums and sums of squares added row by row in map order (float64),
// min and max; returns the values per channel.
long map_totals(const Map& map, double* sums, double* sumsqs, float* mins, float* maxs);

// The first conv's statistics over the (h, w, 3) u8 image (a map without bands).
std::unique_ptr<Map> head_stats(Runner& run, const uint8_t* image, int h, int w, Conv& first, int rows);
// The first conv again, normalised by `act` and straight into the stride-2 second conv.
std::unique_ptr<Map> head(Runner& run, const uint8_t* image, int h, int w, Conv& first, Conv& second,
                          const Act& act, int rows, Type store);
std::unique_ptr<Map> conv_layer(Runner& run, Map& src, Conv& conv, const Act& act, const Pads& pads, int rows,
                                Type store, bool keep_source);

// Bilinear tables: (first, second, weight of the second) per output row or column, the conv's
// reflection padding included (n = out size + kernel - 1).
struct Table {
    const int32_t* first;
    const int32_t* second;
    const float* weight;
    int n;
};
std::unique_ptr<Map> upsample_conv(Runner& run, Map& src, Conv& conv, const Act& act, const Table& rows_table,
                                   const Table& cols_table, int rows, Type store);
// project = project * scale + shift (+ block_input), in place: a block's last norm and residual.
void residual(Runner& run, Map& project, Map* block_input, const float* scale, const float* shift);
// The last conv (1x1) on the activated map, tanh, to 8 bits into rgb (h x w x 3).
void output(Runner& run, Map& src, Conv& conv, const Act& act, uint8_t* rgb);

}  // namespace animegan
