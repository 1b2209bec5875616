// A loaded model: hyper-parameters, memory-mapped weights and tokenizer. Immutable and
// shareable between sessions (each Session owns its KV cache and scratch).
#pragma once

#include <functional>
#include <optional>
#include <utility>
#include <memory>
#include <string>
#include <vector>

#include "io/model_identity.h"
#include "io/tensor_source.h"
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

struct LoadOptions {
  // Quantize HF float weight matrices to this type at load time (only Q8_0 so far);
  // unset = use them in place. GGUF files are always used as they are.
  std::optional<DType> convert;
  // Copy the weight matrices the active kernels read interleaved (32-element block types;
  // Q4_K) into that layout (WeightView::interleave), in anonymous memory on huge pages
  // where the system allows, and drop the mapped originals. Off: use the file's rows in place.
  bool interleave = true;
};

class Model {
 public:
  // Loads a GGUF file, or a Hugging Face folder (config.json, tokenizer.json,
  // model.safetensors or a sharded index). progress(fraction) is called while the weights
  // are touched.
  static std::unique_ptr<Model> load(const std::string& path, const std::function<void(double)>& progress = {},
                                     const LoadOptions& opt = {});

  const HParams& hp() const { return hp_; }
  const Weights& w() const { return w_; }
  const Tokenizer& tokenizer() const { return *tok_; }
  const TensorSource& file() const { return *file_; }
  // Bytes of weights read per generated token (all layer weights + output head + one
  // embedding row): the decode bandwidth denominator.
  size_t weight_bytes_per_token() const;
  // Bytes of weights held in the interleaved layout (0 when LoadOptions::interleave is off).
  size_t interleaved_bytes() const { return repacked_.size; }
  // Fingerprint and shapes, for the files saved beside the model (computed once at load).
  const ModelIdentity& identity() const { return id_; }

 private:
  void interleave_weights();
  void release_file_data();

  // Anonymous mapping holding the interleaved weight copies.
  struct Mapping {
    void* base = nullptr;
    size_t mapped = 0, size = 0;
    Mapping() = default;
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    ~Mapping();
  };

  std::unique_ptr<TensorSource> file_;
  HParams hp_;
  Weights w_;
  std::unique_ptr<Tokenizer> tok_;
  Mapping repacked_;
  std::vector<float> owned_vectors_;  // norms and biases, when the file's data is released
  ModelIdentity id_;
};

// How a family's Hugging Face folder maps onto the GGUF vocabulary its loader reads
// (model/hf_source.cpp applies it). The common part, shared by every family, is the
// llama naming: config keys num_hidden_layers, hidden_size, ... and per-layer tensors
// input_layernorm, self_attn.{q,k,v,o}_proj, post_attention_layernorm, mlp.*_proj;
// a family lists only what it adds or names differently.
struct HfNames {
  std::vector<std::string> model_types;  // config.json "model_type" values
  // config key -> GGUF key suffix (prefixed with "<arch>."), beyond the common ones
  std::vector<std::pair<std::string, std::string>> keys;
  // per-layer tensor suffix, HF -> GGUF ("self_attn.q_proj.bias" -> "attn_q.bias"); an
  // entry here overrides the common table
  std::vector<std::pair<std::string, std::string>> tensors;
  // HF stores RMSNorm weights as w and multiplies by (1 + w) (Gemma); GGUF stores 1 + w.
  bool norm_plus_one = false;
};

// An architecture's loader, in two steps: `hparams` maps its GGUF keys to HParams without
// looking at a tensor; `load` maps its tensor names to Weights, checking every shape against
// those HParams (and setting the flags that follow from which tensors exist). One per family
// file (model/llama.cpp, ...), listed in model/registry.cpp with its HF name table.
struct ArchSpec {
  const char* name;  // general.architecture
  void (*hparams)(const TensorSource& f, HParams& hp);
  void (*load)(const TensorSource& f, HParams& hp, Weights& w);
  HfNames hf;
};
const std::vector<ArchSpec>& architectures();

// The family named by general.architecture; throws kvz::Error listing the supported ones.
const ArchSpec& arch_of(const TensorSource& f);
// A source's hyper-parameters from its metadata alone: arch_of, the family's `hparams` and
// validate_hparams (model/validate.h). What a model file promises before any tensor is read
// (Model::load starts here; the config fuzz target stops here).
HParams model_hparams(const TensorSource& f);

void hparams_llama(const TensorSource& f, HParams& hp);
void load_llama(const TensorSource& f, HParams& hp, Weights& w);
HfNames hf_names_llama();
void hparams_qwen2(const TensorSource& f, HParams& hp);
void load_qwen2(const TensorSource& f, HParams& hp, Weights& w);
HfNames hf_names_qwen2();  // model/hf_names.cpp
void hparams_qwen3(const TensorSource& f, HParams& hp);
void load_qwen3(const TensorSource& f, HParams& hp, Weights& w);
HfNames hf_names_qwen3();
void hparams_gemma3(const TensorSource& f, HParams& hp);
void load_gemma3(const TensorSource& f, HParams& hp, Weights& w);
HfNames hf_names_gemma3();  // model/hf_names.cpp

}  // namespace kvz
