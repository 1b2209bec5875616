// Variable tracking (RULER vt / SCBench vt, multi-hop): assignment chains
// "VAR A = 12345", "VAR B = VAR A", ... hidden in prose; the question asks for every
// variable holding a value, scored by the fraction of them named (substring_fraction).
#include "eval/tasks/registry.h"

#include <fmt/format.h>

namespace kvz {

EvalSample make_variable_tracking(int index, const TaskParams& p) {
  Rng r(sample_seed(p.seed, p.easy ? "vt-easy" : "vt", index));
  const int hops = p.easy ? 2 : 4, n_chains = 2;
  struct Chain {
    std::string value;
    std::vector<std::string> vars;
  };
  std::vector<Chain> chains(n_chains);
  std::vector<std::pair<double, std::string>> lines;  // (position in [0,1), text)
  int64_t used = 0;
  for (int c = 0; c < n_chains; ++c) {
    chains[c].value = random_digits(r, 5);
    double pos = r.below(30) / 100.0;
    for (int h = 0; h < hops; ++h) {
      chains[c].vars.push_back(random_upper(r, 5));
      const std::string rhs = h == 0 ? chains[c].value : "VAR " + chains[c].vars[h - 1];
      lines.emplace_back(pos, "VAR " + chains[c].vars[h] + " = " + rhs + ". ");
      used += count_tokens(p, lines.back().second);
      pos += (1.0 - pos) * (0.15 + r.below(30) / 100.0);  // later lines come later
    }
  }
  const auto filler = filler_sentences(r, std::max<int64_t>(16, p.ctx_tokens - used), p.count);
  std::string ctx;
  const size_t n = filler.size();
  for (size_t i = 0; i <= n; ++i) {
    for (const auto& [pos, text] : lines)
      if (static_cast<size_t>(pos * n) == i) ctx += text;
    if (i < n) ctx += filler[i];
  }
  EvalSample s;
  s.context = ctx;
  for (const auto& c : chains) {
    s.questions.push_back(fmt::format("Find all variables that are assigned the value {} in the text, directly or "
                                      "through other variables. List their names separated by commas.",
                                      c.value));
    std::string ans;
    for (const auto& v : c.vars) ans += (ans.empty() ? "" : ", ") + v;
    s.answers.push_back(ans);
    s.metrics.push_back("substring_fraction");
  }
  s.max_new_tokens = 32;
  s.info = fmt::format("chains={} hops={}", n_chains, hops);
  return s;
}

}  // namespace kvz
