// KVzap against an independent implementation, kvpress (KVzapModel, KVzapPress); fixture:
// tests/golden/gen/gen_kvzap_kvpress_fixture.py (its docstring lists every setting).
//  1. Checkpoints written by kvpress's own save_pretrained (tiny shapes, committed) load with
//     our loader and predict what kvpress predicted; our writer produces the same tensor
//     names, shapes, dtypes and config fields, so our files load in kvpress.
//  2. KVzapPress's scores on the real SmolLM2-135M-Instruct (HF float32 copy) with surrogate
//     weights made from a formula on both sides (no trained weights committed), against our
//     `kvzap` press: the right hidden state (the attention input after the input RMSNorm) in
//     the right layer, through the same surrogate arithmetic. Remaining difference: our forward
//     uses the Q4_1 weights through our own kernels, kvpress the same weights in float32.
//  3. KVzip+ (the quantity the surrogates learn; the training targets share its arithmetic,
//     kvzap/targets.cpp) against kvpress's KVzipPress(kvzip_plus_normalization=True).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>

#include "core/error.h"
#include "kv/kvzap_model.h"
#include "kv/kvzip_context.h"
#include "kv/press.h"
#include "rank_stats.h"
#include "test_paths.h"

using namespace kvz;
using json = nlohmann::json;

namespace {

const std::string kBase = "/tests/golden/data/kvzap_kvpress_";

// The SmolLM2 fixture: under the sanitizers (KVZ_SANITIZE=1) the short one,
// gen_kvzap_kvpress_fixture.py --short (320 context tokens instead of 1,024; the same tiny part).
std::string smollm2_name() { return test::sanitized() ? "smollm2_short" : "smollm2"; }

json fixture() {
  std::ifstream f(test::source_dir() + kBase + smollm2_name() + ".json");
  KVZ_ASSERT(f.good(), "missing fixture kvzap_kvpress_{}.json", smollm2_name());
  return json::parse(f);
}

// safetensors header: tensor name -> {dtype, shape}.
json safetensors_header(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  std::string h(n, '\0');
  f.read(h.data(), static_cast<std::streamsize>(n));
  const json all = json::parse(h);
  json out = json::object();
  for (const auto& [k, v] : all.items())
    if (k != "__metadata__") out[k] = {{"dtype", v["dtype"]}, {"shape", v["shape"]}};
  return out;
}

// The generator's weight formula (see its docstring).
uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
void fill_formula(std::vector<float>& v, int t, int layer, int fan_in) {
  const double r = 1.0 / std::sqrt(static_cast<double>(fan_in));
  for (size_t i = 0; i < v.size(); ++i) {
    const uint64_t key = (uint64_t(t) << 56) | (uint64_t(layer) << 40) | i;
    const double u = static_cast<double>(splitmix64(key) >> 40);
    v[i] = static_cast<float>((u - 8388608.0) / 8388608.0 * r);
  }
}
// layer_of(il): which layer's formula weights layer il gets (a control shifts it); heads in
// the order perm_heads gives (a control rotates them).
KvzapModel formula_model(KvzapModel::Kind kind, int L, int D, int H, int F, int layer_shift = 0, int head_rot = 0) {
  KvzapModel m = KvzapModel::zeros(kind, L, D, H, F);
  for (int il = 0; il < L; ++il) {
    const int src = (il + layer_shift) % L;
    KvzapLayer& l = m.layer(il);
    const int out_in = kind == KvzapModel::Kind::Mlp ? F : D;  // fan-in of the output rows
    std::vector<float> w_out(static_cast<size_t>(H) * out_in), b_out(H);
    if (kind == KvzapModel::Kind::Linear) {
      fill_formula(w_out, 0, src, D);
      fill_formula(b_out, 1, src, D);
    } else {
      fill_formula(l.w1, 0, src, D);
      fill_formula(l.b1, 1, src, D);
      fill_formula(w_out, 2, src, F);
      fill_formula(b_out, 3, src, F);
    }
    std::vector<float>& w = kind == KvzapModel::Kind::Linear ? l.w1 : l.w2;
    std::vector<float>& b = kind == KvzapModel::Kind::Linear ? l.b1 : l.b2;
    for (int h = 0; h < H; ++h) {
      const int hs = (h + head_rot) % H;
      std::copy_n(w_out.begin() + static_cast<int64_t>(hs) * out_in, out_in, w.begin() + static_cast<int64_t>(h) * out_in);
      b[h] = b_out[hs];
    }
  }
  return m;
}

}  // namespace

TEST(KvzapKvpress, KvpressCheckpointsLoadAndPredictAlike) {
  const json tiny = fixture()["tiny"];
  for (const char* kind : {"linear", "mlp"}) {
    SCOPED_TRACE(kind);
    const json& e = tiny[kind];
    const std::string dir = test::source_dir() + kBase + "tiny/" + kind;
    const KvzapModel m = KvzapModel::load_unchecked(dir);
    EXPECT_EQ(m.kind(), std::string(kind) == "mlp" ? KvzapModel::Kind::Mlp : KvzapModel::Kind::Linear);
    const auto x = e["x"].get<std::vector<std::vector<std::vector<float>>>>();  // [token][module][d_in]
    const auto y = e["y"].get<std::vector<std::vector<std::vector<float>>>>();  // [token][module][n_out]
    ASSERT_EQ(m.n_layer(), static_cast<int>(x[0].size()));
    const int n = static_cast<int>(x.size()), d = m.d_in(), h = m.n_out();
    std::vector<float> scratch;
    for (int il = 0; il < m.n_layer(); ++il) {
      std::vector<float> in(static_cast<size_t>(n) * d), out(static_cast<size_t>(n) * h);
      for (int t = 0; t < n; ++t) std::copy(x[t][il].begin(), x[t][il].end(), in.begin() + static_cast<int64_t>(t) * d);
      m.predict(il, in.data(), n, out.data(), scratch);
      for (int t = 0; t < n; ++t)
        for (int k = 0; k < h; ++k) EXPECT_NEAR(out[t * h + k], y[t][il][k], 1e-5) << "layer " << il << " token " << t;
    }
    // Our writer: the same tensors and config fields as kvpress's save_pretrained.
    const std::string ours = (std::filesystem::temp_directory_path() / (std::string("kvz-kvzap-layout-") + kind)).string();
    m.save_untagged(ours);
    EXPECT_EQ(safetensors_header(ours + "/model.safetensors"), e["tensors"]);
    const json cfg = json::parse(std::ifstream(ours + "/config.json"));
    for (const auto& [k, v] : e["config"].items()) EXPECT_EQ(cfg.value(k, json()), v) << k;
    std::filesystem::remove_all(ours);
  }
}

// Bounds: those of the press parity test (test_presses_kvpress.cpp). Measured (committed
// fixture, 1,024 context tokens, 90 heads), ours vs kvpress f32 -> kvpress bf16 vs f32 (the
// fixture's noise_bf16), as Spearman mean / min, kept-half overlap mean / min, max |diff|:
//   linear  0.99957 / 0.99893, 0.9919 / 0.9824, 0.033  ->  0.99981 / 0.99955, 0.9949 / 0.9844, 0.017
//   mlp     0.99954 / 0.99908, 0.9917 / 0.9785, 0.010  ->  0.99975 / 0.99935, 0.9935 / 0.9805, 0.007
// i.e. the size of bf16 rounding inside kvpress: the engines' forward-pass difference. The
// controls (layer il given layer il+1's surrogate; KV heads rotated by one) score Spearman
// about 0 and overlap about 0.5: they must fail.
TEST(KvzapKvpress, PressScoresMatchKvpress) {
  if (!test::file_exists(test::smollm2_path()))
    GTEST_SKIP() << "model not found at " << test::smollm2_path() << "; run scripts/pull-model.sh smollm2-135m";
  const json meta = fixture();
  const int L = meta["n_layer"], H = meta["n_head_kv"], D = meta["n_embd"];
  const int64_t n = meta["n_ctx"];
  const size_t per = static_cast<size_t>(L) * H * n;
  std::ifstream bf(test::source_dir() + kBase + smollm2_name() + ".bin", std::ios::binary);
  std::vector<float> ref(2 * per);
  ASSERT_TRUE(bf.read(reinterpret_cast<char*>(ref.data()), static_cast<std::streamsize>(ref.size() * 4)));

  auto model = Model::load(test::smollm2_path());
  ASSERT_EQ(model->hp().n_layer, L);
  ASSERT_EQ(model->hp().n_head_kv, H);
  ASSERT_EQ(model->hp().n_embd, D);
  ThreadPool pool(2);
  KvzipContext ctx(*model, pool);
  ASSERT_EQ(ctx.n_sys(), meta["n_sys"].get<int64_t>());
  ctx.prefill_ids(meta["ctx_ids"].get<std::vector<int32_t>>());

  struct Metrics {
    double rho_mean, rho_min, ov_mean, ov_min, max_abs;
  };
  auto measure = [&](const char* kind, int layer_shift, int head_rot) {
    const json& e = meta["surrogates"][kind];
    const bool mlp = std::string(kind) == "mlp";
    const int F = mlp ? e["hidden_dim"].get<int>() : 0;
    const std::string dir = (std::filesystem::temp_directory_path() / (std::string("kvz-kvzap-kvpress-") + kind)).string();
    formula_model(mlp ? KvzapModel::Kind::Mlp : KvzapModel::Kind::Linear, L, D, H, F, layer_shift, head_rot)
        .save(dir, *model);
    auto press = make_press("kvzap", {{"dir", dir}});
    const HeadScores& ours = ctx.score(*press, "");
    KVZ_ASSERT(ours.n_ctx == n, "scored {} tokens, fixture has {}", ours.n_ctx, n);
    const float* r0 = ref.data() + e["offset_values"].get<size_t>();
    std::vector<double> rho, ov;
    double max_abs = 0;
    for (int il = 0; il < L; ++il)
      for (int ih = 0; ih < H; ++ih) {
        const float* o = ours.head(il, ih);
        const float* r = r0 + (static_cast<size_t>(il) * H + ih) * n;
        rho.push_back(test::spearman(o, r, n));
        ov.push_back(test::overlap(test::top(o, n, n / 2), test::top(r, n, n / 2)));
        for (int64_t i = 0; i < n; ++i) max_abs = std::max(max_abs, static_cast<double>(std::fabs(o[i] - r[i])));
      }
    std::filesystem::remove_all(dir);
    return Metrics{std::accumulate(rho.begin(), rho.end(), 0.0) / static_cast<double>(rho.size()),
                   *std::min_element(rho.begin(), rho.end()),
                   std::accumulate(ov.begin(), ov.end(), 0.0) / static_cast<double>(ov.size()),
                   *std::min_element(ov.begin(), ov.end()), max_abs};
  };
  constexpr double kRhoMean = 0.998, kRhoMin = 0.99, kOvMean = 0.97, kOvMin = 0.93;
  auto passes = [&](const Metrics& m) {
    return m.rho_mean >= kRhoMean && m.rho_min >= kRhoMin && m.ov_mean >= kOvMean && m.ov_min >= kOvMin;
  };
  std::printf("%-7s %-22s %-22s %-8s %s\n", "kvzap", "spearman mean / min", "overlap mean / min", "max |d|",
              "kvpress bf16-vs-f32: spearman mean / min, overlap mean / min, max |d|");
  for (const char* kind : {"linear", "mlp"}) {
    SCOPED_TRACE(kind);
    const Metrics m = measure(kind, 0, 0);
    const json& nz = meta["noise_bf16"][kind];
    std::printf("%-7s %.5f / %.5f      %.4f / %.4f        %.4f   %.5f / %.5f, %.4f / %.4f, %.4f\n", kind, m.rho_mean,
                m.rho_min, m.ov_mean, m.ov_min, m.max_abs, nz["spearman_mean"].get<double>(),
                nz["spearman_min"].get<double>(), nz["overlap_mean"].get<double>(), nz["overlap_min"].get<double>(),
                nz["max_abs_diff"].get<double>());
    EXPECT_GE(m.rho_mean, kRhoMean);
    EXPECT_GE(m.rho_min, kRhoMin);
    EXPECT_GE(m.ov_mean, kOvMean);
    EXPECT_GE(m.ov_min, kOvMin);
    if (std::string(kind) != "mlp") continue;
    // Plausible slips the bounds must catch (on one kind: each is a scoring pass).
    const Metrics shifted = measure(kind, 1, 0), rotated = measure(kind, 0, 1);
    std::printf("control %s, layer il gets layer il+1's surrogate: %.4f / %.4f, %.4f / %.4f  %s\n", kind,
                shifted.rho_mean, shifted.rho_min, shifted.ov_mean, shifted.ov_min,
                passes(shifted) ? "PASSES (bad)" : "fails (good)");
    std::printf("control %s, KV heads rotated by one:         %.4f / %.4f, %.4f / %.4f  %s\n", kind, rotated.rho_mean,
                rotated.rho_min, rotated.ov_mean, rotated.ov_min, passes(rotated) ? "PASSES (bad)" : "fails (good)");
    EXPECT_FALSE(passes(shifted));
    EXPECT_FALSE(passes(rotated));
  }
}

// KVzip+, what KVzap learns: our kvzip_plus press against kvpress's KVzipPress with
// kvzip_plus_normalization on the same ids (one repeat chunk, sink = the system prompt as in
// test_kvzip_kvpress.cpp). Bounds as for the presses; plain KVzip scored against the KVzip+
// reference is the control (it must fail: the ||W_O v|| / ||h|| weights reorder the pairs).
TEST(KvzapKvpress, KvzipPlusMatchesKvpress) {
  if (!test::file_exists(test::smollm2_path()))
    GTEST_SKIP() << "model not found at " << test::smollm2_path() << "; run scripts/pull-model.sh smollm2-135m";
  const json meta = fixture();
  const json& e = meta["surrogates"]["kvzip_plus"];
  const int L = meta["n_layer"], H = meta["n_head_kv"];
  const int64_t n = meta["n_ctx"];
  const size_t per = static_cast<size_t>(L) * H * n;
  std::vector<float> ref(per);
  {
    std::ifstream bf(test::source_dir() + kBase + smollm2_name() + ".bin", std::ios::binary);
    bf.seekg(static_cast<std::streamoff>(e["offset_values"].get<size_t>() * 4));
    ASSERT_TRUE(bf.read(reinterpret_cast<char*>(ref.data()), static_cast<std::streamsize>(per * 4)));
  }
  auto model = Model::load(test::smollm2_path());
  ThreadPool pool(2);
  KvzipContext ctx(*model, pool);
  ASSERT_EQ(ctx.n_sys(), e["n_sink"].get<int64_t>());
  const auto ctx_ids = meta["ctx_ids"].get<std::vector<int32_t>>();
  // The one repeat input kvpress fed is ours: repeat prompt ++ postfix ++ the context.
  ASSERT_EQ(e["repeat_inputs"].size(), 1u);
  std::vector<int32_t> x = model->tokenizer().encode(ctx.tmpl().repeat_first, false, true);
  const auto post = meta["postfix_ids"].get<std::vector<int32_t>>();
  x.insert(x.end(), post.begin(), post.end());
  x.insert(x.end(), ctx_ids.begin(), ctx_ids.end());
  ASSERT_EQ(x, e["repeat_inputs"][0].get<std::vector<int32_t>>());
  ctx.prefill_ids(ctx_ids);

  auto measure = [&](const char* method) {
    auto press = make_press(method, {{"chunk", std::to_string(e["chunk"].get<int64_t>())}});
    const HeadScores& s = ctx.score(*press, "");
    std::vector<float> ln(per);
    for (size_t i = 0; i < per; ++i) ln[i] = std::log(std::max(s.v[i], 1e-45f));
    std::vector<double> rho, ov;
    for (int il = 0; il < L; ++il)
      for (int ih = 0; ih < H; ++ih) {
        const size_t off = (static_cast<size_t>(il) * H + ih) * n;
        rho.push_back(test::spearman(ln.data() + off, ref.data() + off, n));
        ov.push_back(test::overlap(test::top(ln.data() + off, n, n / 2), test::top(ref.data() + off, n, n / 2)));
      }
    return std::array<double, 4>{std::accumulate(rho.begin(), rho.end(), 0.0) / static_cast<double>(rho.size()),
                                 *std::min_element(rho.begin(), rho.end()),
                                 std::accumulate(ov.begin(), ov.end(), 0.0) / static_cast<double>(ov.size()),
                                 *std::min_element(ov.begin(), ov.end())};
  };
  auto passes = [](const std::array<double, 4>& m) {
    return m[0] >= 0.998 && m[1] >= 0.99 && m[2] >= 0.97 && m[3] >= 0.93;
  };
  const auto plus = measure("kvzip_plus"), plain = measure("kvzip");
  const json& nz = meta["noise_bf16"]["kvzip_plus"];
  std::printf("KVzip+ vs kvpress: spearman %.5f / %.5f, overlap %.4f / %.4f (kvpress bf16-vs-f32: %.5f / %.5f, "
              "%.4f / %.4f)\n",
              plus[0], plus[1], plus[2], plus[3], nz["spearman_mean"].get<double>(), nz["spearman_min"].get<double>(),
              nz["overlap_mean"].get<double>(), nz["overlap_min"].get<double>());
  std::printf("control, plain KVzip vs kvpress KVzip+: spearman %.4f / %.4f, overlap %.4f / %.4f  %s\n", plain[0],
              plain[1], plain[2], plain[3], passes(plain) ? "PASSES (bad)" : "fails (good)");
  EXPECT_TRUE(passes(plus));
  EXPECT_FALSE(passes(plain));
}
