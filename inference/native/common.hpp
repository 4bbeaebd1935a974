// Shared pieces of the native engine: element types, bf16 conversions, argument errors, aligned
// buffers, the band buffer pool and a feature map stored as row bands.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace animegan {

// What a map stores, a convolution reads or writes. U8 maps hold a scale and an offset per row and
// channel (value = q * scale + offset); a U8 conv input holds one scale and zero point per map.
enum class Type : int { F32 = 0, BF16 = 1, U8 = 2, S32 = 3 };

inline size_t type_size(Type t) { return t == Type::BF16 ? 2 : t == Type::U8 ? 1 : 4; }
const char* type_name(Type t);

// A caller's mistake (a size, a type, an index): raised in Python as ValueError.
struct ArgError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

inline void require(bool ok, const std::string& what) {
    if (!ok) throw ArgError(what);
}

inline float from_bf16(uint16_t v) {
    uint32_t bits = static_cast<uint32_t>(v) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

inline uint16_t to_bf16(float f) {  // round to nearest even, as oneDNN converts
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    bits += 0x7FFFu + ((bits >> 16) & 1u);
    return static_cast<uint16_t>(bits >> 16);
}

inline int reflect(int i, int size) {  // torch's ReflectionPad2d, at most size - 1 outside
    i = i < 0 ? -i : i;
    return i >= size ? 2 * (size - 1) - i : i;
}

// A 64-byte aligned byte buffer that only grows (scratch that lives for a job).
class Aligned {
   public:
    Aligned() = default;
    Aligned(const Aligned&) = delete;
    Aligned& operator=(const Aligned&) = delete;
    ~Aligned() { std::free(data_); }
    uint8_t* get(size_t bytes) {
        if (bytes > size_) {
            std::free(data_);
            size_ = (bytes + 63) / 64 * 64;
            data_ = static_cast<uint8_t*>(std::aligned_alloc(64, size_));
            if (data_ == nullptr) {
                size_ = 0;
                throw std::bad_alloc();
            }
        }
        return data_;
    }
    template <typename T>
    T* as(size_t count) {
        return reinterpret_cast<T*>(get(count * sizeof(T)));
    }
    void clear() {
        std::free(data_);
        data_ = nullptr;
        size_ = 0;
    }

   private:
    uint8_t* data_ = nullptr;
    size_t size_ = 0;
};

struct Buffer {
    uint8_t* data = nullptr;
    size_t capacity = 0;
    size_t used = 0;  // bytes its current (or last) band may have written: resident at most these
};

// Band buffers of one capacity (`unit`, the largest band of the job), reused within a job and by
// the next one: a released input band's buffer takes the next output band, and fresh pages would
// fault on every band. A buffer holds only what its band needs resident: an untouched tail stays
// so, and a reused buffer's tail beyond its new band is handed back. Thread-safe.
class Pool {
   public:
    ~Pool() { clear(); }
    void set_unit(size_t bytes) {
        std::lock_guard<std::mutex> guard(lock_);
        unit_ = bytes;
    }
    Buffer take(size_t bytes);
    void give(Buffer buffer);
    void clear();

   private:
    std::mutex lock_;
    std::vector<Buffer> free_;
    size_t unit_ = 0;
};

// A feature map as row bands (rows x cols x C, channels-last), band k holding rows k*rows ..
// (k+1)*rows, and per row and channel: the sum, sum of squares, min and max of the values the
// conv produced (before storage rounding), which give exact whole-map statistics for any split.
struct Map {
    Type store = Type::F32;
    int c = 0, h = 0, w = 0, rows = 1;
    std::shared_ptr<Pool> pool;  // where bands return (the runner's)
    std::vector<Buffer> bands;
    std::vector<float> sums, sumsqs, mins, maxs;  // h x c
    std::vector<float> qscale, qoffset;           // h x c, U8 maps only
    bool busy = false;                            // a native call is using it (set under the GIL)

    Map(Type store_, int c_, int h_, int w_, int rows_, std::shared_ptr<Pool> pool_, bool with_bands);
    Map(const Map&) = delete;
    Map& operator=(const Map&) = delete;
    ~Map() { release_before(h + rows); }

    int nbands() const { return (h + rows - 1) / rows; }
    size_t row_bytes() const { return static_cast<size_t>(w) * c * type_size(store); }
    size_t band_bytes(int k) const { return static_cast<size_t>(std::min(rows, h - k * rows)) * row_bytes(); }
    uint8_t* row(int r) const;           // throws when the band holding it was released
    void ensure_band(int k);             // takes the band's buffer from the pool
    void release_before(int row);        // gives back every band that ends at or before `row`
    float* row_stats(std::vector<float>& v, int r) { return v.data() + static_cast<size_t>(r) * c; }
    const float* row_stats(const std::vector<float>& v, int r) const { return v.data() + static_cast<size_t>(r) * c; }
};

}  // namespace animegan
