// A one-line terminal progress bar on stderr with rate and ETA. Silent when stderr is
// not a terminal (logs and CI stay clean) unless forced.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace kvz {

class ProgressBar {
 public:
  ProgressBar(std::string label, std::string unit, bool enabled);
  ~ProgressBar();
  void update(double done, double total);
  // update() as the (done, total) callback that prefill, scoring and forward take.
  std::function<void(int64_t, int64_t)> callback() {
    return [this](int64_t done, int64_t total) { update(static_cast<double>(done), static_cast<double>(total)); };
  }
  void finish();
  // Erases the bar so a log line can be printed; the next update() draws it again.
  void clear();

 private:
  std::string label_, unit_;
  bool enabled_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

bool stderr_is_tty();

}  // namespace kvz
