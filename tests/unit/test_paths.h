// Where tests find fixtures and real models.
#pragma once

#include <cstdlib>
#include <fstream>
#include <string>

namespace kvz::test {

inline std::string source_dir() { return KVZ_SOURCE_DIR; }

inline std::string models_dir() {
  if (const char* d = std::getenv("KVZ_MODELS_DIR")) return d;
  const char* h = std::getenv("HOME");
  return std::string(h ? h : ".") + "/.cache/kvzip/models";
}

// The HF folders scripts/make-hf-models.sh writes (qwen3-tiny, llama3-tiny, ...).
inline std::string hf_dir() {
  if (const char* d = std::getenv("KVZ_HF_DIR")) return d;
  const char* h = std::getenv("HOME");
  return std::string(h ? h : ".") + "/.cache/kvzip/hf";
}

inline std::string smollm2_path() { return models_dir() + "/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"; }
inline std::string gemma3_path() { return models_dir() + "/gemma3-270m/gemma-3-270m-q4_k_m.gguf"; }

inline bool file_exists(const std::string& p) { return std::ifstream(p).good(); }

// True under scripts/sanitize.sh (KVZ_SANITIZE=1). The real-model tests then run a shorter
// input: with every load of the kernels' inner loops checked by ASan and UBSan, SmolLM2
// prefills about 30 tokens/s and decodes about 15 tokens/s on 2 threads (2026-12-04, AMD
// EPYC Zen 4). The checks that remain are the same ones, on fewer positions.
inline bool sanitized() {
  const char* s = std::getenv("KVZ_SANITIZE");
  return s != nullptr && std::string(s) == "1";
}

}  // namespace kvz::test
