#include "core/thread_pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define KVZ_PAUSE() _mm_pause()
#else
#define KVZ_PAUSE() ((void)0)
#endif

namespace kvz {

namespace {
// Spin iterations before a worker sleeps. Between two matmuls of one decode step the gap
// is a few microseconds, well inside this budget; between tokens or requests it sleeps.
constexpr int kSpinIters = 1 << 16;
// Every kYieldEvery-th spin iteration yields instead: free when the core has nothing else
// to run, and it lets a descheduled peer run when the machine is oversubscribed.
constexpr int kYieldEvery = 256;

inline void spin_once(int i) {
  if (i % kYieldEvery == kYieldEvery - 1)
    std::this_thread::yield();
  else
    KVZ_PAUSE();
}
}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  n_threads_ = n_threads;
  for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true);
    epoch_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

// The state word is written before the epoch (both release), so a worker that acquires
// epoch e reads a state of epoch e or later.
void ThreadPool::publish(uint64_t kind) {
  const uint64_t e = epoch_.load(std::memory_order_relaxed) + 1;
  state_.store((e << 32) | kind, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lk(mu_);
    epoch_.store(e, std::memory_order_release);
  }
  cv_.notify_all();
}

void ThreadPool::run(const Task& fn) {
  if (n_threads_ == 1) {
    fn(0, 1);
    return;
  }
  task_ = &fn;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  publish(0);
  fn(0, n_threads_);
  for (int i = 0; pending_.load(std::memory_order_acquire) != 0; ++i) spin_once(i);
  task_ = nullptr;
}

void ThreadPool::claim_chunks(int ith) {
  for (;;) {
    const int64_t c = next_chunk_.fetch_add(1, std::memory_order_relaxed);
    if (c >= n_chunks_) return;
    chunk_fn_.call(chunk_fn_.obj, c, ith);
  }
}

// Workers join a chunked job by incrementing the active count in state_, only while the
// job is open; the caller closes it once all chunks are claimed and no worker is inside,
// after which the job (on the caller's stack) may die.
void ThreadPool::run_chunks(int64_t n_chunks, ChunkFn fn) {
  chunk_fn_ = fn;
  n_chunks_ = n_chunks;
  next_chunk_.store(0, std::memory_order_relaxed);
  publish(kChunked);
  claim_chunks(0);
  uint64_t s = state_.load(std::memory_order_acquire);
  for (int i = 0;; ++i) {
    if ((s & kActiveMask) == 0 && state_.compare_exchange_weak(s, s | kClosed, std::memory_order_acq_rel))
      break;
    spin_once(i);
    s = state_.load(std::memory_order_acquire);
  }
}

void ThreadPool::worker(int ith) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t e;
    for (int i = 0; (e = epoch_.load(std::memory_order_acquire)) == seen && i < kSpinIters; ++i) spin_once(i);
    if (e == seen) {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return epoch_.load(std::memory_order_acquire) != seen; });
      e = epoch_.load(std::memory_order_acquire);
    }
    seen = e;
    if (stop_.load()) return;
    uint64_t s = state_.load(std::memory_order_acquire);
    if ((s >> 32) != (e & 0xFFFFFFFFull)) continue;  // a chunked job already closed and replaced
    if (!(s & kChunked)) {
      (*task_)(ith, n_threads_);
      pending_.fetch_sub(1, std::memory_order_acq_rel);
      continue;
    }
    bool joined = false;
    while ((s >> 32) == (e & 0xFFFFFFFFull) && !(s & kClosed))
      if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) {
        joined = true;
        break;
      }
    if (!joined) continue;
    claim_chunks(ith);
    state_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace kvz
