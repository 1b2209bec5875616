// Answer-quality metrics as the KVzip reference defines them (kvzip-spec §6.3;
// snu-mllab/KVzip results/metric.py, parse.py, repo_qa_utils.py). Every per-question score
// is in [0, 1]; a sample's score is the mean over its questions and a task's score the mean
// over samples, x100 (sample_score / task_score).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvz {

// lowercase -> delete ASCII punctuation -> drop the whole words a/an/the -> collapse
// whitespace -> the whole words zero..nine become digits 0..9.
std::string normalize_answer(std::string_view s);

// normalize(ref) is a substring of normalize(pred).
double answer_inclusion(std::string_view pred, std::string_view ref);
// Token F1 over whitespace tokens of the normalized strings (multiset overlap).
double token_f1(std::string_view pred, std::string_view ref);
// pred == ref, no normalization (SCBench math-find).
double exact_match(std::string_view pred, std::string_view ref);
// Fraction of the items of ref (split on ", ") that are substrings of pred, no
// normalization (variable tracking).
double substring_fraction(std::string_view pred, std::string_view ref);
// ROUGE-L F1 as the `rouge` 1.0.1 package computes it (Rouge().get_scores, "rouge-l" "f"):
// sentences split on '.', summary-level union LCS over sets of distinct words, F =
// 2PR/(P+R+1e-8). Case-sensitive, no stemming.
double rouge_l(std::string_view pred, std::string_view ref);
// GSM rule: the part of lowercase(strip(pred)) after the last "the answer is ", and the
// part of ref after "#### "; 1 if the latter is a substring of the former.
double gsm_answer(std::string_view pred, std::string_view ref);
// Many-shot classification: ref is an option line holding "(X)". When pred and ref both
// contain '(', compare what the first parentheses hold; otherwise inclusion of ref with
// its "(X)" removed.
double many_shot(std::string_view pred, std::string_view ref);
// Keep only the first line of pred, then inclusion (multiple choice).
double first_line_inclusion(std::string_view pred, std::string_view ref);

// Sentence BLEU as nltk 3.x sentence_bleu computes it with SmoothingFunction().method4,
// weights 0.25 x 4, whitespace tokens.
double sentence_bleu(std::string_view hyp, std::string_view ref);
// The first fenced code block of pred (```lang ... ```), or pred itself when there is none.
std::string extract_code_block(std::string_view pred);
// RepoQA needle metric: 1 if the code pred gives matches `ref` best among `needles` (all
// needle functions of the sample, ref among them) with BLEU >= threshold, else 0.
double repoqa_pass(std::string_view pred, std::string_view ref, const std::vector<std::string>& needles,
                   double threshold = 0.8);

// Metric names a task can give its questions.
inline constexpr const char* kMetricNames[] = {"inclusion", "f1_or_inclusion", "exact", "substring_fraction",
                                               "rouge_l",   "gsm",             "many_shot", "first_line",
                                               "repoqa"};
bool is_metric(const std::string& name);

// Scores one prediction with the named metric. Strips a trailing "</s>"; an empty or
// whitespace-only prediction scores 0, except under "repoqa" where it is dropped from the
// denominator (nullopt), as in the reference. `needles` is only used by "repoqa".
std::optional<double> score_answer(const std::string& metric, std::string_view pred, std::string_view ref,
                                   const std::vector<std::string>& needles = {});

// Mean of the scores that are present; 0 when none is.
double mean_present(const std::vector<std::optional<double>>& v);

}  // namespace kvz
