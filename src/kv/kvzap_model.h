// The KVzap surrogate (arXiv 2601.07891; docs: kvzap-and-presses.md §1.2): one small model
// per decoder layer mapping the attention input (the hidden state after the layer's input
// RMSNorm, [n_embd]) to one predicted log KVzip+ score per KV head ([n_head_kv]). No context
// mixing: every token is scored from its own hidden state, once, when it enters the cache.
//   linear: s = W h + b                       W [H][D], b [H]
//   mlp:    s = W2 gelu(W1 h + b1) + b2        W1 [F][D], b1 [F], W2 [H][F], b2 [H], F = D/8,
//           gelu the exact (erf) one, as torch.nn.GELU().
//
// On disk: a folder in the layout kvpress's KVzapModel.save_pretrained writes, so published
// checkpoints load too: config.json {"model_type": "kvzap", "input_dim": D, "output_dim": H,
// "hidden_dim": F or null, "n_modules": L} and model.safetensors with tensors
// layers.{l}.weight / layers.{l}.bias (linear) or layers.{l}.0.{weight,bias} and
// layers.{l}.2.{weight,bias} (mlp), [out][in] row-major, F32/F16/BF16.
// Files we write add "kvzip": {"model_fingerprint": "<hex>", "model_name": ..., ...} to
// config.json; loading such a file for another model is an error. A file without it (a
// published checkpoint) is accepted when its shapes match the model.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kvz {

class Model;
class ThreadPool;

struct KvzapLayer {
  std::vector<float> w1, b1;  // linear: W [H][D], b [H]; mlp: W1 [F][D], b1 [F]
  std::vector<float> w2, b2;  // mlp only: W2 [H][F], b2 [H]
};

class KvzapModel {
 public:
  enum class Kind { Linear, Mlp };

  // Zero weights of the given shape (a trainer fills them). d_hidden is ignored for Linear.
  static KvzapModel zeros(Kind kind, int n_layer, int d_in, int n_out, int d_hidden);
  // Loads a folder (config.json + model.safetensors) and checks it against `m` (shapes; our
  // fingerprint when present). Throws kvz::Error naming the folder and the problem.
  static KvzapModel load(const std::string& dir, const Model& m);
  // The same without a model to check against (tests, `info`-style tools).
  static KvzapModel load_unchecked(const std::string& dir);
  // Writes the folder (created if needed), tagged with m's fingerprint and name; `info` is
  // stored under config.json's "kvzip" key too (training corpus, R², ...).
  void save(const std::string& dir, const Model& m, const nlohmann::json& info = {}) const;
  // As save(), untagged (a published-layout file, for tests of the loader).
  void save_untagged(const std::string& dir) const;

  Kind kind() const { return kind_; }
  int n_layer() const { return static_cast<int>(layers_.size()); }
  int d_in() const { return d_in_; }
  int n_out() const { return n_out_; }
  int d_hidden() const { return d_hidden_; }
  KvzapLayer& layer(int il) { return layers_[static_cast<size_t>(il)]; }
  const KvzapLayer& layer(int il) const { return layers_[static_cast<size_t>(il)]; }
  // config.json's "kvzip" object of a file we wrote (empty for published files).
  const nlohmann::json& info() const { return info_; }
  // Multiply-adds per token for all layers (overhead accounting).
  int64_t macs_per_token() const;

  // out[t][h] = predicted log-score of token t for KV head h in layer il, t < n.
  // h: [n][d_in] f32; out: [n][n_out] f32. `scratch` grows as needed (mlp: n * d_hidden).
  void predict(int il, const float* h, int64_t n, float* out, std::vector<float>& scratch,
               ThreadPool* pool = nullptr) const;

 private:
  Kind kind_ = Kind::Linear;
  int d_in_ = 0, n_out_ = 0, d_hidden_ = 0;
  std::vector<KvzapLayer> layers_;
  nlohmann::json info_;
};

// The exact GELU of torch.nn.GELU(): x/2 (1 + erf(x / sqrt 2)).
float gelu_erf(float x);

}  // namespace kvz
