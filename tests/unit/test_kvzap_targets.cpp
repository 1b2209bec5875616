// KVzip+ training targets (kvzap/targets.h) against the definition computed plainly here.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kvzap/targets.h"
#include "synthetic_model.h"

using namespace kvz;

namespace {

class KvzapTargetsTest : public test::SyntheticModelTest {};

// Records every layer's queries and attention inputs of one forward pass.
struct Capture final : LayerObserver {
  const HParams& hp;
  std::vector<std::vector<float>> q, h;  // [L][rows][n_head * d] / [L][rows][n_embd]
  explicit Capture(const HParams& p) : hp(p), q(p.n_layer), h(p.n_layer) {}
  void on_layer(int il, const float* qb, int64_t n, const KvCache&, ThreadPool&) override {
    q[il].insert(q[il].end(), qb, qb + n * hp.n_head * hp.d_head);
  }
  void on_attn_input(int il, const float* hb, int64_t n, const KvCache&, ThreadPool&) override {
    h[il].insert(h[il].end(), hb, hb + n * hp.n_embd);
  }
};

// s+_i(l, k) = max_{g in group k} max_{j in repeat} a^g_{j,i} ||W_O^g v_i|| / ||h_j||, in double,
// with W_O^g v computed as a matrix-vector product (no Gram matrix) and the softmax written out.
std::vector<double> naive_targets(const Model& m, const RepeatSequence& seq) {
  const HParams& hp = m.hp();
  ThreadPool pool(1);
  Session s(m, pool);
  Capture cap(hp);
  s.set_observer(&cap);
  s.forward(seq.ids, LogitsMode::None, nullptr);
  s.set_observer(nullptr);
  const int L = hp.n_layer, H = hp.n_head_kv, G = hp.n_group(), d = hp.d_head, nh = hp.n_head, D = hp.n_embd;
  const int64_t n_seq = static_cast<int64_t>(seq.ids.size()), m_txt = seq.n_text;
  const double scale = hp.softmax_scale();
  std::vector<double> y(static_cast<size_t>(L) * m_txt * H);
  for (int il = 0; il < L; ++il) {
    if (hp.is_swa(il)) continue;  // no targets for sliding-window layers (never pruned): y = 0
    const WeightView& wo = m.w().layers[il].wo;
    std::vector<float> W(static_cast<size_t>(wo.n_out) * wo.n_in);
    for (int64_t r = 0; r < wo.n_out; ++r) get_row(wo, r, W.data() + r * wo.n_in);
    for (int ih = 0; ih < H; ++ih) {
      const int64_t len = s.cache().seg(il, ih).len;
      std::vector<float> K(static_cast<size_t>(len) * d), V(K.size());
      s.cache().keys_f32(il, ih, 0, len, K.data());
      s.cache().values_f32(il, ih, 0, len, V.data());
      auto k = [&](int64_t row, int c) { return double{K[row * d + c]}; };
      auto v = [&](int64_t row, int c) { return double{V[row * d + c]}; };
      for (int64_t i = 0; i < m_txt; ++i) {
        const int64_t ri = seq.text0 + i;
        double best = 0.0;
        for (int g = ih * G; g < (ih + 1) * G; ++g) {
          double wv2 = 0.0;
          for (int64_t r = 0; r < wo.n_out; ++r) {
            double acc = 0.0;
            for (int c = 0; c < d; ++c) acc += W[r * wo.n_in + g * d + c] * v(ri, c);
            wv2 += acc * acc;
          }
          for (int64_t j = seq.rep0; j < n_seq; ++j) {
            const float* qj = cap.q[il].data() + (j * nh + g) * d;
            std::vector<double> logit(j + 1);
            double mx = -1e300, sum = 0.0;
            for (int64_t t = 0; t <= j; ++t) {  // causal: keys 0..j
              double dot = 0.0;
              for (int c = 0; c < d; ++c) dot += qj[c] * k(t, c);
              logit[t] = dot * scale;
              mx = std::max(mx, logit[t]);
            }
            for (int64_t t = 0; t <= j; ++t) sum += std::exp(logit[t] - mx);
            const double a = std::exp(logit[ri] - mx) / sum;
            double hn = 0.0;
            for (int c = 0; c < D; ++c) hn += double{cap.h[il][j * D + c]} * cap.h[il][j * D + c];
            best = std::max(best, a * std::sqrt(wv2) / std::sqrt(hn));
          }
        }
        y[(static_cast<size_t>(il) * m_txt + i) * H + ih] = std::log(std::max(best, 1e-30));
      }
    }
  }
  return y;
}

TEST_F(KvzapTargetsTest, RepeatSequenceHoldsTheTextTwice) {
  const std::vector<int32_t> text = {10, 20, 30, 40};
  const RepeatSequence seq = kvzap_repeat_sequence(*model_, text);
  ASSERT_EQ(seq.n_text, 4);
  EXPECT_GT(seq.rep0, seq.text0 + seq.n_text);  // the instruction sits between
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(seq.ids[seq.text0 + i], text[i]);
    EXPECT_EQ(seq.ids[seq.rep0 + i], text[i]);
  }
  const std::string mid =
      model_->tokenizer().decode(std::vector<int32_t>(seq.ids.begin() + seq.text0 + 4, seq.ids.begin() + seq.rep0));
  EXPECT_NE(mid.find("Repeat the previous context exactly."), std::string::npos) << mid;
}

TEST_F(KvzapTargetsTest, MatchTheDefinitionComputedNaively) {
  const HParams& hp = model_->hp();
  std::mt19937 rng(5);
  std::uniform_int_distribution<int32_t> tokd(0, 255);
  std::vector<int32_t> text(45);
  for (auto& t : text) t = tokd(rng);
  const RepeatSequence seq = kvzap_repeat_sequence(*model_, text);
  const std::vector<double> want = naive_targets(*model_, seq);
  ThreadPool pool(2);
  const std::vector<float> grams = output_gram_matrices(*model_, &pool);
  std::vector<int64_t> pos = {44, 0, 7, 13, 30, 31, 2};  // unordered subset
  for (int64_t n_batch : {512, 17}) {                    // one batch; the repeat split across batches
    Session s(*model_, pool);
    const KvzapTargets got = kvzip_plus_targets(s, seq, pos, grams, n_batch);
    ASSERT_EQ(got.n_pos, static_cast<int64_t>(pos.size()));
    double lo = 1e30, hi = -1e30;
    for (int il = 0; il < hp.n_layer; ++il)
      for (size_t p = 0; p < pos.size(); ++p)
        for (int ih = 0; ih < hp.n_head_kv; ++ih) {
          const double w = want[(static_cast<size_t>(il) * seq.n_text + pos[p]) * hp.n_head_kv + ih];
          const float g = got.y[(static_cast<size_t>(il) * pos.size() + p) * hp.n_head_kv + ih];
          // fp32 softmax with the kernel's exp vs double: 2e-3 in log space (0.2% of s+)
          EXPECT_NEAR(g, w, 2e-3) << "layer " << il << " pos " << pos[p] << " head " << ih << " batch " << n_batch;
          lo = std::min(lo, w);
          hi = std::max(hi, w);
        }
    EXPECT_GT(hi - lo, 1.0);  // the targets really vary across tokens and heads
  }
  // Features: the attention input of the text token's first occurrence.
  Session s(*model_, pool);
  Capture cap(hp);
  s.set_observer(&cap);
  s.forward(seq.ids, LogitsMode::None, nullptr);
  s.set_observer(nullptr);
  const KvzapTargets got = kvzip_plus_targets(s, seq, pos, grams);
  for (int il = 0; il < hp.n_layer; ++il)
    for (size_t p = 0; p < pos.size(); ++p)
      for (int c = 0; c < hp.n_embd; ++c)
        ASSERT_EQ(got.x[(static_cast<size_t>(il) * pos.size() + p) * hp.n_embd + c],
                  cap.h[il][(seq.text0 + pos[p]) * hp.n_embd + c]);
}

// Sliding-window models (Gemma 3): targets for the global layers as defined, none for the
// local layers (their x and y stay exactly 0), on a tiny random gemma3 whose windows (8)
// are much shorter than the repeat sequence.
TEST(KvzapTargetsGemma3, GlobalLayersMatchTheDefinitionLocalLayersGetNone) {
  auto model = test::load_tiny_gemma3(4, "kvzap-targets-gemma3");  // layers 0, 2, ... local (window 8)
  const HParams& hp = model->hp();
  std::mt19937 rng(9);
  std::uniform_int_distribution<int32_t> tokd(0, 255);
  std::vector<int32_t> text(30);
  for (auto& t : text) t = tokd(rng);
  const RepeatSequence seq = kvzap_repeat_sequence(*model, text);
  const std::vector<double> want = naive_targets(*model, seq);
  ThreadPool pool(2);
  const std::vector<float> grams = output_gram_matrices(*model, &pool);
  const std::vector<int64_t> pos = {0, 3, 11, 29};
  Session s(*model, pool);
  const KvzapTargets got = kvzip_plus_targets(s, seq, pos, grams, 16);
  for (int il = 0; il < hp.n_layer; ++il)
    for (size_t p = 0; p < pos.size(); ++p) {
      for (int ih = 0; ih < hp.n_head_kv; ++ih) {
        const float g = got.y[(static_cast<size_t>(il) * pos.size() + p) * hp.n_head_kv + ih];
        if (hp.is_swa(il))
          ASSERT_EQ(g, 0.0f) << "local layer " << il;
        else
          EXPECT_NEAR(g, want[(static_cast<size_t>(il) * seq.n_text + pos[p]) * hp.n_head_kv + ih], 2e-3)
              << "layer " << il << " pos " << pos[p];
      }
      if (hp.is_swa(il)) {
        for (int c = 0; c < hp.n_embd; ++c) ASSERT_EQ(got.x[(static_cast<size_t>(il) * pos.size() + p) * hp.n_embd + c], 0.0f);
      }
    }
}

}  // namespace
