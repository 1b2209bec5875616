// Expected Attention (Devoto et al., arXiv:2510.00636; kvpress ExpectedAttentionPress).
// Future queries are modelled as Gaussian: mean mu and covariance S of the layer's pre-RoPE
// queries over rows [n_sink, n_seq), rotated by the RoPE matrix averaged over the next
// n_future positions, Rbar = mean_p R(p) (mu' = Rbar mu, S' = Rbar S Rbar^T). With softmax
// scale c, E[exp(c q.k)] = exp(c mu'.k + c^2/2 k^T S' k), so per query head
//   a(j) = softmax_j( c mu'.k_j + c^2/2 k_j^T S' k_j ),   j in [n_sink, n_seq)
//   s(j) = (mean_{g in group} a_g(j) + eps) * ||v_j||,    s(j < n_sink) = max_layer(s) + 1
// Queries come from one replay of the sequence (pre-RoPE = post-RoPE rotated back by -pos);
// a layer is scored when its last rows arrive, while the cache still holds every row.
#include <algorithm>
#include <cmath>

#include "core/fp16.h"
#include "kernels/attention.h"
#include "kv/press.h"
#include "model/blocks.h"

namespace kvz {

namespace {

class EAObserver final : public RowObserver {
 public:
  EAObserver(const Model& m, const PressInput& in, int64_t n_sink, int64_t n_future, bool cov, bool vnorm, double eps)
      : m_(m), hp_(m.hp()), n_seq_(in.n_seq()), n_sink_(n_sink), cov_(cov), vnorm_(vnorm), eps_(eps) {
    const int d = hp_.d_head;
    sum_.assign(static_cast<size_t>(hp_.n_layer) * hp_.n_head * d, 0.0);
    sq_.assign(cov ? static_cast<size_t>(hp_.n_layer) * hp_.n_head * d * d : 0, 0.0);
    rows_.assign(hp_.n_layer, 0);
    // Rbar over positions n_seq .. n_seq + n_future - 1, in the engine's own pair layout.
    std::vector<int32_t> pos(n_future);
    for (int64_t i = 0; i < n_future; ++i) pos[i] = static_cast<int32_t>(n_seq_ + i);
    RopeTable rt;
    rt.build(hp_, m.w().rope_freqs, pos.data(), n_future);
    rbar_.assign(static_cast<size_t>(d) * d, 0.0);
    for (int i = 0; i < rt.half; ++i) {
      double c = 0, s = 0;
      for (int64_t p = 0; p < n_future; ++p) {
        c += rt.cos[p * rt.half + i];
        s += rt.sin[p * rt.half + i];
      }
      c /= static_cast<double>(n_future);
      s /= static_cast<double>(n_future);
      const int a = hp_.rope_style == RopeStyle::Interleaved ? 2 * i : i;
      const int b = hp_.rope_style == RopeStyle::Interleaved ? 2 * i + 1 : i + rt.half;
      rbar_[a * d + a] = c;
      rbar_[a * d + b] = -s;
      rbar_[b * d + a] = s;
      rbar_[b * d + b] = c;
    }
    out.reset(hp_.n_layer, hp_.n_head_kv, in.n_ctx(), 0.0f);
    n_sys_ = in.n_sys;
  }

  HeadScores out;

  void on_rows(int il, const float* q, int64_t row0, int64_t n, const KvCache& cache, ThreadPool& pool) override {
    const int d = hp_.d_head, NH = hp_.n_head;
    // Pre-RoPE queries of this batch: rotate back by -pos.
    const int32_t* pos = cache.seg(il, 0).pos.get() + row0;
    RopeTable rt;
    rt.build(hp_, m_.w().rope_freqs, pos, n);
    for (float& s : rt.sin) s = -s;
    std::vector<float> qt(static_cast<size_t>(NH) * d);
    for (int64_t t = 0; t < n; ++t) {
      if (row0 + t < n_sink_) continue;
      std::copy_n(q + t * NH * d, NH * d, qt.data());
      rope_apply(qt.data(), NH, d, hp_.rope_style, rt.cos.data() + t * rt.half, rt.sin.data() + t * rt.half);
      for (int h = 0; h < NH; ++h) {
        const float* x = qt.data() + h * d;
        const size_t lh = static_cast<size_t>(il) * NH + h;
        double* su = sum_.data() + lh * d;
        double* sq = cov_ ? sq_.data() + lh * d * d : nullptr;
        for (int a = 0; a < d; ++a) {
          su[a] += x[a];
          if (cov_)
            for (int b = 0; b < d; ++b) sq[a * d + b] += static_cast<double>(x[a]) * x[b];
        }
      }
      ++rows_[il];
    }
    if (row0 + n == n_seq_) score_layer(il, cache);
  }

 private:
  void score_layer(int il, const KvCache& cache) {
    const int d = hp_.d_head, G = hp_.n_group(), H = hp_.n_head_kv;
    const double N = static_cast<double>(std::max<int64_t>(rows_[il], 1));
    const double c = hp_.softmax_scale();
    const int64_t nk = n_seq_ - n_sink_;
    std::vector<double> mu(d), mu2(d), S(static_cast<size_t>(d) * d), T(static_cast<size_t>(d) * d),
        S2(static_cast<size_t>(d) * d), logit(nk), kf(d);
    std::vector<float> row(d);
    std::vector<double> layer(static_cast<size_t>(H) * nk, 0.0);
    for (int ih = 0; ih < H; ++ih) {
      for (int g = 0; g < G; ++g) {
        const size_t h = static_cast<size_t>(il) * hp_.n_head + ih * G + g;
        for (int a = 0; a < d; ++a) mu[a] = sum_[h * d + a] / N;
        for (int a = 0; a < d; ++a) {
          double x = 0;
          for (int b = 0; b < d; ++b) x += rbar_[a * d + b] * mu[b];
          mu2[a] = x;
        }
        if (cov_) {
          for (int a = 0; a < d; ++a)
            for (int b = 0; b < d; ++b) S[a * d + b] = sq_[(h * d + a) * d + b] / N - mu[a] * mu[b];
          for (int a = 0; a < d; ++a)  // T = Rbar S
            for (int b = 0; b < d; ++b) {
              double x = 0;
              for (int e = 0; e < d; ++e) x += rbar_[a * d + e] * S[e * d + b];
              T[a * d + b] = x;
            }
          for (int a = 0; a < d; ++a)  // S2 = T Rbar^T
            for (int b = 0; b < d; ++b) {
              double x = 0;
              for (int e = 0; e < d; ++e) x += T[a * d + e] * rbar_[b * d + e];
              S2[a * d + b] = x;
            }
        }
        double mx = -1e300;
        for (int64_t j = 0; j < nk; ++j) {
          cache.keys_f32(il, ih, n_sink_ + j, 1, row.data());
          for (int a = 0; a < d; ++a) kf[a] = row[a];
          double l = 0;
          for (int a = 0; a < d; ++a) l += mu2[a] * kf[a];
          l *= c;
          if (cov_) {
            double qf = 0;
            for (int a = 0; a < d; ++a) {
              double x = 0;
              for (int b = 0; b < d; ++b) x += S2[a * d + b] * kf[b];
              qf += kf[a] * x;
            }
            l += 0.5 * c * c * qf;
          }
          logit[j] = l;
          mx = std::max(mx, l);
        }
        double z = 0;
        for (int64_t j = 0; j < nk; ++j) z += std::exp(logit[j] - mx);
        for (int64_t j = 0; j < nk; ++j) layer[ih * nk + j] += std::exp(logit[j] - mx) / z / G;
      }
      for (int64_t j = 0; j < nk; ++j) {
        double vn = 1.0;
        if (vnorm_) {
          cache.values_f32(il, ih, n_sink_ + j, 1, row.data());
          double ss = 0;
          for (int a = 0; a < d; ++a) ss += static_cast<double>(row[a]) * row[a];
          vn = std::sqrt(ss);
          layer[ih * nk + j] = (layer[ih * nk + j] + eps_) * vn;
        }
      }
    }
    const double top = *std::max_element(layer.begin(), layer.end()) + 1.0;
    for (int ih = 0; ih < H; ++ih) {
      float* s = out.head(il, ih);
      for (int64_t t = 0; t < out.n_ctx; ++t) {
        const int64_t j = n_sys_ + t;
        s[t] = static_cast<float>(j < n_sink_ ? top : layer[ih * nk + (j - n_sink_)]);
      }
    }
  }

  const Model& m_;
  const HParams& hp_;
  int64_t n_seq_, n_sink_, n_sys_ = 0;
  bool cov_, vnorm_;
  double eps_;
  std::vector<double> sum_, sq_;  // [L][n_head][d], [L][n_head][d][d] running sums of pre-RoPE queries
  std::vector<int64_t> rows_;     // [L] rows summed
  std::vector<double> rbar_;      // [d][d]
};

struct ExpectedAttention final : Press {
  int64_t n_sink, n_future;
  bool cov, vnorm;
  double eps;
  explicit ExpectedAttention(const PressParams& p)
      : n_sink(p.integer("n_sink")), n_future(p.integer("n_future")), cov(p.integer("covariance") != 0),
        vnorm(p.integer("vnorm") != 0), eps(p.num("epsilon")) {}
  HeadScores score(PressInput& in) override {
    const int64_t sink = std::min(n_sink, in.n_seq() - 1);
    EAObserver obs(in.session.model(), in, sink, n_future, cov, vnorm, eps);
    observe_rows(in, 0, obs);
    return std::move(obs.out);
  }
  bool uses_question() const override { return true; }
};

}  // namespace

std::unique_ptr<Press> make_expected_attention(const PressParams& p) { return std::make_unique<ExpectedAttention>(p); }

}  // namespace kvz
