#include "eval/methods.h"

#include <map>

#include "core/error.h"
#include "kv/policy.h"
#include "kv/press.h"

namespace kvz {

namespace {

HeadScores kvzip_scores(KvzipContext& ctx, const ProgressFn& progress) { return ctx.score(progress); }

EvalMethod kvzip_level(const std::string& name, PruneLevel level, const EvalMethodEnv& env) {
  EvalMethod m;
  m.name = name;
  m.scorer = "kvzip";
  m.score = kvzip_scores;
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

// Any other registered press (kv/press.h), query-agnostic: scored once per sample on the
// full cache, pruned per ratio at the method's own default level with its per-layer budgets
// (PyramidKV). Default parameters.
EvalMethod press_method(const MethodInfo& mi, const EvalMethodEnv& env) {
  EvalMethod m;
  m.name = mi.name;
  m.scorer = mi.name;
  std::map<std::string, std::string> params;
  if (mi.name == "kvzap") params["dir"] = env.kvzap_dir;
  std::shared_ptr<Press> press = make_press(mi.name, params);
  m.score = [press](KvzipContext& ctx, const ProgressFn& progress) { return ctx.score(*press, "", progress); };
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

}  // namespace

std::vector<std::string> known_methods() {
  std::vector<std::string> k = {"pair (kvzip, kvzip-pair)", "pair-uniform (kvzip-uniform)", "head (kvzip-head)"};
  for (const MethodInfo& mi : press_registry())
    if (mi.name != "kvzip") k.push_back(mi.name);
  return k;
}

EvalMethod resolve_method(const std::string& name, const EvalMethodEnv& env) {
  if (name == "pair" || name == "kvzip" || name == "kvzip-pair") return kvzip_level("pair", PruneLevel::Pair, env);
  if (name == "pair-uniform" || name == "kvzip-uniform")
    return kvzip_level("pair-uniform", PruneLevel::PairUniform, env);
  if (name == "head" || name == "kvzip-head") return kvzip_level("head", PruneLevel::Head, env);
  for (const MethodInfo& mi : press_registry())
    if (mi.name == name) return press_method(mi, env);
  std::string known;
  for (const auto& k : known_methods()) known += (known.empty() ? "" : ", ") + k;
  fail("unknown method '{}' (known: {})", name, known);
}

}  // namespace kvz
