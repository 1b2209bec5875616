// A loaded model: hyper-parameters, memory-mapped weights and tokenizer. Immutable and
// shareable between sessions (each Session owns its KV cache and scratch).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "kernels/types.h"
#include "model/hparams.h"
#include "tokenizer/tokenizer.h"

namespace kvz {

struct LayerWeights {
  const float* attn_norm = nullptr;  // [n_embd]
  WeightView wq, wk, wv, wo;         // [n_head*d_head x n_embd], [n_kv*d x n_embd] x2, [n_embd x n_head*d]
  const float* bq = nullptr;         // qkv bias (qwen2), [n_head*d_head] / [n_kv*d_head]
  const float* bk = nullptr;
  const float* bv = nullptr;
  const float* q_norm = nullptr;  // per-head RMSNorm weights (qwen3, gemma3), [d_head]
  const float* k_norm = nullptr;
  const float* attn_post_norm = nullptr;  // of the attention output (gemma), [n_embd]
  const float* ffn_norm = nullptr;  // [n_embd]
  WeightView w_gate, w_up, w_down;  // [n_ff x n_embd] x2, [n_embd x n_ff]
  const float* ffn_post_norm = nullptr;  // of the FFN output (gemma), [n_embd]
};

struct Weights {
  WeightView tok_embd;  // [n_vocab x n_embd]
  const float* output_norm = nullptr;
  WeightView output;  // [n_vocab x n_embd]; tok_embd when tied
  std::vector<float> rope_freqs;  // [rope_dim/2] divisors, empty when absent
  std::vector<LayerWeights> layers;
};

class Model {
 public:
  // Loads a GGUF model. progress(fraction) is called while the weights are touched.
  static std::unique_ptr<Model> load(const std::string& path, const std::function<void(double)>& progress = {});

  const HParams& hp() const { return hp_; }
  const Weights& w() const { return w_; }
  const Tokenizer& tokenizer() const { return *tok_; }
  const GgufFile& file() const { return *file_; }
  // Bytes of weights read per generated token (all layer weights + output head + one
  // embedding row): the decode bandwidth denominator.
  size_t weight_bytes_per_token() const;

 private:
  std::unique_ptr<GgufFile> file_;
  HParams hp_;
  Weights w_;
  std::unique_ptr<Tokenizer> tok_;
};

// An architecture's loader: maps its GGUF keys to HParams and its tensor names to
// Weights, checking every shape. One per family file (model/llama.cpp, ...), listed in
// model/registry.cpp.
struct ArchSpec {
  const char* name;  // general.architecture
  void (*load)(const GgufFile& f, HParams& hp, Weights& w);
};
const std::vector<ArchSpec>& architectures();

void load_llama(const GgufFile& f, HParams& hp, Weights& w);
void load_qwen2(const GgufFile& f, HParams& hp, Weights& w);
void load_gemma3(const GgufFile& f, HParams& hp, Weights& w);

}  // namespace kvz
