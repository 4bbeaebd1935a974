// The band buffer pool and a map's bands (common.hpp).
#include <sys/mman.h>

#include <cstdlib>

#include "common.hpp"

namespace animegan {

namespace {

constexpr size_t kPage = 4096;

size_t pages(size_t bytes) { return (bytes + kPage - 1) / kPage * kPage; }

}  // namespace

Buffer Pool::take(size_t bytes) {
    size_t need = pages(bytes);
    size_t unit;
    {
        std::lock_guard<std::mutex> guard(lock_);
        unit = unit_;
        for (size_t i = 0; i < free_.size(); ++i) {
            if (free_[i].capacity >= bytes) {
                Buffer found = free_[i];
                free_.erase(free_.begin() + static_cast<long>(i));
                // A narrower band than the buffer's last one: its tail goes back to the system
                // (as if never touched), so a kept pool is no more resident than a fresh one.
                if (found.used > need) madvise(found.data + need, found.used - need, MADV_DONTNEED);
                found.used = need;
                return found;
            }
        }
    }
    // Pages of their own (not the heap): untouched ones are never resident, and a freed buffer
    // goes back to the system at once instead of fragmenting the heap.
    size_t capacity = pages(std::max(bytes, unit));
    void* data = mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (data == MAP_FAILED) throw std::bad_alloc();
    return {static_cast<uint8_t*>(data), capacity, need};
}

void Pool::give(Buffer buffer) {
    if (buffer.data == nullptr) return;
    std::lock_guard<std::mutex> guard(lock_);
    free_.push_back(buffer);
}

void Pool::clear() {
    std::lock_guard<std::mutex> guard(lock_);
    for (auto& buffer : free_) munmap(buffer.data, buffer.capacity);
    free_.clear();
}

Map::Map(Type store_, int c_, int h_, int w_, int rows_, std::shared_ptr<Pool> pool_, bool with_bands)
    : store(store_), c(c_), h(h_), w(w_), rows(rows_), pool(std::move(pool_)) {
    require(c > 0 && h > 0 && w > 0 && rows > 0, "a map needs positive channels, height, width and rows");
    if (with_bands) bands.resize(static_cast<size_t>(nbands()));
    size_t n = static_cast<size_t>(h) * c;
    sums.assign(n, 0.0f);
    sumsqs.assign(n, 0.0f);
    mins.assign(n, 0.0f);
    maxs.assign(n, 0.0f);
    if (store == Type::U8) {
        qscale.assign(n, 0.0f);
        qoffset.assign(n, 0.0f);
    }
}

uint8_t* Map::row(int r) const {
    require(r >= 0 && r < h, "row outside the map");
    const Buffer& band = bands.at(static_cast<size_t>(r / rows));
    if (band.data == nullptr) throw std::logic_error("band released too early");
    return band.data + static_cast<size_t>(r % rows) * row_bytes();
}

void Map::ensure_band(int k) {
    Buffer& band = bands.at(static_cast<size_t>(k));
    if (band.data == nullptr) band = pool->take(band_bytes(k));
}

void Map::release_before(int row) {
    int end = std::min(row / rows, static_cast<int>(bands.size()));
    for (int k = 0; k < end; ++k) {
        if (bands[static_cast<size_t>(k)].data != nullptr) {
            pool->give(bands[static_cast<size_t>(k)]);
            bands[static_cast<size_t>(k)] = Buffer{};
        }
    }
}

}  // namespace animegan
