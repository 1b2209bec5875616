// A one-line terminal progress bar on stderr with rate and ETA. Off when stderr is not a
// terminal (logs and CI stay clean), except for long work, which in a log prints a plain
// progress line instead (ProgressMode::Lines): one each time another 10% is done, and at
// least one every 10 seconds.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace kvz {

enum class ProgressMode {
  Off,
  Bar,    // redrawn in place (a terminal)
  Lines,  // a full line per `line_step` of the work or `line_interval` (a log file)
};

class ProgressBar {
 public:
  ProgressBar(std::string label, std::string unit, bool enabled);  // Bar or Off
  ProgressBar(std::string label, std::string unit, ProgressMode mode);
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
  static constexpr std::chrono::seconds line_interval{10};
  static constexpr double line_step = 0.1;
  std::string label_, unit_;
  ProgressMode mode_;
  bool finished_ = false;
  double last_frac_ = 0.0;  // Lines: the fraction done at the last line
  std::chrono::steady_clock::time_point start_, last_;
};

bool stderr_is_tty();
// For work of minutes to hours: a bar on a terminal, progress lines in a log; Off if !want.
ProgressMode long_work_progress(bool want = true);

}  // namespace kvz
