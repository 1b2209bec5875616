// Qwen3 architecture parity with HF transformers on a tiny random-weight Qwen3 (no real
// checkpoint is available), loaded from BOTH formats: the save_pretrained folder
// (safetensors) and a GGUF of the same weights written by the `gguf` package with
// llama.cpp's qwen3 keys. Fixture and model: tests/golden/gen/gen_qwen3_tiny.py
// (transformers eager, float32); scripts/make-hf-models.sh makes the model.
//
// Tolerance: the generator measures how much rounding k (after k_norm) and v to f16 alone
// moves transformers' logits (our KV cache is f16; everything else is f32): max ~1e-3.
// We allow 2x that plus 2e-4 for f32 summation order. Measured for scale: rotating
// interleaved pairs instead of halves moves these logits by up to 1.45.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "model/session.h"
#include "test_paths.h"

using namespace kvz;

namespace {

std::string hf_root() {
  if (const char* d = std::getenv("KVZ_HF_DIR")) return d;
  const char* h = std::getenv("HOME");
  return std::string(h ? h : ".") + "/.cache/kvzip/hf";
}

class Qwen3Parity : public ::testing::TestWithParam<std::string> {};

TEST_P(Qwen3Parity, LogitsMatchTransformers) {
  const std::string path = hf_root() + "/" + GetParam();
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not found (scripts/make-hf-models.sh makes it)";
  std::ifstream jf(test::source_dir() + "/tests/golden/data/parity_qwen3_tiny.json");
  ASSERT_TRUE(jf.good());
  const auto fx = nlohmann::json::parse(jf);
  const auto rand_ids = fx["rand_ids"].get<std::vector<int32_t>>();
  const double tol = 2.0 * fx["f16_kv_noise"]["max"].get<double>() + 2e-4;

  auto model = Model::load(path);
  const HParams& hp = model->hp();
  EXPECT_EQ(hp.arch, "qwen3");
  EXPECT_EQ(hp.rope_style, RopeStyle::Neox);
  EXPECT_TRUE(hp.qk_norm && model->w().layers[0].q_norm && model->w().layers[1].k_norm);
  EXPECT_EQ(hp.d_head, 16);
  EXPECT_EQ(hp.n_head_kv, 2);
  const int V = hp.n_vocab;
  ThreadPool pool(2);
  for (const auto& pj : fx["prompts"]) {
    const auto ids = pj["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(model->tokenizer().encode(pj["text"].get<std::string>()), ids);
    Session s(*model, pool);
    std::vector<float> logits;
    s.forward(ids, LogitsMode::All, &logits);
    double max_err = 0.0;
    for (size_t t = 0; t < ids.size(); ++t) {
      const float* row = logits.data() + t * V;
      for (size_t k = 0; k < pj["top_ids"][t].size(); ++k)
        max_err = std::max<double>(max_err, std::abs(row[pj["top_ids"][t][k].get<int>()] - pj["top_logits"][t][k].get<double>()));
      for (size_t k = 0; k < rand_ids.size(); ++k)
        max_err = std::max<double>(max_err, std::abs(row[rand_ids[k]] - pj["rand_logits"][t][k].get<double>()));
      // The argmax must agree where transformers' top-2 margin is clear.
      const double margin = pj["top_logits"][t][0].get<double>() - pj["top_logits"][t][1].get<double>();
      if (margin > 2 * tol) {
        int best = 0;
        for (int i = 1; i < V; ++i)
          if (row[i] > row[best]) best = i;
        EXPECT_EQ(best, pj["top_ids"][t][0].get<int>()) << "position " << t;
      }
    }
    std::printf("%s: %zu tokens, max |logit - transformers| %.2e (bound %.2e)\n", GetParam().c_str(), ids.size(),
                max_err, tol);
    EXPECT_LT(max_err, tol);
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, Qwen3Parity, ::testing::Values("qwen3-tiny", "qwen3-tiny.gguf"),
                         [](const auto& info) { return info.param == "qwen3-tiny" ? std::string("hf") : std::string("gguf"); });

}  // namespace
