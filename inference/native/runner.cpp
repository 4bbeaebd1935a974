// The runner's threads: every band of a layer on them, merged in band order.
#include <omp.h>
#include <pthread.h>

#include <atomic>
#include <exception>

#include "layers.hpp"

namespace animegan {

// ---- threads ---------------------------------------------------------------------------------------

Runner::Runner(int threads) : scratch_(static_cast<size_t>(std::max(threads, 1))) {
    require(threads >= 1, "threads must be at least 1");
    for (int tid = 1; tid < threads; ++tid) workers_.emplace_back([this, tid] { worker(tid); });
}

Runner::~Runner() {
    {
        std::lock_guard<std::mutex> guard(lock_);
        stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
}

void Runner::worker(int tid) {
    // Named, so an operator (top -H) and the tests can tell the engine's threads from the others.
    pthread_setname_np(pthread_self(), "animegan-band");
    omp_set_num_threads(1);  // one band per thread: oneDNN runs each call single-threaded
    uint64_t seen = 0;
    for (;;) {
        const std::function<void(int)>* task;
        {
            std::unique_lock<std::mutex> guard(lock_);
            wake_.wait(guard, [&] { return stop_ || generation_ != seen; });
            if (stop_) return;
            seen = generation_;
            task = task_;
        }
        (*task)(tid);
        {
            std::lock_guard<std::mutex> guard(lock_);
            --running_;
        }
        idle_.notify_all();
    }
}

void Runner::run_all(const std::function<void(int)>& fn) {
    {
        std::lock_guard<std::mutex> guard(lock_);
        task_ = &fn;
        running_ = static_cast<int>(workers_.size());
        ++generation_;
    }
    wake_.notify_all();
    omp_set_num_threads(1);
    fn(0);
    std::unique_lock<std::mutex> guard(lock_);
    idle_.wait(guard, [&] { return running_ == 0; });
}

void Runner::bands(int n, const std::function<void(int, Scratch&)>& work, const std::function<void(int)>& in_order) {
    std::atomic<int> next{0};
    std::atomic<bool> failed{false};
    std::mutex done_lock;
    std::vector<char> done(static_cast<size_t>(n), 0);
    int prefix = 0;
    std::exception_ptr error;
    std::function<void(int)> each = [&](int tid) {
        while (!failed.load()) {
            int k = next.fetch_add(1);
            if (k >= n) return;
            try {
                work(k, scratch_[static_cast<size_t>(tid)]);
                std::lock_guard<std::mutex> guard(done_lock);
                done[static_cast<size_t>(k)] = 1;
                while (prefix < n && done[static_cast<size_t>(prefix)]) in_order(prefix++);
            } catch (...) {
                std::lock_guard<std::mutex> guard(done_lock);
                if (!error) error = std::current_exception();
                failed = true;
            }
        }
    };
    run_all(each);
    if (error) std::rethrow_exception(error);
}

void Runner::clear() {
    for (auto& s : scratch_) s.clear();
    pool->clear();
}

}  // namespace animegan
