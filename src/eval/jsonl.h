// User data sets: JSON-lines files, one sample per line, in the reference's shape
// (kvzip-spec §6.1). docs/eval-data.md describes the format:
//   {"context": "...", "questions": ["...", ...], "answers": ["...", ...],
//    "metric": "inclusion" | [per question], "max_new_tokens": 64, "prompt": "qa" | "gsm"}
// "question" is accepted for "questions" and a string for a one-item list; an answer
// that is a list of strings is joined with ", " (the reference does this for SCBench).
#pragma once

#include <string>
#include <vector>

#include "eval/sample.h"

namespace kvz {

// Reads every sample of a JSON-lines file; blank lines are skipped. Throws kvz::Error
// naming the file and line for malformed JSON or a sample of the wrong shape.
std::vector<EvalSample> load_jsonl_samples(const std::string& path, const std::string& task_name);

// Parses one line (exposed for tests); `where` prefixes error messages.
EvalSample parse_jsonl_sample(const std::string& line, const std::string& task_name, int index,
                              const std::string& where);

}  // namespace kvz
