// One evaluation sample in the KVzip reference's shape (kvzip-spec §6.1): a context, the
// questions asked about it (each answered independently from one compressed cache) and
// their reference answers, plus what the harness needs to ask and score them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvz {

struct EvalSample {
  std::string task;   // registry name, or the JSON-lines file's task name
  int index = 0;      // position within the task
  std::string context;
  std::vector<std::string> questions;
  std::vector<std::string> answers;
  std::vector<std::string> metrics;  // per question, a name from eval/metrics.h
  int max_new_tokens = 64;           // answer length cap
  // "qa": the question is asked as "Q: {question}"; "gsm": the reference's reasoning
  // prompt, and the context's system prompt gets the reasoning instruction.
  std::string prompt = "qa";
  std::string info;  // generator parameters, e.g. "len=1000 depth=50%"
  uint64_t seed = 0;        // generator seed (0 for user files)
  int64_t ctx_target = 0;   // requested context tokens (0 for user files)
};

// The text sent as the query for question i (kvzip-spec §6.2).
std::string query_text(const EvalSample& s, size_t i);

// Throws kvz::Error when the lists disagree in length, a metric is unknown or the sample
// is empty.
void validate_sample(const EvalSample& s, const std::string& where);

}  // namespace kvz
