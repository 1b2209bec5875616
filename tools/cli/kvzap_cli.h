// `--method kvzap` options shared by generate / ask / bench: threshold, window, weights folder.
#pragma once

#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include "core/error.h"
#include "kv/kvzap_pruner.h"

namespace kvz::cli {

struct KvzapCli {
  std::string threshold;  // text, so "-inf" and bad input get our own message
  int64_t window = 128;
  std::string dir;        // --kvzap DIR; empty: ~/.cache/kvzip/kvzap/<model>-{mlp,linear}
  int64_t n_batch = 512;
};

inline void add_kvzap_options(CLI::App* app, KvzapCli& k) {
  app->add_option("--threshold", k.threshold,
                  "KVzap: evict pairs whose predicted log-score is below this (e.g. -6; -inf keeps all)");
  app->add_option("--window", k.window, "KVzap: the most recent tokens are never evicted")
      ->capture_default_str()->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
  app->add_option("--kvzap", k.dir, "KVzap surrogate folder (default ~/.cache/kvzip/kvzap/<model>-mlp, else -linear)");
  app->add_option("--batch", k.n_batch, "prefill batch size (KVzap prunes between batches)")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
}

inline float parse_threshold(const std::string& s) {
  if (s == "-inf") return -std::numeric_limits<float>::infinity();
  char* end = nullptr;
  const float v = std::strtof(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v))
    fail("--threshold '{}': expected a number (a log-score such as -6, or -inf)", s);
  return v;
}

inline KvzapOptions kvzap_options(const KvzapCli& k) {
  if (k.threshold.empty()) fail("--method kvzap needs --threshold TAU (a log-score such as -6)");
  return {parse_threshold(k.threshold), k.window};
}

// The cache root shared with scripts/pull-model.sh (~/.cache/kvzip).
inline std::string kvzip_cache_root() {
  const char* home = std::getenv("HOME");
  return std::string(home ? home : ".") + "/.cache/kvzip";
}

}  // namespace kvz::cli
