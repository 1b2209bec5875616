// A small fork-join pool for the forward pass. Decode calls parallel_for a few hundred
// times per token, so dispatch must cost microseconds: workers spin briefly on an epoch
// counter before sleeping on a condition variable. The calling thread takes part as
// thread 0. One pool per engine instance; no global state.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kvz {

class ThreadPool {
 public:
  // fn(ith, nth): called once on every thread, ith in [0, nth).
  using Task = std::function<void(int ith, int nth)>;

  explicit ThreadPool(int n_threads);  // n_threads <= 0: hardware concurrency
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn on all threads and returns when every call has returned.
  void run(const Task& fn);

  // Splits [0, n) into contiguous ranges, one per thread: fn(begin, end, ith).
  template <typename F>
  void parallel_for(int64_t n, F&& fn) {
    if (n_threads_ == 1 || n <= 1) {
      fn(int64_t{0}, n, 0);
      return;
    }
    run([&](int ith, int nth) {
      const int64_t chunk = (n + nth - 1) / nth;
      const int64_t b = std::min<int64_t>(n, chunk * ith);
      const int64_t e = std::min<int64_t>(n, b + chunk);
      if (b < e) fn(b, e, ith);
    });
  }

 private:
  void worker(int ith);

  int n_threads_;
  std::vector<std::thread> threads_;
  const Task* task_ = nullptr;
  std::atomic<uint64_t> epoch_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace kvz
