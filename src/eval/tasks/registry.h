// The task suite: seeded, deterministic generators written by us, one small file each
// (src/eval/tasks/*.cpp), listed once in registry.cpp. Contexts are sized in tokens with
// the model's tokenizer. "-easy" variants are shorter and simpler, so that a small model
// (SmolLM2-135M) gets a meaningful full-cache score to lose under compression.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eval/sample.h"
#include "eval/tasks/gen_util.h"

namespace kvz {

struct TaskParams {
  int64_t ctx_tokens = 0;  // target context length; 0: the task's default
  uint64_t seed = 1;
  TokenCounter count;      // empty: approx_tokens
  bool easy = false;       // set from the registry entry
};

using TaskGenerator = EvalSample (*)(int index, const TaskParams& p);

struct TaskInfo {
  std::string name;
  std::string description;
  TaskGenerator make;
  int64_t default_ctx_tokens;
  bool easy;
};

const std::vector<TaskInfo>& task_registry();
// Throws kvz::Error listing the known names.
const TaskInfo& find_task(const std::string& name);
// Generates sample `index` of a task: p.ctx_tokens 0 means the task's default.
EvalSample make_task_sample(const TaskInfo& t, int index, TaskParams p);

// Context lengths for a sweep (`kvzip eval --ctx-tokens 2000,4000,8000`): comma-separated
// token counts, 0 = each task's default. Throws kvz::Error on a non-number, a negative or
// too large value (over 1M), a duplicate or an empty list.
std::vector<int64_t> parse_ctx_tokens(const std::string& list);
// Samples 0..n-1 of a task at every length of `lengths` (length-major), p.ctx_tokens ignored.
std::vector<EvalSample> make_task_samples(const TaskInfo& t, int n, const std::vector<int64_t>& lengths,
                                          const TaskParams& p);

// The generators (one file each).
EvalSample make_needle(int index, const TaskParams& p);
EvalSample make_needle_multikey(int index, const TaskParams& p);
EvalSample make_kv_retrieval(int index, const TaskParams& p);
EvalSample make_prefix_suffix(int index, const TaskParams& p);
EvalSample make_variable_tracking(int index, const TaskParams& p);
EvalSample make_fact_qa(int index, const TaskParams& p);
EvalSample make_gsm(int index, const TaskParams& p);
EvalSample make_many_shot(int index, const TaskParams& p);
EvalSample make_repoqa(int index, const TaskParams& p);
EvalSample make_summary_needles(int index, const TaskParams& p);

// Token count of s under p (the tokenizer, or the approximation).
int64_t count_tokens(const TaskParams& p, const std::string& s);

}  // namespace kvz
