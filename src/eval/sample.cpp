#include "eval/sample.h"

#include "core/error.h"
#include "eval/metrics.h"

namespace kvz {

std::string query_text(const EvalSample& s, size_t i) {
  // kvzip-spec §6.2 (the reference's data/wrapper.py query formats).
  if (s.prompt == "gsm")
    return "Reason and answer the question. You must say the answer in the last sentence beginning with 'The "
           "answer is'. Q: " +
           s.questions[i];
  return "Q: " + s.questions[i];
}

void validate_sample(const EvalSample& s, const std::string& where) {
  if (s.context.empty()) fail("{}: the context is empty", where);
  if (s.questions.empty()) fail("{}: no questions", where);
  if (s.answers.size() != s.questions.size())
    fail("{}: {} questions but {} answers (one answer per question)", where, s.questions.size(), s.answers.size());
  if (s.metrics.size() != s.questions.size())
    fail("{}: {} questions but {} metrics", where, s.questions.size(), s.metrics.size());
  for (const auto& m : s.metrics)
    if (!is_metric(m)) fail("{}: unknown metric '{}'", where, m);
  if (s.prompt != "qa" && s.prompt != "gsm") fail("{}: prompt must be \"qa\" or \"gsm\", got \"{}\"", where, s.prompt);
  if (s.max_new_tokens < 1) fail("{}: max_new_tokens must be >= 1", where);
}

}  // namespace kvz
