// Tiny random-weight Llama-family models for unit tests (STYLE.md: 2 layers, 4 heads,
// 2 KV heads, d_head 16), written as GGUF in memory or to a temp file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include "io/gguf_writer.h"
#include "cache/head_cache.h"
#include "model/model.h"

namespace kvz::test {

struct SyntheticSpec {
  int n_layer = 2;
  int n_embd = 64;
  int n_head = 4;
  int n_head_kv = 2;
  int n_ff = 96;
  int n_ctx = 512;
  DType wtype = DType::F32;  // matrices; F32 or F16
  bool tied = true;
  uint64_t seed = 1;
  std::string arch = "llama";  // general.architecture and key prefix; "gemma3" adds its norms and keys
  // gemma3 only: sliding window (positions), pattern (every n-th layer global), local RoPE base
  int n_swa = 8;
  int swa_pattern = 2;
  std::vector<int32_t> swa_flags;  // non-empty: written as the pattern key's per-layer array instead
  float rope_base_swa = 10000.0f;
  std::string skip_tensor;      // leave this tensor out (error tests)
  // Metadata for error tests, by full key ("llama.rope.freq_base"): replaces the value the
  // model would have, or adds the key.
  std::map<std::string, float> f32_keys;
  std::map<std::string, uint32_t> u32_keys;
  std::map<std::string, std::string> str_keys;
};

// A byte-level vocabulary: the 256 GPT-2 byte symbols, "ab" (one merge), <|im_start|>, <|im_end|>.
GgufWriter synthetic_llama(const SyntheticSpec& spec);
// Writes it to a unique temp path and returns the path.
std::string write_synthetic_llama(const SyntheticSpec& spec, const std::string& tag);
// A path in the temp directory unique to this process (name-PID): ctest runs some tests in
// several processes at once (the determinism tests under each kernel set), which must not
// share a scratch file or folder.
std::string temp_path(const std::string& name);
// A tiny random gemma3 with sliding windows of 8 positions, every second layer global
// (layers 0, 2, ... local), loaded (its file already removed).
std::unique_ptr<Model> load_tiny_gemma3(int n_layer, const std::string& tag);

// A temp folder (kvz_hf_<tag> in the temp directory), removed with the GGUF it was made
// from when it goes out of scope.
struct HfFolder {
  std::filesystem::path dir;
  std::string gguf_path;
  explicit HfFolder(const std::string& tag) : dir(temp_path("kvz_hf_" + tag)) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  ~HfFolder() {
    std::filesystem::remove_all(dir);
    if (!gguf_path.empty()) std::remove(gguf_path.c_str());
  }
  void write(const std::string& name, const std::string& text) const { std::ofstream(dir / name, std::ios::binary) << text; }
  std::string read(const std::string& name) const {
    std::ifstream in(dir / name, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  void write(const std::string& name, const std::vector<uint8_t>& b) const {
    std::ofstream(dir / name, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), b.size());
  }
};

// Writes the synthetic model as an HF folder: two safetensors shards and their index (HF
// names and shapes, q/k rows in HF's rotate-half layout), config.json, tokenizer.json (the
// same byte-level vocabulary) and tokenizer_config.json. f.gguf_path: the GGUF it came from.
void write_hf_copy(const SyntheticSpec& spec, HfFolder& f);

// A test suite sharing one default synthetic model, written and loaded once per suite.
class SyntheticModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    path_ = write_synthetic_llama({}, ::testing::UnitTest::GetInstance()->current_test_suite()->name());
    model_ = Model::load(path_).release();
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
    std::remove(path_.c_str());
  }
  static inline std::string path_;
  static inline Model* model_ = nullptr;
};

// Bit-identical rows: same length, K, V and positions (exact-restore checks).
// row_bytes: KvCache::row_bytes() of the caches compared.
inline bool same_rows(const HeadSegment& a, const HeadSegment& b, size_t row_bytes) {
  return a.len == b.len && std::memcmp(a.k.get(), b.k.get(), a.len * row_bytes) == 0 &&
         std::memcmp(a.v.get(), b.v.get(), a.len * row_bytes) == 0 &&
         std::memcmp(a.pos.get(), b.pos.get(), a.len * 4) == 0;
}

}  // namespace kvz::test
