// A small fork-join pool for the forward pass. Decode calls parallel_for a few hundred
// times per token, so dispatch must cost microseconds: workers spin briefly on an epoch
// counter before sleeping on a condition variable. The calling thread takes part as
// thread 0. One pool per engine instance; no global state.
//
// Waits spin with PAUSE and yield the CPU every few hundred iterations: on a machine with
// more runnable threads than cores, a pure spin burns whole scheduler slices waiting for a
// thread that is not running (decode fell from 64 to ~1 tok/s under a parallel build).
#pragma once

#include <algorithm>
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

  // Covers [0, n) with disjoint contiguous ranges, fn(begin, end, ith) on each, ith the index
  // of the thread that runs it. Ranges are claimed dynamically (about kChunksPerThread per
  // thread), so a thread may get several and a worker that is not scheduled gets none: the
  // caller never waits for a thread that has not started. Use run() when the split must
  // be one fixed range per thread.
  // The ranges depend on the number of threads and their assignment on timing, so results
  // must not depend on them (docs/kernels.md, "Determinism"): a range may write only
  // outputs of its own, or partial results that are combined exactly (max), or partial
  // sums over a partition fixed by the caller (never by the ranges or the thread index),
  // added in a fixed order.
  template <typename F>
  void parallel_for(int64_t n, F&& fn) {
    if (n_threads_ == 1 || n <= 1) {
      fn(int64_t{0}, n, 0);
      return;
    }
    const int64_t n_chunks = std::min<int64_t>(n, int64_t{n_threads_} * kChunksPerThread);
    auto body = [&](int64_t c, int ith) {
      // Chunk c covers [c * n / n_chunks, (c + 1) * n / n_chunks).
      fn(c * n / n_chunks, (c + 1) * n / n_chunks, ith);
    };
    run_chunks(n_chunks, ChunkFn{&body, [](void* f, int64_t c, int ith) { (*static_cast<decltype(body)*>(f))(c, ith); }});
  }

 private:
  static constexpr int64_t kChunksPerThread = 4;
  struct ChunkFn {
    void* obj;
    void (*call)(void* obj, int64_t chunk, int ith);
  };
  // state_ bits: [63:32] low 32 bits of the epoch, 31: closed, 30: chunked job, [29:0] the
  // number of workers inside a chunked job.
  static constexpr uint64_t kClosed = 1ull << 31, kChunked = 1ull << 30, kActiveMask = (1ull << 30) - 1;

  void run_chunks(int64_t n_chunks, ChunkFn fn);
  void publish(uint64_t kind);  // starts a new epoch of the given kind
  void claim_chunks(int ith);
  void worker(int ith);

  int n_threads_;
  std::vector<std::thread> threads_;
  const Task* task_ = nullptr;
  ChunkFn chunk_fn_{};
  int64_t n_chunks_ = 0;
  std::atomic<int64_t> next_chunk_{0};
  std::atomic<uint64_t> epoch_{0};
  std::atomic<uint64_t> state_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace kvz
