// Prefix-suffix string retrieval (SCBench prefix_suffix): a list of random strings; each
// question names a prefix and a suffix and expects the one string that has both.
#include "eval/tasks/registry.h"

#include <fmt/format.h>

#include <set>

namespace kvz {

EvalSample make_prefix_suffix(int index, const TaskParams& p) {
  Rng r(sample_seed(p.seed, p.easy ? "prefix-suffix-easy" : "prefix-suffix", index));
  const int len = p.easy ? 10 : 20, cue = p.easy ? 3 : 4;
  std::vector<std::string> items;
  std::set<std::string> prefixes;
  const std::string head = "Below is a list of strings, one per line. Each string has its own prefix and suffix.\n\n";
  int64_t n = count_tokens(p, head);
  while (n < p.ctx_tokens) {
    std::string it = random_alnum(r, len, p.easy);
    if (!prefixes.insert(it.substr(0, cue)).second) continue;  // prefixes are unique, so answers are too
    n += count_tokens(p, it + "\n");
    items.push_back(std::move(it));
  }
  EvalSample s;
  s.context = head;
  for (const auto& it : items) s.context += it + "\n";
  s.context.pop_back();
  const int nq = 3;
  for (int q = 0; q < nq; ++q) {
    const size_t lo = items.size() * q / nq, hi = std::max(lo + 1, items.size() * (q + 1) / nq);
    const std::string& it = items[lo + r.below(hi - lo)];
    s.questions.push_back(fmt::format("Which string in the list starts with \"{}\" and ends with \"{}\"? Answer with "
                                      "the string only.",
                                      it.substr(0, cue), it.substr(it.size() - cue)));
    s.answers.push_back(it);
    s.metrics.push_back("inclusion");
  }
  s.max_new_tokens = p.easy ? 32 : 48;
  s.info = fmt::format("strings={} len={}", items.size(), len);
  return s;
}

}  // namespace kvz
