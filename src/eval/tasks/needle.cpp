// Needle in a haystack (the reference's `needle` data set, kvzip-spec §6.1, with our own
// haystack): a "special magic number" sentence hidden at a depth of generated prose.
// Sample i uses length lengths[i % 3] and depth depths[i % 5], so 15 samples cover the grid.
#include "eval/tasks/registry.h"

#include <fmt/format.h>

#include <algorithm>

namespace kvz {

namespace {

std::string needle_sentence(const std::string& city, const std::string& number) {
  return "The special magic number for " + city + " is " + number + ". ";
}

std::string needle_question(const std::string& city) {
  return "What is the special magic number for " + city + " mentioned in the provided text?";
}

// Joins filler sentences with the needles inserted before sentence index floor(n * depth).
std::string haystack(const std::vector<std::string>& filler, const std::vector<std::pair<double, std::string>>& needles) {
  std::string s;
  const size_t n = filler.size();
  for (size_t i = 0; i <= n; ++i) {
    for (const auto& [depth, text] : needles)
      if (std::min(static_cast<size_t>(depth * n), n) == i) s += text;
    if (i < n) s += filler[i];
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n')) s.pop_back();
  return s;
}

}  // namespace

EvalSample make_needle(int index, const TaskParams& p) {
  Rng r(sample_seed(p.seed, "needle", index));
  static const int kDepths[] = {0, 25, 50, 75, 100};
  const int64_t lengths[] = {p.ctx_tokens / 4, p.ctx_tokens / 2, p.ctx_tokens};
  const int64_t len = lengths[index % 3];
  const int depth = kDepths[index % 5];
  const std::string city = r.pick(city_names()), number = random_digits(r, 7);
  const std::string needle = needle_sentence(city, number);
  const auto filler = filler_sentences(r, std::max<int64_t>(16, len - count_tokens(p, needle)), p.count);
  EvalSample s;
  s.context = haystack(filler, {{depth / 100.0, needle}});
  s.questions = {needle_question(city)};
  s.answers = {number};
  s.metrics = {"inclusion"};
  s.max_new_tokens = 32;
  s.info = fmt::format("len={} depth={}%", len, depth);
  return s;
}

EvalSample make_needle_multikey(int index, const TaskParams& p) {
  Rng r(sample_seed(p.seed, "needle-multikey", index));
  std::vector<std::string> cities = city_names();
  r.shuffle(cities);
  std::vector<std::pair<double, std::string>> needles;
  std::vector<std::string> numbers;
  int64_t needle_tokens = 0;
  for (int k = 0; k < 4; ++k) {
    numbers.push_back(random_digits(r, 7));
    const double depth = (k + r.below(100) / 100.0) / 4.0;  // one needle per quarter
    needles.emplace_back(depth, needle_sentence(cities[k], numbers.back()));
    needle_tokens += count_tokens(p, needles.back().second);
  }
  const auto filler = filler_sentences(r, std::max<int64_t>(16, p.ctx_tokens - needle_tokens), p.count);
  EvalSample s;
  s.context = haystack(filler, needles);
  const int a = static_cast<int>(r.below(4)), b = (a + 1 + static_cast<int>(r.below(3))) % 4;
  for (int k : {a, b}) {
    s.questions.push_back(needle_question(cities[k]));
    s.answers.push_back(numbers[k]);
    s.metrics.push_back("inclusion");
  }
  s.max_new_tokens = 32;
  s.info = fmt::format("len={} keys=4", p.ctx_tokens);
  return s;
}

}  // namespace kvz
