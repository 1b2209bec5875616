// Function retrieval from code (RepoQA / SCBench repoqa): a generated Python module of
// small functions; a question describes one function (the easy variant names it) and asks
// for its code. Scored by the RepoQA needle metric: BLEU >= 0.8 against the asked
// function, and closer to it than to the sample's other asked functions.
#include "eval/tasks/registry.h"

#include <fmt/format.h>

#include <set>

namespace kvz {

namespace {

const std::vector<std::string> kVerbs = {"compute", "collect", "scale", "merge", "filter", "count", "build", "clip",
                                         "gather", "rank", "measure", "smooth", "pack", "split", "track"};
const std::vector<std::string> kNouns = {"totals", "weights", "labels", "ranges", "tokens", "prices", "samples",
                                         "offsets", "scores", "buckets", "records", "levels", "steps", "marks"};

struct Fn {
  std::string name, code, description;
};

Fn make_fn(Rng& r, const std::string& name) {
  const int a = r.range(2, 9), b = r.range(10, 40);
  switch (r.below(6)) {
    case 0:
      return {name,
              fmt::format("def {}(values):\n    total = 0\n    for v in values:\n        if v > {}:\n            total "
                          "+= v * {}\n    return total\n",
                          name, a, b),
              fmt::format("takes a list of numbers and returns {} times the sum of the values greater than {}", b, a)};
    case 1: {
      const char* sep = r.below(2) ? "-" : "_";
      return {name,
              fmt::format("def {}(text):\n    words = text.split()\n    kept = [w.upper() for w in words if len(w) > "
                          "{}]\n    return \"{}\".join(kept)\n",
                          name, a, sep),
              fmt::format("upper-cases the words of a text that are longer than {} characters and joins them with "
                          "'{}'",
                          a, sep)};
    }
    case 2:
      return {name,
              fmt::format("def {}(items):\n    counts = {{}}\n    for item in items:\n        key = item % {}\n    "
                          "    counts[key] = counts.get(key, 0) + 1\n    return counts\n",
                          name, a),
              fmt::format("counts a list of integers by their remainder modulo {} and returns the counts", a)};
    case 3:
      return {name,
              fmt::format("def {}(x, low={}, high={}):\n    if x < low:\n        return low\n    if x > high:\n     "
                          "   return high\n    return x\n",
                          name, a, b),
              fmt::format("clamps a number to the range from {} to {}", a, b)};
    case 4:
      return {name,
              fmt::format("def {}(series, window={}):\n    out = []\n    for i in range(len(series) - window + 1):\n "
                          "       out.append(sum(series[i:i + window]) / window)\n    return out\n",
                          name, a),
              fmt::format("returns the moving averages of a series over windows of {} values", a)};
    default:
      return {name,
              fmt::format("def {}(n):\n    a, b = {}, {}\n    for _ in range(n):\n        a, b = b, a + b\n    "
                          "return a\n",
                          name, a, b),
              fmt::format("returns the n-th term of a Fibonacci-like sequence that starts with {} and {}", a, b)};
  }
}

}  // namespace

EvalSample make_repoqa(int index, const TaskParams& p) {
  Rng r(sample_seed(p.seed, p.easy ? "repoqa-easy" : "repoqa", index));
  std::vector<Fn> fns;
  std::set<std::string> names;
  std::string head = "# utils.py: helper functions of a small data-processing package.\n\n";
  int64_t n = count_tokens(p, head);
  while (n < p.ctx_tokens || fns.size() < 3) {
    const std::string name = r.pick(kVerbs) + "_" + r.pick(kNouns);
    if (!names.insert(name).second) {
      if (names.size() >= kVerbs.size() * kNouns.size()) break;
      continue;
    }
    fns.push_back(make_fn(r, name));
    n += count_tokens(p, fns.back().code + "\n\n");
  }
  EvalSample s;
  s.context = head;
  for (const auto& f : fns) s.context += f.code + "\n\n";
  while (!s.context.empty() && s.context.back() == '\n') s.context.pop_back();
  for (int q = 0; q < 2; ++q) {
    const size_t lo = fns.size() * q / 2, hi = std::max(lo + 1, fns.size() * (q + 1) / 2);
    const Fn& f = fns[lo + r.below(hi - lo)];
    if (p.easy)
      s.questions.push_back(fmt::format("Repeat the function `{}` from the module exactly, inside a ```python code "
                                        "block.",
                                        f.name));
    else
      s.questions.push_back(fmt::format("One function in the module {}. Find it and repeat its code exactly, inside "
                                        "a ```python code block.",
                                        f.description));
    s.answers.push_back(f.code.substr(0, f.code.find_last_not_of('\n') + 1));  // as the context shows it
    s.metrics.push_back("repoqa");
  }
  s.max_new_tokens = 96;
  s.info = fmt::format("functions={}", fns.size());
  return s;
}

}  // namespace kvz
