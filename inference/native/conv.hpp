// One convolution layer on channels-last bands, as oneDNN primitives (one per band shape).
//
// Modes: F32 (f32 in, f32 out), BF16 (bf16 in, bf16 out, or f32 for the last layer) and INT8
// (u8 in, s8 weights quantized per output channel, s32 out). The caller pads the band itself
// (reflection), so every input of every output is a real value: an int8 input's zero point then
// folds exactly into a per-channel bias (`dequant`), and oneDNN runs plain u8 x s8 -> s32.
#pragma once

#include <dnnl.hpp>

#include <memory>

#include "common.hpp"

namespace animegan {

enum class Mode : int { F32 = 0, BF16 = 1, INT8 = 2 };

struct Scratch;  // a thread's working memory (layers.hpp)

class Conv {
   public:
    // weights: OIHW f32 (grouped: O x I/groups x K x K); bias: O values or null.
    Conv(Mode mode, int ic, int oc, int k, int stride, int groups, const float* weights, const float* bias,
         bool f32_out);

    Mode mode;
    int ic, oc, k, stride, groups;
    Type in_type, out_type;

    int out_rows(int h) const { return (h - k) / stride + 1; }
    int out_cols(int w) const { return (w - k) / stride + 1; }
    // src: h x w x ic (in_type), dst: out_rows(h) x out_cols(w) x oc (out_type).
    void run(const void* src, int h, int w, void* dst, Scratch& scratch);
    // INT8: the per-channel a, b with value = s32 * a + b for an input quantized as
    // q = v / qscale + qzero; F32 and BF16 convs have their bias already: a = 1, b = 0.
    void dequant(float qscale, float qzero, float* a, float* b) const;
    const std::vector<float>& weight_scales() const { return wscale_; }
    void trim();  // drops the cached primitives until the next run

   private:
    struct Prim;
    std::shared_ptr<Prim> get(int h, int w);
    std::shared_ptr<Prim> make(int h, int w);

    std::vector<float> weights_, bias_;
    std::vector<int8_t> wq_;               // INT8: round(w / scale), per output channel
    std::vector<float> wscale_, wsum_;     // INT8: max |w| / 127 and the sum of the quantized weights
    std::vector<std::shared_ptr<Prim>> cache_;
    // The weights reordered into each layout the primitives asked for: band shapes of one layer
    // nearly always share one, so a new shape costs its kernel, not another copy of the weights.
    std::vector<std::pair<dnnl::memory::desc, dnnl::memory>> layouts_;
    std::mutex lock_;
};

}  // namespace animegan
