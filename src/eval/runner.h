// The evaluation driver behind `kvzip eval` (kvzip-spec §6.2): per sample one prefill, the
// full-cache answers once, one scoring pass per scorer, then for every method and ratio a
// re-prune from the retained full cache and every question answered independently
// (update_cache=false). Each (sample, method, ratio) becomes one JSON line appended to the
// output file; records already in the file are skipped, so an interrupted run resumes.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "eval/methods.h"
#include "eval/sample.h"
#include "model/model.h"

namespace kvz {

struct EvalOptions {
  std::string model_name;            // recorded in every line; part of the resume key
  std::vector<std::string> methods;  // names for resolve_method
  EvalMethodEnv method_env;
  std::vector<double> ratios;        // kept fractions; 1.0 reuses the full-cache answers
  bool fidelity = true;              // teacher-forced comparison with the full cache
  int64_t score_chunk = 0;           // KVzip scoring chunk in tokens (0: the default, 2000)
  std::string out_path;              // JSON lines, appended
  bool progress_bar = false;         // one-line bar with ETA on stderr
  bool log_records = true;           // one stderr line per record
};

// The resume key of a record: model, task, sample, seed, context target, method, ratio.
std::string record_key(const std::string& model, const std::string& task, int sample, uint64_t seed,
                       int64_t ctx_target, const std::string& method, double ratio);
// Keys of the complete records in a JSON-lines file (missing file: none). Lines that do
// not parse (an interrupted write) are ignored and counted in *n_bad.
std::set<std::string> done_record_keys(const std::string& path, int* n_bad = nullptr);

struct EvalRunStats {
  int64_t records_written = 0, records_skipped = 0, samples_run = 0;
};

EvalRunStats run_eval(const Model& model, ThreadPool& pool, const std::vector<EvalSample>& samples,
                      const EvalOptions& o);

}  // namespace kvz
