// Architecture parity with HF transformers on tiny random-weight models, for families with
// no real checkpoint in a registry package:
//  - Qwen3, from BOTH formats: the save_pretrained folder (safetensors) and a GGUF of the
//    same weights written by the `gguf` package with llama.cpp's qwen3 keys
//    (tests/golden/gen/gen_qwen3_tiny.py);
//  - Llama with Llama 3.x rope scaling given in config.json (rope_scaling llama3: factor,
//    low/high_freq_factor, original context), HF folder (tests/golden/gen/gen_llama3_tiny.py;
//    the GGUF form of that scaling is tested against llama.cpp in test_parity_llamacpp.cpp).
// transformers eager, float32; scripts/make-hf-models.sh makes the models.
//
// Tolerance: the generator measures how much rounding k (after k_norm where there is one)
// and v to f16 alone moves transformers' logits (our KV cache is f16; everything else is
// f32): max ~1e-3. We allow 2x that plus 2e-4 for f32 summation order. Measured for scale:
// rotating interleaved pairs instead of halves moves the Qwen3 logits by up to 1.45; running
// the Llama weights without the rope scaling moves them by 1.46 ("unscaled_delta").
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "model/session.h"
#include "test_paths.h"

using namespace kvz;

namespace {

std::string hf_root() { return test::hf_dir(); }

class TinyParity : public ::testing::TestWithParam<std::string> {};

TEST_P(TinyParity, LogitsMatchTransformers) {
  const std::string name = GetParam(), path = hf_root() + "/" + name;
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not found (scripts/make-hf-models.sh makes it)";
  const bool qwen3 = name.rfind("qwen3-tiny", 0) == 0;
  std::ifstream jf(test::source_dir() + "/tests/golden/data/" + (qwen3 ? "parity_qwen3_tiny.json" : "parity_llama3_tiny.json"));
  ASSERT_TRUE(jf.good());
  const auto fx = nlohmann::json::parse(jf);
  const auto rand_ids = fx["rand_ids"].get<std::vector<int32_t>>();
  const double tol = 2.0 * fx["f16_kv_noise"]["max"].get<double>() + 2e-4;

  auto model = Model::load(path);
  const HParams& hp = model->hp();
  EXPECT_EQ(hp.arch, qwen3 ? "qwen3" : "llama");
  EXPECT_EQ(hp.rope_style, RopeStyle::Neox);
  if (qwen3) {
    EXPECT_TRUE(hp.qk_norm && model->w().layers[0].q_norm && model->w().layers[1].k_norm);
  } else {
    EXPECT_TRUE(hp.has_rope_freqs);  // from config.json's rope_scaling
    EXPECT_LT(tol, fx["unscaled_delta"].get<double>() / 100) << "the bound must see a missing scaling";
  }
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

INSTANTIATE_TEST_SUITE_P(Models, TinyParity, ::testing::Values("qwen3-tiny", "qwen3-tiny.gguf", "llama3-tiny"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

}  // namespace
