// Counters for GET /metrics (Prometheus text format), updated by the HTTP side and the
// engine. Atomics only: no lock on the request path.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace kvz::server {

struct Metrics {
  std::atomic<int64_t> prompt_tokens{0}, generated_tokens{0};
  std::atomic<int64_t> prefill_us{0}, decode_us{0};           // engine time spent on them
  std::atomic<int64_t> decode_steps{0}, decode_rows{0};       // rows: slots summed over steps
  std::atomic<int64_t> context_tokens{0}, contexts_compressed{0};

  void count_request(const std::string& endpoint, int status) {
    std::lock_guard lk(mu);
    ++requests[{endpoint, status}];
  }
  std::map<std::pair<std::string, int>, int64_t> requests_snapshot() const {
    std::lock_guard lk(mu);
    return requests;
  }

 private:
  mutable std::mutex mu;
  std::map<std::pair<std::string, int>, int64_t> requests;
};

}  // namespace kvz::server
