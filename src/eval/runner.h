// The evaluation driver behind `kvzip eval` (kvzip-spec §6.2): per sample one prefill, the
// full-cache answers once, one scoring pass per scorer, then for every method and ratio a
// re-prune from the retained full cache and every question answered independently
// (update_cache=false). Each (sample, method, ratio) becomes one JSON line appended to the
// output file; records already in the file are skipped, so an interrupted run resumes.
//
// Modes (issue 7 item 3, the paper's query-agnostic vs query-aware comparison) decide what a
// press that uses the question (Press::uses_question) sees while scoring:
//   agnostic  scores after the context alone; one cache serves every question of the sample.
//   aware     for each question, scores with that question present, prunes, answers it, and
//             goes back to the full cache (the cache is rebuilt per question).
//   reuse     scores with the sample's FIRST question present, prunes once, and answers every
//             question of the sample from that cache (a query-aware cache reused).
// Methods whose scores ignore the question (the KVzip levels, knorm, streaming_llm, random,
// ...) are the same in every mode: they run agnostic and keep their plain label, so asking
// for several modes costs them one record per ratio. Other methods are labelled
// "name/aware" and "name/reuse" (agnostic keeps the plain name), and every record carries
// the mode it ran in.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "core/progress.h"
#include "core/thread_pool.h"
#include "eval/methods.h"
#include "eval/sample.h"
#include "model/model.h"

namespace kvz {

enum class EvalMode { Agnostic, Aware, Reuse };
const char* eval_mode_name(EvalMode m);
// "agnostic", "aware" or "reuse"; throws kvz::Error naming the three otherwise.
EvalMode parse_eval_mode(const std::string& s);
// The label a method's records carry in `mode` ("snapkv/aware"; the plain name when the
// mode is agnostic or the method does not use the question).
std::string eval_method_label(const EvalMethod& m, EvalMode mode);

struct EvalOptions {
  std::string model_name;            // recorded in every line; part of the resume key
  std::vector<std::string> methods;  // names for resolve_method
  EvalMethodEnv method_env;
  std::vector<double> ratios;        // kept fractions; 1.0 reuses the full-cache answers
  std::vector<EvalMode> modes = {EvalMode::Agnostic};  // each method runs in each mode
  bool fidelity = true;              // teacher-forced comparison with the full cache
  int64_t score_chunk = 0;           // KVzip scoring chunk in tokens (0: the default, 2000)
  std::string out_path;              // JSON lines, appended
  ProgressMode progress = ProgressMode::Off;  // bar (terminal) or lines (log) with ETA on stderr
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
  // Samples not run because they do not fit the window (context, a method's scoring pass, or
  // the longest question and its answer); each is named on stderr before the run goes on.
  int64_t samples_too_long = 0;
};

EvalRunStats run_eval(const Model& model, ThreadPool& pool, const std::vector<EvalSample>& samples,
                      const EvalOptions& o);

}  // namespace kvz
