// `kvzip train-kvzap`: builds a training set of (attention input, log KVzip+ score) pairs
// from the offline corpus (kvzap/corpus.h, kvzap/targets.h) and fits the per-layer linear
// and MLP surrogates (kvzap/trainers.h), reporting R^2 on held-out documents.
// Memory: the training set is n_layer * d_in bf16 + n_layer * n_head_kv f32 per sampled
// token (SmolLM2-135M: 30 * 576 * 2 + 30 * 3 * 4 = 34.9 KB/token, so the default 30,000 tokens ~ 1.05 GB,
// 333,000 tokens = 1M (token, KV head) pairs ~ 11.6 GB).
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "kv/kvzap_model.h"
#include "kvzap/corpus.h"
#include "kvzap/trainers.h"
#include "model/model.h"

namespace kvz {

struct KvzapTrainOptions {
  int64_t tokens = 30000;        // sampled training tokens (pairs = tokens * n_head_kv)
  int64_t val_tokens = 0;        // held-out tokens; 0 = max(500, tokens / 10)
  int positions_per_text = 500;  // sampled positions per text, the same for all layers
  bool linear = true, mlp = true;
  double ridge_alpha = 1.0;
  MlpTrainOptions mlp_opt;  // hidden 0 = n_embd / 8
  CorpusOptions corpus;
  int64_t n_batch = 512;  // forward batch of the extraction pass
  bool progress = true;   // progress bars on stderr (when it is a terminal)
};

struct KvzapTrainResult {
  KvzapModel linear, mlp;                      // filled per the options
  std::vector<double> r2_linear, r2_mlp;       // [n_layer] held-out R^2, mean over KV heads
  double r2_linear_mean = 0, r2_mlp_mean = 0;  // mean over all (layer, KV head)
  int64_t n_train_texts = 0, n_val_texts = 0, n_train_tokens = 0, n_val_tokens = 0;
  int64_t forward_tokens = 0;  // tokens run through the model
  double extract_seconds = 0, linear_seconds = 0, mlp_seconds = 0;
  nlohmann::json corpus;        // Corpus::describe()
  nlohmann::json target_stats;  // mean, sd, min, max of log s+ (training set)
  // The "kvzip" info of one kind's folder: corpus, counts, R^2, seconds.
  nlohmann::json info(bool mlp) const;
};

// log(line) receives one-line progress notes (extraction done, per-phase times).
KvzapTrainResult train_kvzap(const Model& m, ThreadPool& pool, const KvzapTrainOptions& opt,
                             const std::function<void(const std::string&)>& log = {});

// <cache_root>/kvzap/<name>-<kind>, name = the model's directory name when the file
// stem starts with it (the scripts/pull-model.sh layout: .../smollm2-135m/SmolLM2-135M-...
// gives "smollm2-135m"), else the lower-cased file stem (or folder name).
std::string kvzap_output_dir(const std::string& cache_root, const std::string& model_path, const std::string& kind);

}  // namespace kvz
