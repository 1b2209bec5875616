// Key-value retrieval (SCBench kv, kvzip-spec §6.1): a JSON object of random UUID keys and
// values; each question gives a key and expects its value. The easy variant uses short
// word-number keys and 6-digit values.
#include "eval/tasks/registry.h"

#include <fmt/format.h>

namespace kvz {

EvalSample make_kv_retrieval(int index, const TaskParams& p) {
  Rng r(sample_seed(p.seed, p.easy ? "kv-easy" : "kv", index));
  std::vector<std::pair<std::string, std::string>> kv;
  std::string head = "Extract the value corresponding to the specified key in the JSON object below.\n\nJSON data:\n{";
  int64_t n = count_tokens(p, head);
  while (n < p.ctx_tokens - 2) {
    std::string k = p.easy ? r.pick(object_nouns()) + "-" + random_digits(r, 3) : random_uuid(r);
    std::string v = p.easy ? random_digits(r, 6) : random_uuid(r);
    const std::string item = fmt::format("{}\"{}\": \"{}\"", kv.empty() ? "" : ", ", k, v);
    n += count_tokens(p, item);
    kv.emplace_back(std::move(k), std::move(v));
  }
  EvalSample s;
  s.context = head;
  for (size_t i = 0; i < kv.size(); ++i) s.context += fmt::format("{}\"{}\": \"{}\"", i ? ", " : "", kv[i].first, kv[i].second);
  s.context += "}";
  const int nq = 3;
  for (int q = 0; q < nq; ++q) {
    // one key from each third of the object
    const size_t lo = kv.size() * q / nq, hi = std::max(lo + 1, kv.size() * (q + 1) / nq);
    const auto& [k, v] = kv[lo + r.below(hi - lo)];
    s.questions.push_back(fmt::format("What is the value of the key \"{}\" in the JSON object?", k));
    s.answers.push_back(v);
    s.metrics.push_back("inclusion");
  }
  s.max_new_tokens = p.easy ? 32 : 64;
  s.info = fmt::format("pairs={}", kv.size());
  return s;
}

}  // namespace kvz
