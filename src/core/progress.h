// A one-line terminal progress bar on stderr with rate and ETA. Silent when stderr is
// not a terminal (logs and CI stay clean) unless forced.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace kvz {

class ProgressBar {
 public:
  ProgressBar(std::string label, std::string unit, bool enabled);
  ~ProgressBar();
  void update(double done, double total);
  void finish();

 private:
  std::string label_, unit_;
  bool enabled_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

bool stderr_is_tty();

}  // namespace kvz
