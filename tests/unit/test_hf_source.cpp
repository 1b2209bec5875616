// HF folders: the synthetic llama written as a sharded safetensors folder (HF names, HF
// shapes, q/k rows un-permuted to HF's rotate-half layout) must give the same logits as
// the GGUF it came from; --convert q8_0 stays close; hostile folders give clear errors.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "model/identity.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "model/hf_source.h"
#include "model/session.h"
#include "synthetic_model.h"

using namespace kvz;
namespace fs = std::filesystem;

namespace {

std::vector<float> run(const Model& m, const std::vector<int32_t>& ids) {
  ThreadPool pool(1);
  Session s(m, pool);
  std::vector<float> logits;
  s.forward(ids, LogitsMode::All, &logits);
  return logits;
}

}  // namespace

TEST(HfSource, ShardedFolderMatchesGguf) {
  for (const DType wt : {DType::F32, DType::F16}) {
    test::SyntheticSpec spec;
    spec.wtype = wt;
    spec.tied = wt == DType::F32;
    test::HfFolder f(std::string("sharded_") + type_name(wt));
    test::write_hf_copy(spec, f);
    auto mg = Model::load(f.gguf_path);
    auto mh = Model::load(f.dir.string());
    EXPECT_EQ(mh->hp().rope_style, RopeStyle::Neox);
    EXPECT_EQ(mg->hp().rope_style, RopeStyle::Interleaved);
    EXPECT_EQ(mh->hp().tied_embeddings, spec.tied);
    EXPECT_EQ(mh->tokenizer().encode("ab ab<|im_end|>"), mg->tokenizer().encode("ab ab<|im_end|>"));
    EXPECT_TRUE(mh->tokenizer().is_eog(mh->tokenizer().find("<|im_end|>")));
    const std::vector<int32_t> ids = {3, 70, 256, 1, 99, 42, 42, 7, 200, 13};
    const auto lg = run(*mg, ids), lh = run(*mh, ids);
    ASSERT_EQ(lg.size(), lh.size());
    double max_err = 0;
    for (size_t i = 0; i < lg.size(); ++i) max_err = std::max<double>(max_err, std::abs(lg[i] - lh[i]));
    // Same weights, same arithmetic; only which rows RoPE pairs differs, so the results are
    // identical up to f32 summation order.
    EXPECT_LT(max_err, 1e-4) << type_name(wt);
    // Saved contexts are keyed by the fingerprint: stable per folder, distinct from the GGUF.
    EXPECT_EQ(model_fingerprint(*mh), model_fingerprint(*Model::load(f.dir.string())));
    EXPECT_NE(model_fingerprint(*mh), model_fingerprint(*mg));

    // --convert q8_0: every weight within half a quantization step d = amax / 127 per block
    // of 32, plus 127 times the fp16 rounding of d (2^-11 d), and logits within a few
    // percent of their range.
    LoadOptions q8;
    q8.convert = DType::Q8_0;
    auto mq = Model::load(f.dir.string(), {}, q8);
    const WeightView& wq8 = mq->w().layers[0].w_up;
    const WeightView& wf = mh->w().layers[0].w_up;
    ASSERT_EQ(wq8.type, DType::Q8_0);
    std::vector<float> rq(wf.n_in), rf(wf.n_in);
    for (int64_t r = 0; r < wf.n_out; ++r) {
      get_row(wq8, r, rq.data());  // in whatever layout the loader left it (interleaved)
      get_row(wf, r, rf.data());
      for (int64_t b = 0; b < wf.n_in; b += 32) {
        float amax = 0;
        for (int i = 0; i < 32; ++i) amax = std::max(amax, std::abs(rf[b + i]));
        for (int i = 0; i < 32; ++i) ASSERT_LE(std::abs(rq[b + i] - rf[b + i]), amax / 127 * (0.5f + 127.0f / 2048) + 1e-7f);
      }
    }
    const auto lq = run(*mq, ids);
    double q_err = 0, range = 0;
    for (size_t i = 0; i < lg.size(); ++i) {
      q_err = std::max<double>(q_err, std::abs(lg[i] - lq[i]));
      range = std::max<double>(range, std::abs(lg[i]));
    }
    std::printf("%s: q8_0 |dlogit| max %.3f of logit range %.1f\n", type_name(wt), q_err, range);
    EXPECT_LT(q_err, 0.05 * range);
  }
}

TEST(HfSource, HostileFolders) {
  test::SyntheticSpec spec;
  test::HfFolder f("hostile");
  test::write_hf_copy(spec, f);
  auto error_of = [&]() -> std::string {
    try {
      Model::load(f.dir.string());
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  ASSERT_EQ(error_of(), "");
  const std::string config = std::ifstream(f.dir / "config.json").rdbuf() ? [&] {
    std::ifstream in(f.dir / "config.json");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }() : "";
  auto cfg = nlohmann::json::parse(config);

  auto with_config = [&](nlohmann::json c, const std::string& want) {
    f.write("config.json", c.dump());
    const std::string e = error_of();
    EXPECT_NE(e.find(want), std::string::npos) << e;
    f.write("config.json", config);
  };
  auto c = cfg;
  c["model_type"] = "mamba";
  with_config(c, "model_type 'mamba' is not supported");
  c = cfg;
  c["tie_word_embeddings"] = false;
  with_config(c, "no lm_head.weight");
  c = cfg;
  c["num_hidden_layers"] = "two";
  with_config(c, "block_count");
  c = cfg;
  c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  with_config(c, "rope scaling 'yarn' is not supported");

  c = cfg;
  c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};  // the band limits are missing
  with_config(c, "rope scaling 'llama3' needs");
  c = cfg;
  c["use_sliding_window"] = true;
  with_config(c, "sliding-window attention");
  c = cfg;
  c["layer_types"] = {"full_attention", "sliding_attention"};
  with_config(c, "sliding-window attention");
  c = cfg;
  c["layer_types"] = {"full_attention", "linear_attention"};
  with_config(c, "'linear_attention' is not a layer kind");

  // Index naming a file outside the folder, or a missing shard.
  const std::string index = [&] {
    std::ifstream in(f.dir / "model.safetensors.index.json");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  auto ix = nlohmann::json::parse(index);
  ix["weight_map"]["model.norm.weight"] = "../../etc/passwd";
  f.write("model.safetensors.index.json", ix.dump());
  EXPECT_NE(error_of().find("not a plain file name"), std::string::npos);
  ix["weight_map"]["model.norm.weight"] = "model-00003-of-00002.safetensors";
  f.write("model.safetensors.index.json", ix.dump());
  EXPECT_NE(error_of().find("model-00003-of-00002.safetensors: cannot open"), std::string::npos) << error_of();
  f.write("model.safetensors.index.json", index);

  // An unknown tensor, and an integer tensor.
  f.write("model-00002-of-00002.safetensors",
          safetensors_bytes({{"model.layers.1.mlp.experts.weight", "F32", {2}, std::vector<uint8_t>(8)}}));
  EXPECT_NE(error_of().find("has no mapping"), std::string::npos) << error_of();
  f.write("model-00002-of-00002.safetensors",
          safetensors_bytes({{"model.layers.1.input_layernorm.weight", "I32", {64}, std::vector<uint8_t>(256)}}));
  EXPECT_NE(error_of().find("dtype I32"), std::string::npos) << error_of();
  fs::remove(f.dir / "config.json");
  EXPECT_NE(error_of().find("no config.json"), std::string::npos);
}

// Llama 3.x rope scaling from config.json becomes per-frequency divisors equal to
// transformers' rule (_compute_llama3_parameters: inv_freq / factor above the low-frequency
// wavelength, interpolated in between), and a Gemma 3 config's layer_types become the
// per-layer sliding flags (not the default period of 6), with query_pre_attn_scalar kept.
TEST(HfSource, RopeScalingAndLayerKindsFromConfig) {
  test::SyntheticSpec spec;
  test::HfFolder f("config");
  test::write_hf_copy(spec, f);
  std::ifstream in(f.dir / "config.json");
  auto cfg = nlohmann::json::parse(std::string(std::istreambuf_iterator<char>(in), {}));

  auto c = cfg;
  const double base = 500000.0, factor = 8.0, lo = 1.0, hi = 4.0, ctx = 64.0;
  c["rope_theta"] = base;
  c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", factor}, {"low_freq_factor", lo},
                       {"high_freq_factor", hi}, {"original_max_position_embeddings", ctx}};
  f.write("config.json", c.dump());
  auto m = Model::load(f.dir.string());
  ASSERT_TRUE(m->hp().has_rope_freqs);
  const int dim = m->hp().rope_dim;
  ASSERT_EQ(m->w().rope_freqs.size(), static_cast<size_t>(dim / 2));
  int n_kept = 0, n_scaled = 0, n_mid = 0;
  for (int i = 0; i < dim / 2; ++i) {
    const double inv = 1.0 / std::pow(base, 2.0 * i / dim), wavelen = 2 * M_PI / inv;
    double inv_new = inv;
    if (wavelen > ctx / lo) {
      inv_new = inv / factor;
      ++n_scaled;
    } else if (wavelen >= ctx / hi) {
      const double smooth = (ctx / wavelen - lo) / (hi - lo);
      inv_new = (1 - smooth) * inv / factor + smooth * inv;
      ++n_mid;
    } else {
      ++n_kept;
    }
    EXPECT_NEAR(m->w().rope_freqs[i], inv / inv_new, 1e-5 * inv / inv_new) << "frequency " << i;
  }
  EXPECT_GT(n_kept, 0);  // the synthetic head size puts frequencies in every band
  EXPECT_GT(n_mid, 0);
  EXPECT_GT(n_scaled, 0);

  c = cfg;
  c["model_type"] = "gemma3_text";
  c["sliding_window"] = 16;
  c["query_pre_attn_scalar"] = 32;
  c["layer_types"] = {"full_attention", "sliding_attention"};
  f.write("config.json", c.dump());
  auto src = HfSource::open(f.dir.string());
  const GgufValue* v = src->find("gemma3.attention.sliding_window_pattern");
  ASSERT_TRUE(v && v->is_array());
  EXPECT_EQ(std::get<std::vector<bool>>(v->v), (std::vector<bool>{false, true}));
  EXPECT_EQ(src->get_float("gemma3.attention.query_pre_attn_scalar"), 32.0);
}
