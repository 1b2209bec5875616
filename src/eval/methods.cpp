#include "eval/methods.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>

#include "core/error.h"
#include "kv/policy.h"
#include "kv/press.h"

namespace kvz {

namespace {

HeadScores kvzip_scores(KvzipContext& ctx, const std::string&, const ProgressFn& progress) { return ctx.score(progress); }

EvalMethod kvzip_level(const std::string& name, PruneLevel level, const EvalMethodEnv& env) {
  EvalMethod m;
  m.name = name;
  m.scorer = "kvzip";
  m.score = kvzip_scores;
  m.positions = [](const KvzipContext& ctx, int64_t n) { return ctx.positions_needed(n, nullptr); };
  const std::vector<float> heads = env.head_scores;
  m.prune = [level, heads](KvzipContext& ctx, const HeadScores& s, double ratio) {
    if (level == PruneLevel::Head && !heads.empty()) return ctx.prune_heads(heads, ratio);
    ctx.set_scores(s);
    SelectOptions so;
    so.ratio = ratio;
    so.level = level;
    return ctx.prune(so);
  };
  return m;
}

// Any other registered press (kv/press.h): scored on the full cache (with a question when
// the runner's mode gives one), pruned per ratio at the method's own default level with its per-layer budgets
// (PyramidKV). Default parameters.
EvalMethod press_method(const MethodInfo& mi, const EvalMethodEnv& env) {
  EvalMethod m;
  m.name = mi.name;
  m.scorer = mi.name;
  std::map<std::string, std::string> params;
  if (mi.name == "kvzap") params["dir"] = env.kvzap_dir;
  std::shared_ptr<Press> press = make_press(mi.name, params);
  m.uses_question = press->uses_question();
  m.positions = [press](const KvzipContext& ctx, int64_t n) { return ctx.positions_needed(n, press.get()); };
  m.score = [press](KvzipContext& ctx, const std::string& question, const ProgressFn& progress) {
    return ctx.score(*press, question, progress);
  };
  const PruneLevel level = mi.level;
  m.prune = [press, level](KvzipContext& ctx, const HeadScores& s, double ratio) {
    ctx.set_scores(s);
    SelectOptions so;
    so.ratio = ratio;
    so.level = level;
    so.layer_ratios = press->layer_ratios(ctx.model().hp().n_layer, ctx.n_ctx(), ratio);
    return ctx.prune(so);
  };
  return m;
}

// "kvzap@TAU": KVzap's threshold rule applied to the context after a dense prefill (as
// kvpress does, docs §0.5): a pair is kept when its predicted log-score is >= TAU or its token
// is among the context's last `window`; the `ratio` is ignored (ratio_free) and the kept
// fraction reached is recorded as r_true. Shares the "kvzap" scoring pass.
EvalMethod kvzap_threshold_method(const std::string& name, float tau, const EvalMethodEnv& env) {
  EvalMethod m = press_method(method_info("kvzap"), env);
  m.name = name;
  m.ratio_free = true;
  const int64_t window = env.kvzap_window;
  m.prune = [tau, window](KvzipContext& ctx, const HeadScores& s, double) {
    HeadScores t = s;
    int64_t kept = 0;
    for (int il = 0; il < t.n_layer; ++il)
      for (int ih = 0; ih < t.n_head_kv; ++ih) {
        float* h = t.head(il, ih);
        for (int64_t c = 0; c < t.n_ctx; ++c) {
          if (c >= t.n_ctx - window) h[c] = std::numeric_limits<float>::max();  // finite: the policy refuses inf
          kept += h[c] >= tau;
        }
      }
    const auto total = static_cast<double>(t.v.size());
    ctx.set_scores(std::move(t));
    SelectOptions so;
    so.level = PruneLevel::Pair;
    so.ratio = std::max(1.0 / total, static_cast<double>(kept) / total);
    return ctx.prune(so);
  };
  return m;
}

}  // namespace

std::vector<std::string> known_methods() {
  std::vector<std::string> k = {"pair (kvzip, kvzip-pair)", "pair-uniform (kvzip-uniform)", "head (kvzip-head)"};
  for (const MethodInfo& mi : press_registry())
    if (mi.name != "kvzip") k.push_back(mi.name);
  k.push_back("kvzap@TAU (threshold)");
  return k;
}

EvalMethod resolve_method(const std::string& name, const EvalMethodEnv& env) {
  if (name == "pair" || name == "kvzip" || name == "kvzip-pair") return kvzip_level("pair", PruneLevel::Pair, env);
  if (name == "pair-uniform" || name == "kvzip-uniform")
    return kvzip_level("pair-uniform", PruneLevel::PairUniform, env);
  if (name == "head" || name == "kvzip-head") return kvzip_level("head", PruneLevel::Head, env);
  for (const MethodInfo& mi : press_registry())
    if (mi.name == name) return press_method(mi, env);
  if (name.rfind("kvzap@", 0) == 0) {
    const std::string t = name.substr(6);
    char* end = nullptr;
    const float tau = std::strtof(t.c_str(), &end);
    if (t.empty() || *end != '\0' || !std::isfinite(tau))
      fail("method '{}': expected kvzap@TAU with TAU a number (a log-score threshold such as -6)", name);
    return kvzap_threshold_method(name, tau, env);
  }
  std::string known;
  for (const auto& k : known_methods()) known += (known.empty() ? "" : ", ") + k;
  fail("unknown method '{}' (known: {})", name, known);
}

}  // namespace kvz
