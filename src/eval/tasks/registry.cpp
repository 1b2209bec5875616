#include "eval/tasks/registry.h"

#include <algorithm>
#include <cstdlib>

#include "core/error.h"

namespace kvz {

const std::vector<TaskInfo>& task_registry() {
  // name, description, generator, default context tokens, easy
  static const std::vector<TaskInfo> kTasks = {
      {"needle", "needle in a haystack: one magic number, lengths {1/4, 1/2, 1} x ctx, depths 0-100%", make_needle, 2000, false},
      {"needle-easy", "needle in a haystack, shorter haystacks", make_needle, 800, true},
      {"needle-multikey", "four magic numbers for four cities; two are asked", make_needle_multikey, 2000, false},
      {"kv", "key-value retrieval from a JSON object with random UUID keys and values", make_kv_retrieval, 2000, false},
      {"kv-easy", "key-value retrieval, short word keys and 6-digit values", make_kv_retrieval, 400, true},
      {"prefix-suffix", "find the 20-character string with a given prefix and suffix", make_prefix_suffix, 2000, false},
      {"prefix-suffix-easy", "prefix-suffix retrieval, 10-character lowercase strings", make_prefix_suffix, 400, true},
      {"vt", "variable tracking: every variable bound (through a chain) to a value", make_variable_tracking, 2000, false},
      {"vt-easy", "variable tracking, chains of two", make_variable_tracking, 800, true},
      {"squad", "several questions over one generated document of facts about people", make_fact_qa, 2000, false},
      {"squad-easy", "fact questions over a shorter document", make_fact_qa, 800, true},
      {"gsm", "multi-step arithmetic word problems; the question is each story's last sentence", make_gsm, 600, false},
      {"gsm-easy", "one-step arithmetic word problems", make_gsm, 300, true},
      {"many-shot", "many-shot in-context topic classification with lettered options", make_many_shot, 2000, false},
      {"many-shot-easy", "many-shot classification, fewer examples", make_many_shot, 800, true},
      {"repoqa", "reproduce a function of a generated Python module from its description", make_repoqa, 2000, false},
      {"repoqa-easy", "reproduce a named function of a shorter module", make_repoqa, 500, true},
      {"summary-needles", "summarise a chronicle (ROUGE-L) and retrieve facts hidden in it", make_summary_needles, 2000, false},
      {"summary-needles-easy", "summary with needles, shorter chronicle", make_summary_needles, 800, true},
  };
  return kTasks;
}

const TaskInfo& find_task(const std::string& name) {
  for (const auto& t : task_registry())
    if (t.name == name) return t;
  std::string known;
  for (const auto& t : task_registry()) known += (known.empty() ? "" : ", ") + t.name;
  fail("unknown task '{}' (known: {})", name, known);
}

EvalSample make_task_sample(const TaskInfo& t, int index, TaskParams p) {
  if (p.ctx_tokens <= 0) p.ctx_tokens = t.default_ctx_tokens;
  p.easy = t.easy;
  EvalSample s = t.make(index, p);
  s.task = t.name;
  s.index = index;
  s.seed = p.seed;
  s.ctx_target = p.ctx_tokens;
  validate_sample(s, t.name);
  return s;
}

std::vector<int64_t> parse_ctx_tokens(const std::string& list) {
  std::vector<int64_t> out;
  size_t i = 0;
  while (i <= list.size()) {
    const size_t j = std::min(list.find(',', i), list.size());
    const std::string item = list.substr(i, j - i);
    i = j + 1;
    if (item.empty()) continue;
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (end == item.c_str() || *end != '\0' || v < 0 || v > (int64_t{1} << 20))
      fail("--ctx-tokens: '{}' is not a token count in [0, 1048576] (0: the task's default)", item);
    if (std::find(out.begin(), out.end(), v) != out.end()) fail("--ctx-tokens: {} is given twice", v);
    out.push_back(v);
  }
  if (out.empty()) fail("--ctx-tokens: empty list (e.g. 2000,4000,8000; 0 = each task's default)");
  return out;
}

std::vector<EvalSample> make_task_samples(const TaskInfo& t, int n, const std::vector<int64_t>& lengths,
                                          const TaskParams& p) {
  std::vector<EvalSample> out;
  for (int64_t len : lengths) {
    TaskParams q = p;
    q.ctx_tokens = len;
    for (int i = 0; i < n; ++i) out.push_back(make_task_sample(t, i, q));
  }
  return out;
}

int64_t count_tokens(const TaskParams& p, const std::string& s) { return p.count ? p.count(s) : approx_tokens(s); }

}  // namespace kvz
