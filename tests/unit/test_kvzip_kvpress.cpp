// KVzip score parity with an independent implementation: kvpress's KVzipPress (PyPI kvpress,
// HF transformers, float32) on the real SmolLM2-135M-Instruct Q4_1 model.
// Fixture: tests/golden/gen/gen_kvzip_kvpress_fixture.py (its docstring lists every setting).
//
// Comparable setup. Both sides see the same ids: our ChatML KVzip prefix (n_sys tokens) ++ a
// ~3,000-token generated context. Differences removed by construction:
//   * kvpress runs with prefix_length = n_sys, our postfix ids, and n_sink = n_sys, so its
//     scoring softmax covers the same keys as ours (whole system prompt + chunk + causal repeat).
//   * chunk 2048 on both sides (ours defaults to the reference's 2000).
//   * our driver is fed kvpress's repeat-prompt ids (kvpress drops the trailing space of
//     "starting with "); the test checks that this space is the only template difference.
// Excluded from the comparison: the system-prompt positions (kvpress forces them to max + 1 as
// sinks; we never score them). Every context token is compared.
// Remaining differences (not removable): our forward uses the Q4_1 weights through our own
// kernels and an f16 KV cache, kvpress uses the same weights dequantized to float32 with an
// f32 cache.
//
// Metrics: Spearman rank correlation of the n_ctx scores of each (layer, KV head), mean and
// min over the 90 heads; overlap |ours ∩ kvpress| / k of the global top-k pairs at keep ratio
// 0.3, k = the number of context pairs kvpress itself kept; the median |ln ours - ln kvpress|
// over kvpress's kept pairs (catches a bug that keeps ranks but distorts values, e.g. a wrong
// softmax denominator).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>

#include "core/fp16.h"
#include "kv/kvzip_context.h"
#include "kv/presses/kvzip.h"
#include "rank_stats.h"
#include "test_paths.h"

using namespace kvz;

namespace {

// Thresholds. Measured (committed fixture, 2973 context tokens, 90 heads): Spearman mean
// 0.9988, min 0.9920 (layer 18 head 2; the five lowest heads are all in layers 17-20), top-k
// overlap 0.9879, median |d ln score| 0.040 on kvpress's kept pairs. The residual is the
// engines' forward-pass difference (Q4_1 kernels + f16 KV cache vs dequantized f32), which
// the llama.cpp parity test already shows to be this model's noise floor. Independent noise
// estimate (fixture "noise", printed by the test): kvpress against itself, bf16 vs f32 model,
// gives Spearman mean 0.9992, min 0.9954, overlap 0.9906, median |d ln| 0.031 - the same
// order as our gap, so rounding alone explains it. Bounds sit ~4x our measured gap from 1 and
// 6-12x the bf16 gap (0.99 / 0.97 / 0.95), and ~4x the measured ln value, so rounding passes,
// while structural errors move whole heads: kvpress with chunk 2000 instead of 2048 (shifted
// chunk key sets) gives Spearman mean 0.973, min 0.918, overlap 0.947 and fails. Not caught:
// dropping system-prompt keys 4..28 from the softmax (kvpress n_sink = 4 gives 0.9989 / 0.985 /
// 0.987), because on this model token 0 holds nearly all the sink mass.
// The short fixture (612 context tokens, chunk 256): Spearman mean 0.9986, min 0.9942, overlap
// 0.9897, median |d ln| 0.032; kvpress bf16 vs f32 0.9993 / 0.9975 / 0.9939 / 0.022. The same
// bounds still fail the structural variants there: chunk 250 instead of 256 gives 0.946 / 0.744 /
// 0.958, and n_sink = 4 gives 0.990 / 0.920 / 0.966 (shorter context, more sink mass beyond token 0).
constexpr double kMinSpearmanMean = 0.99, kMinSpearmanHead = 0.97, kMinOverlap = 0.95, kMaxLnMad = 0.15;

struct Fixture {
  nlohmann::json meta;
  int n_layer = 0, n_head_kv = 0;
  int64_t n_sys = 0, n_ctx = 0, chunk = 0, kept = 0;
  std::vector<int32_t> sys_ids, postfix_ids, ctx_ids, first_ids, next_ids;
  std::vector<float> ln_scores;  // [L][H][n_ctx], ln(kvpress score), -inf for 0
};

// Under the sanitizers (KVZ_SANITIZE=1, scripts/sanitize.sh) the test reads the short fixture
// (gen_kvzip_kvpress_fixture.py --short: 612 context tokens, chunk 256, so three chunks and the
// cue of the later repeat prompts are still exercised): the 2,973-token run takes minutes there.
// The same bounds hold for both; the short fixture's own figures are beside kMinSpearmanMean.
Fixture load_fixture() {
  const std::string name = test::sanitized() ? "kvzip_kvpress_smollm2_short" : "kvzip_kvpress_smollm2";
  const std::string base = test::source_dir() + "/tests/golden/data/" + name;
  std::ifstream jf(base + ".json");
  if (!jf) throw std::runtime_error("missing fixture " + name + ".json");
  Fixture fx;
  fx.meta = nlohmann::json::parse(jf);
  const auto& m = fx.meta;
  fx.n_layer = m["n_layer"];
  fx.n_head_kv = m["n_head_kv"];
  fx.n_sys = m["n_sys"];
  fx.n_ctx = m["n_ctx"];
  fx.chunk = m["chunk"];
  fx.kept = m["kept_pairs"];
  fx.sys_ids = m["sys_ids"].get<std::vector<int32_t>>();
  fx.postfix_ids = m["postfix_ids"].get<std::vector<int32_t>>();
  fx.ctx_ids = m["ctx_ids"].get<std::vector<int32_t>>();
  fx.first_ids = m["repeat_first_ids"].get<std::vector<int32_t>>();
  fx.next_ids = m["repeat_next_ids"].get<std::vector<int32_t>>();
  const size_t n = static_cast<size_t>(fx.n_layer) * fx.n_head_kv * fx.n_ctx;
  std::ifstream bf(base + ".bin", std::ios::binary);
  std::vector<uint16_t> h(n);
  if (!bf.read(reinterpret_cast<char*>(h.data()), static_cast<std::streamsize>(2 * n)))
    throw std::runtime_error("fixture " + name + ".bin truncated");
  fx.ln_scores.resize(n);
  std::transform(h.begin(), h.end(), fx.ln_scores.begin(), fp16_to_f32);
  return fx;
}

using test::spearman;

// Global top-k over all (layer, head, token), ties broken by index.
std::vector<bool> topk(const std::vector<float>& s, int64_t k) {
  std::vector<int64_t> idx(s.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int64_t a, int64_t b) {
    return s[a] != s[b] ? s[a] > s[b] : a < b;
  });
  std::vector<bool> m(s.size(), false);
  for (int64_t i = 0; i < k; ++i) m[idx[i]] = true;
  return m;
}

std::vector<int32_t> enc(const Model& model, const std::string& s) {
  return model.tokenizer().encode(s, /*add_special=*/false, /*parse_special=*/true);
}

}  // namespace

TEST(KvzipKvpress, ScoresMatchKvpressKVzipPress) {
  if (!test::file_exists(test::smollm2_path()))
    GTEST_SKIP() << "model not found at " << test::smollm2_path() << "; run scripts/pull-model.sh smollm2-135m";
  const Fixture fx = load_fixture();
  const auto t0 = std::chrono::steady_clock::now();
  auto model = Model::load(test::smollm2_path());
  ASSERT_EQ(model->hp().n_layer, fx.n_layer);
  ASSERT_EQ(model->hp().n_head_kv, fx.n_head_kv);
  ThreadPool pool(2);
  ContextOptions opt;
  opt.scoring.chunk = fx.chunk;
  KvzipContext ctx(*model, pool, opt);

  // The fixture's ids are the ids our engine makes: same prefix and postfix, and the repeat
  // prompts differ only by kvpress's missing trailing space.
  ASSERT_EQ(ctx.n_sys(), fx.n_sys);
  ASSERT_EQ(enc(*model, ctx.tmpl().prefix), fx.sys_ids);
  ASSERT_EQ(enc(*model, ctx.tmpl().postfix), fx.postfix_ids);
  ASSERT_EQ(enc(*model, ctx.tmpl().repeat_first), fx.first_ids);
  const std::string& next = ctx.tmpl().repeat_next;
  ASSERT_EQ(next.back(), ' ');
  ASSERT_EQ(enc(*model, next.substr(0, next.size() - 1)), fx.next_ids);

  ctx.prefill_ids(fx.ctx_ids);
  KvzipRepeatPrompt rp;
  rp.first = fx.first_ids;
  rp.next = fx.next_ids;
  rp.postfix = fx.postfix_ids;
  rp.n_cue = fx.meta["n_cue"];
  KvzipScoreOptions so;
  so.chunk = fx.chunk;
  const HeadScores ours = kvzip_score(ctx.session(), ctx.n_sys(), fx.ctx_ids, rp, so);
  ASSERT_EQ(ours.n_ctx, fx.n_ctx);

  // Per-head rank agreement.
  const int L = fx.n_layer, H = fx.n_head_kv;
  const int64_t n = fx.n_ctx;
  std::vector<double> rho;
  for (int il = 0; il < L; ++il)
    for (int ih = 0; ih < H; ++ih) {
      const size_t off = (static_cast<size_t>(il) * H + ih) * n;
      const double r = spearman(ours.v.data() + off, fx.ln_scores.data() + off, n);
      rho.push_back(r);
    }
  std::vector<int> by_rho(rho.size());
  std::iota(by_rho.begin(), by_rho.end(), 0);
  std::sort(by_rho.begin(), by_rho.end(), [&](int a, int b) { return rho[a] < rho[b]; });
  for (int i = 0; i < 5; ++i)
    std::printf("  low head: layer %2d head %d spearman %.4f\n", by_rho[i] / H, by_rho[i] % H, rho[by_rho[i]]);
  const double rho_mean = std::accumulate(rho.begin(), rho.end(), 0.0) / static_cast<double>(rho.size());
  const double rho_min = rho[by_rho[0]];

  // Kept sets at the same budget, and value agreement on kvpress's kept pairs.
  const std::vector<bool> keep_ours = topk(ours.v, fx.kept), keep_ref = topk(fx.ln_scores, fx.kept);
  int64_t both = 0;
  std::vector<double> dln;
  for (size_t i = 0; i < keep_ours.size(); ++i) {
    both += keep_ours[i] && keep_ref[i];
    if (keep_ref[i]) dln.push_back(std::abs(std::log(std::max(ours.v[i], 1e-45f)) - fx.ln_scores[i]));
  }
  const double overlap = static_cast<double>(both) / static_cast<double>(fx.kept);
  std::nth_element(dln.begin(), dln.begin() + dln.size() / 2, dln.end());
  const double ln_mad = dln[dln.size() / 2];

  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("KVzip vs kvpress (%lld ctx tokens, %d heads): spearman mean %.4f min %.4f; "
              "top-%lld overlap %.4f; median |d ln score| on kept %.4f; %.1f s\n",
              static_cast<long long>(n), L * H, rho_mean, rho_min, static_cast<long long>(fx.kept),
              overlap, ln_mad, secs);
  const nlohmann::json noise = fx.meta.value("noise", nlohmann::json::object());  // named: items() must not outlive it
  for (const auto& [name, v] : noise.items())
    std::printf("kvpress against itself, %s: spearman mean %.4f min %.4f, overlap %.4f, median |d ln| %.4f\n",
                name.c_str(), v["spearman_mean"].get<double>(), v["spearman_min"].get<double>(),
                v["topk_overlap"].get<double>(), v["ln_mad_kept"].get<double>());

  // Bounds and their reasons: beside kMinSpearmanMean above.
  EXPECT_GT(rho_mean, kMinSpearmanMean);
  EXPECT_GT(rho_min, kMinSpearmanHead);
  EXPECT_GT(overlap, kMinOverlap);
  EXPECT_LT(ln_mad, kMaxLnMad);
}
