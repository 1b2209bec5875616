// A long document full of checkable facts, written by our own code from a seed, with
// questions whose answers are in it. Used by `kvzip demo` and as a smoke context.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvz {

struct QaSample {
  std::string context;
  std::vector<std::string> questions;
  std::vector<std::string> answers;
};

// n_records: number of fact records, one per trade, at most 40 (each ~50 tokens with
// SmolLM2's tokenizer).
QaSample make_demo_document(int n_records = 40, uint64_t seed = 7, int n_questions = 8);

}  // namespace kvz
