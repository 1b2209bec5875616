#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace kvz {

bool stderr_is_tty() { return ::isatty(2) != 0; }

ProgressMode long_work_progress(bool want) {
  if (!want) return ProgressMode::Off;
  return stderr_is_tty() ? ProgressMode::Bar : ProgressMode::Lines;
}

ProgressBar::ProgressBar(std::string label, std::string unit, bool enabled)
    : ProgressBar(std::move(label), std::move(unit), enabled ? ProgressMode::Bar : ProgressMode::Off) {}

ProgressBar::ProgressBar(std::string label, std::string unit, ProgressMode mode)
    : label_(std::move(label)), unit_(std::move(unit)), mode_(mode) {
  start_ = last_ = std::chrono::steady_clock::now();
}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::update(double done, double total) {
  if (mode_ == ProgressMode::Off || finished_) return;
  const auto now = std::chrono::steady_clock::now();
  const bool lines = mode_ == ProgressMode::Lines;
  const double frac = total > 0 ? done / total : 1.0;
  // A log gets a line per step or interval and none at the end (the caller reports the result).
  if (lines && (done >= total || (frac - last_frac_ < line_step && now - last_ < line_interval))) return;
  if (!lines && done < total && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  last_frac_ = frac;
  const double el = std::chrono::duration<double>(now - start_).count();
  const int width = 30;
  const int filled = static_cast<int>(frac * width);
  std::string bar(filled, '#');
  bar.resize(width, '.');
  const double rate = el > 0 ? done / el : 0.0;
  const double eta = rate > 0 ? (total - done) / rate : 0.0;
  char eta_s[32];
  if (eta < 90)
    std::snprintf(eta_s, sizeof eta_s, "%.1f s", eta);
  else  // long runs (evaluation sweeps): h:mm:ss
    std::snprintf(eta_s, sizeof eta_s, "%d:%02d:%02d", static_cast<int>(eta) / 3600, static_cast<int>(eta) / 60 % 60,
                  static_cast<int>(eta) % 60);
  if (lines)
    std::fprintf(stderr, "%s: %5.1f%%  %.0f/%.0f %s  %.1f %s/s  elapsed %.0f s  ETA %s\n", label_.c_str(),
                 100.0 * frac, done, total, unit_.c_str(), rate, unit_.c_str(), el, eta_s);
  else
    std::fprintf(stderr, "\r%s [%s] %5.1f%%  %.0f/%.0f %s  %.1f %s/s  ETA %s   ", label_.c_str(), bar.c_str(),
                 100.0 * frac, done, total, unit_.c_str(), rate, unit_.c_str(), eta_s);
  std::fflush(stderr);
}

void ProgressBar::clear() {
  if (mode_ != ProgressMode::Bar || finished_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  last_ = std::chrono::steady_clock::time_point{};  // redraw on the next update
}

void ProgressBar::finish() {
  if (mode_ == ProgressMode::Off || finished_) return;
  finished_ = true;
  if (mode_ != ProgressMode::Bar) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
}

}  // namespace kvz
