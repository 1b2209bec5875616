// What composing separately prefilled (and separately compressed) documents costs in answer
// quality (docs/composition.md, issue "compose precompressed documents"): a generated
// multi-document task, answered
//   (a) joint      -- all documents prefilled together after the system prompt (the ideal),
//   (b) composed   -- each document prefilled alone, full caches composed (kv/compose.h),
//   (c) composed@r -- each document prefilled and KVzip-compressed alone at ratio r, composed;
// scored by the answers (inclusion of the fact, both facts for two-document questions) and by
// the teacher-forced KL of the joint answer's tokens against (a).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "eval/fidelity.h"
#include "model/model.h"

namespace kvz {

// One generated sample: documents about fictional people (a register split in volumes, each
// person in exactly one), filler prose between them, and questions that need one document
// or two.
struct MultiDocSample {
  std::vector<std::string> docs;  // each ends with "\n\n"; tokenized one by one
  struct Question {
    std::string text, answer;  // answer: "fact" or "fact A, fact B" (substring_fraction)
    std::vector<int> docs;     // the documents it needs
  };
  std::vector<Question> questions;
};

// n_docs documents of doc_tokens_min..doc_tokens_max tokens (counted with `count`), seeded.
// Per document one single-document question; as many two-document questions, each over a
// different pair of documents.
MultiDocSample make_multidoc_sample(uint64_t seed, int n_docs, int64_t doc_tokens_min, int64_t doc_tokens_max,
                                    const std::function<int64_t(const std::string&)>& count);

struct ComposeEvalOptions {
  std::vector<int> n_docs = {4, 6, 8};  // one sample per entry
  int64_t doc_tokens_min = 500, doc_tokens_max = 1500;
  std::vector<double> ratios = {0.5, 0.3, 0.2};
  int max_new_tokens = 32;
  uint64_t seed = 1;
  std::function<void(const std::string&)> log;  // a line per step (may be empty)
};

// One configuration's results over every question of a run.
struct ComposeConfigResult {
  std::string name;  // "joint", "composed", "composed@0.3"
  double ratio = 1.0;
  std::vector<double> scores;  // per question, in run order
  std::vector<Fidelity> fid;   // per question, against joint (joint's own: empty)
  std::vector<int> n_needed;   // per question: 1 or 2 documents
  int64_t kv_bytes = 0;        // summed over samples
};

struct ComposeEvalResult {
  std::vector<ComposeConfigResult> configs;  // joint, composed, composed@r...
  std::vector<std::string> questions, references;
  std::vector<std::vector<std::string>> answers;  // [config][question]
  int64_t n_doc_tokens = 0;                       // over samples
  int n_samples = 0, n_docs_total = 0;
  double joint_prefill_s = 0, separate_prefill_s = 0, scoring_s = 0, compose_s = 0;  // summed
};

ComposeEvalResult run_compose_eval(const Model& m, ThreadPool& pool, const ComposeEvalOptions& o);

// A markdown report of r (tables of scores by question type and of KL), with `header`
// (date, machine, model) on top.
std::string compose_eval_markdown(const ComposeEvalResult& r, const std::string& header);

}  // namespace kvz
