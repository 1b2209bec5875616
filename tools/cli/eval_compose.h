// `kvzip eval-compose` (eval_compose.cpp): the quality of composed stored contexts against
// a joint prefill (eval/compose_eval.h), as a markdown report.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "model/model.h"

namespace kvz::cli {

struct EvalComposeCli {
  std::string model;
  int threads = 0;
  std::vector<int> docs = {4, 6, 8};
  int64_t min_tokens = 500, max_tokens = 1500;
  std::vector<double> ratios = {0.5, 0.3, 0.2};
  int n_predict = 32;
  uint64_t seed = 1;
  std::string out, json;
};

// `kvzip bench-compose`: time to first token over stored compressed documents, composed,
// against prefilling the same documents with the question.
struct BenchComposeCli {
  std::string model;
  int threads = 0;
  int docs = 4;
  int64_t tokens = 1000;  // per document
  double ratio = 0.3;
  int reps = 5;
  uint64_t seed = 1;
  std::string dir;  // where the stored documents go (default: a temp folder, removed)
};

CLI::App* add_eval_compose_command(CLI::App& app, EvalComposeCli& c, const std::string& default_model);
int run_eval_compose_command(const EvalComposeCli& c, const LoadOptions& lopt);
CLI::App* add_bench_compose_command(CLI::App& app, BenchComposeCli& c, const std::string& default_model);
int run_bench_compose_command(const BenchComposeCli& c, const LoadOptions& lopt);

}  // namespace kvz::cli
