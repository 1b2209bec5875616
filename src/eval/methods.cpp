#include "eval/methods.h"

#include "core/error.h"
#include "kv/policy.h"

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

}  // namespace

std::vector<std::string> known_methods() {
  return {"pair (kvzip, kvzip-pair)", "pair-uniform (kvzip-uniform)", "head (kvzip-head)"};
}

EvalMethod resolve_method(const std::string& name, const EvalMethodEnv& env) {
  if (name == "pair" || name == "kvzip" || name == "kvzip-pair") return kvzip_level("pair", PruneLevel::Pair, env);
  if (name == "pair-uniform" || name == "kvzip-uniform")
    return kvzip_level("pair-uniform", PruneLevel::PairUniform, env);
  if (name == "head" || name == "kvzip-head") return kvzip_level("head", PruneLevel::Head, env);
  std::string known;
  for (const auto& k : known_methods()) known += (known.empty() ? "" : ", ") + k;
  fail("unknown method '{}' (known: {})", name, known);
}

}  // namespace kvz
