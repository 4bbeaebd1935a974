#include "conv.hpp"

#include <algorithm>
#include <cmath>

#include "layers.hpp"

namespace animegan {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

namespace {

dnnl::engine& cpu() {
    static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    return engine;
}

dt dnnl_type(Type t) {
    switch (t) {
        case Type::F32: return dt::f32;
        case Type::BF16: return dt::bf16;
        case Type::U8: return dt::u8;
        case Type::S32: return dt::s32;
    }
    return dt::f32;
}

// A layer keeps the primitives of its most recent band shapes (an image has two per layer: its
// full bands and the last one; images of one width share the first), so a worker or a CLI batch
// creates kernels once per shape, and images of many sizes do not pile up kernels.
constexpr size_t kCached = 8;

}  // namespace

struct Conv::Prim {
    int h, w;
    dnnl::convolution_forward prim;
    memory wei, bia;
    memory::desc src, dst, scratch;
};

Conv::Conv(Mode mode_, int ic_, int oc_, int k_, int stride_, int groups_, const float* weights, const float* bias,
           bool f32_out)
    : mode(mode_), ic(ic_), oc(oc_), k(k_), stride(stride_), groups(groups_) {
    require(ic > 0 && oc > 0 && k > 0 && stride > 0 && groups > 0, "conv sizes must be positive");
    require(ic % groups == 0 && oc % groups == 0, "channels must divide into the groups");
    in_type = mode == Mode::F32 ? Type::F32 : mode == Mode::BF16 ? Type::BF16 : Type::U8;
    out_type = mode == Mode::INT8 ? Type::S32 : (mode == Mode::F32 || f32_out) ? Type::F32 : Type::BF16;
    size_t per_out = static_cast<size_t>(ic / groups) * static_cast<size_t>(k * k);
    weights_.assign(weights, weights + per_out * static_cast<size_t>(oc));
    bias_.assign(static_cast<size_t>(oc), 0.0f);
    if (bias != nullptr) bias_.assign(bias, bias + oc);
    if (mode != Mode::INT8) return;
    wq_.resize(weights_.size());
    wscale_.assign(static_cast<size_t>(oc), 0.0f);
    wsum_.assign(static_cast<size_t>(oc), 0.0f);
    for (int o = 0; o < oc; ++o) {
        const float* w = weights_.data() + per_out * static_cast<size_t>(o);
        float top = 0.0f;
        for (size_t i = 0; i < per_out; ++i) top = std::max(top, std::fabs(w[i]));
        float scale = top > 0.0f ? top / 127.0f : 1.0f;
        long sum = 0;
        for (size_t i = 0; i < per_out; ++i) {
            auto q = static_cast<int8_t>(std::nearbyint(std::min(std::max(w[i] / scale, -127.0f), 127.0f)));
            wq_[per_out * static_cast<size_t>(o) + i] = q;
            sum += q;
        }
        wscale_[static_cast<size_t>(o)] = scale;
        wsum_[static_cast<size_t>(o)] = static_cast<float>(sum);
    }
}

void Conv::dequant(float qscale, float qzero, float* a, float* b) const {
    for (int o = 0; o < oc; ++o) {
        if (mode != Mode::INT8) {
            a[o] = 1.0f;
            b[o] = 0.0f;
            continue;
        }
        // sum_i w_i v_i = qscale * wscale * sum_i wq_i (q_i - qzero): the zero point's share is a
        // constant per output channel because the band is padded with real values.
        double scale = static_cast<double>(qscale) * wscale_[static_cast<size_t>(o)];
        a[o] = static_cast<float>(scale);
        b[o] = static_cast<float>(bias_[static_cast<size_t>(o)] - scale * qzero * wsum_[static_cast<size_t>(o)]);
    }
}

void Conv::trim() {
    std::lock_guard<std::mutex> guard(lock_);
    cache_.clear();
    layouts_.clear();
}

std::shared_ptr<Conv::Prim> Conv::get(int h, int w) {
    std::lock_guard<std::mutex> guard(lock_);
    for (size_t i = 0; i < cache_.size(); ++i) {
        if (cache_[i]->h == h && cache_[i]->w == w) {
            auto hit = cache_[i];
            cache_.erase(cache_.begin() + static_cast<long>(i));
            cache_.push_back(hit);
            return hit;
        }
    }
    auto made = make(h, w);
    if (cache_.size() >= kCached) cache_.erase(cache_.begin());
    cache_.push_back(made);
    // Layouts no cached primitive uses any more are dropped.
    layouts_.erase(std::remove_if(layouts_.begin(), layouts_.end(),
                                  [&](const auto& layout) {
                                      return std::none_of(cache_.begin(), cache_.end(), [&](const auto& prim) {
                                          return prim->wei.get_data_handle() == layout.second.get_data_handle();
                                      });
                                  }),
                   layouts_.end());
    return made;
}

std::shared_ptr<Conv::Prim> Conv::make(int h, int w) {
    auto& eng = cpu();
    memory::desc src({1, ic, h, w}, dnnl_type(in_type), tag::nhwc);
    memory::desc dst({1, oc, out_rows(h), out_cols(w)}, dnnl_type(out_type), tag::nhwc);
    memory::dims wdims = groups > 1 ? memory::dims{groups, oc / groups, ic / groups, k, k} : memory::dims{oc, ic, k, k};
    dt wtype = mode == Mode::INT8 ? dt::s8 : dnnl_type(in_type);
    memory::desc wany(wdims, wtype, tag::any);
    memory::desc bdesc({oc}, dt::f32, tag::a);
    memory::desc no_bias;
    const memory::desc& bias_desc = mode == Mode::INT8 ? no_bias : bdesc;  // int8: the bias is in `dequant`
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // per thread: concurrent bands share the primitive
#if DNNL_VERSION_MAJOR >= 3
    dnnl::convolution_forward::primitive_desc pd(eng, dnnl::prop_kind::forward_inference,
                                                 dnnl::algorithm::convolution_direct, src, wany, bias_desc, dst,
                                                 {stride, stride}, {0, 0}, {0, 0}, attr);
#else
    dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src,
                                         wany, bias_desc, dst, {stride, stride}, {0, 0}, {0, 0});
    dnnl::convolution_forward::primitive_desc pd(desc, attr, eng);
#endif
    auto p = std::make_shared<Prim>();
    p->h = h;
    p->w = w;
    p->prim = dnnl::convolution_forward(pd);
    p->src = src;
    p->dst = dst;
    p->scratch = pd.scratchpad_desc();
    if (mode != Mode::INT8) {
        p->bia = memory(bdesc, eng);
        std::memcpy(p->bia.get_data_handle(), bias_.data(), sizeof(float) * static_cast<size_t>(oc));
    }
    for (const auto& [desc, reordered] : layouts_) {
        if (desc == pd.weights_desc()) {
            p->wei = reordered;
            return p;
        }
    }
    auto plain_tag = groups > 1 ? tag::goihw : tag::oihw;
    p->wei = memory(pd.weights_desc(), eng);
    dnnl::stream s(eng);
    void* source = mode == Mode::INT8 ? static_cast<void*>(wq_.data()) : static_cast<void*>(weights_.data());
    memory plain(memory::desc(wdims, mode == Mode::INT8 ? dt::s8 : dt::f32, plain_tag), eng, source);
    dnnl::reorder(plain, p->wei).execute(s, plain, p->wei);
    s.wait();
    layouts_.emplace_back(pd.weights_desc(), p->wei);
    return p;
}

void Conv::run(const void* src, int h, int w, void* dst, Scratch& scratch) {
    require(h >= k && w >= k, "conv band smaller than its kernel");
    auto p = get(h, w);
    auto& eng = cpu();
    memory s(p->src, eng, const_cast<void*>(src));
    memory d(p->dst, eng, dst);
    memory pad(p->scratch, eng, scratch.pad.get(std::max<size_t>(p->scratch.get_size(), 64)));
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, s}, {DNNL_ARG_WEIGHTS, p->wei}, {DNNL_ARG_DST, d}, {DNNL_ARG_SCRATCHPAD, pad}};
    if (mode != Mode::INT8) args.insert({DNNL_ARG_BIAS, p->bia});
    p->prim.execute(scratch.stream(eng), args);
    scratch.stream(eng).wait();
}

}  // namespace animegan
