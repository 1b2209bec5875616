// KVzip scoring. For chunk k of the context (rows [start, end) of every head), the repeat
// input x_k = prompt ++ postfix ++ chunk ids runs through the model at positions
// n_full .. n_full+q-1 with the whole cache visible (the model's real attention is
// untouched). In every layer the observer below computes, per KV head h,
//   S[l,h,t] = max over the G query heads of h and all q repeat rows i of
//              softmax_i over {sys rows, chunk rows, repeat rows <= i} evaluated at chunk row t
// (kvzip-spec §3.2) in fp32, via kernels/kvzip_score (no score matrix beyond a row block).
// The softmax scale is the model's own (Gemma 3: query_pre_attn_scalar^-0.5; the reference
// hard-codes 1/sqrt(d), kvzip-spec §9.12). Sliding-window layers (Gemma 3) are skipped:
// they keep a rolling window and are never evicted; their scores are left at 0.
// KVzip+ (opt.plus) weights each probability by ||W_O^g v_t|| / ||h_i|| first, so the max
// runs per query head g and is combined over the group afterwards.
#include "kv/presses/kvzip.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/attention.h"
#include "kernels/kvzip_score.h"
#include "kernels/types.h"
#include "model/model.h"

namespace kvz {

namespace {

class KvzipObserver final : public LayerObserver {
 public:
  KvzipObserver(const HParams& hp, HeadScores& out, int64_t n_sys, int64_t n_full, const std::vector<float>* grams)
      : hp_(hp), out_(out), n_sys_(n_sys), n_full_(n_full), grams_(grams), filled_(hp.n_layer, 0) {}

  void begin_chunk(int64_t start, int64_t m, int64_t q) {
    start_ = start;
    m_ = m;
    q_ = q;
  }

  const std::vector<int64_t>& filled() const { return filled_; }

  // KVzip+: -log ||h_i|| of the repeat rows (the whole batch is the repeat input).
  void on_attn_input(int il, const float* h, int64_t n, const KvCache&, ThreadPool&) override {
    if (!grams_ || hp_.is_swa(il)) return;
    const int64_t D = hp_.n_embd;
    row_log_w_.resize(static_cast<size_t>(n));
    for (int64_t t = 0; t < n; ++t) row_log_w_[t] = log_inv_norm(h + t * D, D);
  }

  void on_layer(int il, const float* q, int64_t n, const KvCache& cache, ThreadPool& pool) override {
    KVZ_ASSERT(n == q_, "repeat input arrived in {} of {} tokens; it must run as one batch", n, q_);
    if (hp_.is_swa(il)) {  // sliding-window layers are never evicted, so never scored (scores stay 0)
      filled_[il] += m_;
      return;
    }
    if (grams_) {
      on_layer_plus(il, q, n, cache, pool);
      filled_[il] += m_;
      return;
    }
    const int G = hp_.n_group(), H = hp_.n_head_kv;
    const int64_t dh = hp_.d_head, dq = int64_t{hp_.n_head} * dh;
    const int64_t tb = std::max<int64_t>(1, kAttnMaxRows / G);
    const int64_t n_blocks = (n + tb - 1) / tb;
    const int64_t n_items = n_blocks * H;
    const float scale = hp_.softmax_scale();
    const int nth = pool.size();
    partial_.assign(static_cast<size_t>(nth) * H * m_, 0.0f);
    // Dynamically claimed items, latest (longest) blocks first, as in Session::attention.
    // Per-thread partial results are fine here: they are column maxima of probabilities
    // (>= 0, never NaN), and max is exact in any order, so the scores do not depend on the
    // thread count or on which thread took which item (docs/kernels.md).
    pool.parallel_for(n_items, [&](int64_t begin, int64_t end, int ith) {
      thread_local std::vector<float> qbuf;
      thread_local std::vector<int64_t> lim;
      qbuf.resize(kAttnMaxRows * dh);
      lim.resize(kAttnMaxRows);
      for (int64_t item = begin; item < end; ++item) {
        const int ih = static_cast<int>(item % H);
        const int64_t t0 = (n_blocks - 1 - item / H) * tb, nt = std::min(tb, n - t0);
        const HeadSegment& s = cache.seg(il, ih);
        KVZ_ASSERT(s.len == n_full_ + n, "scoring needs the unpruned cache (head {} of layer {} has {} rows, want {})",
                   ih, il, s.len, n_full_ + n);
        int rows = 0;
        for (int64_t t = t0; t < t0 + nt; ++t)
          for (int g = 0; g < G; ++g, ++rows) {
            std::memcpy(qbuf.data() + rows * dh, q + t * dq + (int64_t{ih} * G + g) * dh, dh * sizeof(float));
            lim[rows] = t + 1;
          }
        const size_t rb = cache.row_bytes();
        const ScoreKeys keys{s.k.get(), n_sys_, s.k.get() + start_ * rb, m_, s.k.get() + n_full_ * rb, cache.type()};
        kvzip_score_head(qbuf.data(), dh, rows, lim.data(), keys, static_cast<int>(dh), scale,
                         partial_.data() + (static_cast<size_t>(ith) * H + ih) * m_);
      }
    });
    for (int ih = 0; ih < H; ++ih) {
      float* dst = out_.head(il, ih) + (start_ - n_sys_);
      for (int64_t t = 0; t < m_; ++t) {
        float mx = 0.0f;
        for (int th = 0; th < nth; ++th) mx = std::max(mx, partial_[(static_cast<size_t>(th) * H + ih) * m_ + t]);
        dst[t] = mx;
      }
    }
    filled_[il] += m_;
  }

 private:
  // KVzip+: per query head g, colmax_g[t] = max_i a^g_{i,t} / ||h_i|| over the repeat rows i;
  // then S[h,t] = max over g of h's group of ||W_O^g v_t|| * colmax_g[t].
  void on_layer_plus(int il, const float* q, int64_t n, const KvCache& cache, ThreadPool& pool) {
    const int nh = hp_.n_head, G = hp_.n_group(), H = hp_.n_head_kv, nth = pool.size();
    const int64_t dh = hp_.d_head, dq = int64_t{nh} * dh;
    KVZ_ASSERT(static_cast<int64_t>(row_log_w_.size()) == n, "KVzip+: {} row weights for {} repeat rows",
               row_log_w_.size(), n);
    const int64_t n_blocks = (n + kAttnMaxRows - 1) / kAttnMaxRows;
    const float scale = hp_.softmax_scale();
    const size_t rb = cache.row_bytes();
    partial_.assign(static_cast<size_t>(nth) * nh * m_, 0.0f);
    pool.parallel_for(n_blocks * nh, [&](int64_t begin, int64_t end, int ith) {
      thread_local std::vector<float> qbuf;
      thread_local std::vector<int64_t> lim;
      qbuf.resize(kAttnMaxRows * dh);
      lim.resize(kAttnMaxRows);
      for (int64_t item = begin; item < end; ++item) {
        const int g = static_cast<int>(item % nh);
        const int64_t t0 = (n_blocks - 1 - item / nh) * kAttnMaxRows, nt = std::min<int64_t>(kAttnMaxRows, n - t0);
        const HeadSegment& s = cache.seg(il, g / G);
        KVZ_ASSERT(s.len == n_full_ + n, "scoring needs the unpruned cache (head {} of layer {} has {} rows, want {})",
                   g / G, il, s.len, n_full_ + n);
        for (int64_t t = 0; t < nt; ++t) {
          std::memcpy(qbuf.data() + t * dh, q + (t0 + t) * dq + int64_t{g} * dh, dh * sizeof(float));
          lim[t] = t0 + t + 1;
        }
        ScoreKeys keys{s.k.get(), n_sys_, s.k.get() + start_ * rb, m_, s.k.get() + n_full_ * rb, cache.type()};
        keys.row_log_w = row_log_w_.data() + t0;
        kvzip_score_head(qbuf.data(), dh, static_cast<int>(nt), lim.data(), keys, static_cast<int>(dh), scale,
                         partial_.data() + (static_cast<size_t>(ith) * nh + g) * m_);
      }
    });
    const float* gl = grams_->data() + static_cast<size_t>(il) * nh * dh * dh;
    pool.parallel_for(int64_t{H} * m_, [&](int64_t begin, int64_t end, int) {
      std::vector<float> v(static_cast<size_t>(dh));
      for (int64_t item = begin; item < end; ++item) {
        const int ih = static_cast<int>(item / m_);
        const int64_t t = item % m_;
        cache.values_f32(il, ih, start_ + t, 1, v.data());
        float best = 0.0f;
        for (int g = ih * G; g < (ih + 1) * G; ++g) {
          float cm = 0.0f;
          for (int th = 0; th < nth; ++th) cm = std::max(cm, partial_[(static_cast<size_t>(th) * nh + g) * m_ + t]);
          best = std::max(best, output_norm(gl + static_cast<size_t>(g) * dh * dh, v.data(), static_cast<int>(dh)) * cm);
        }
        out_.head(il, ih)[start_ - n_sys_ + t] = best;
      }
    });
  }

  const HParams& hp_;
  HeadScores& out_;
  int64_t n_sys_, n_full_;
  const std::vector<float>* grams_;  // KVzip+ when set
  std::vector<float> row_log_w_;     // KVzip+: [q] -log ||h_i|| of the current layer's repeat rows
  int64_t start_ = 0, m_ = 0, q_ = 0;
  std::vector<int64_t> filled_;
  std::vector<float> partial_;  // [n_threads][H][m] column maxima per thread (max: order-free)
};

}  // namespace

std::vector<float> output_gram_matrices(const Model& m, ThreadPool* pool) {
  const HParams& hp = m.hp();
  const int L = hp.n_layer, nh = hp.n_head, d = hp.d_head;
  const size_t per_head = static_cast<size_t>(d) * d;
  std::vector<float> out(static_cast<size_t>(L) * nh * per_head);
  auto layer = [&](int il) {
    const WeightView& wo = m.w().layers[il].wo;  // [n_embd rows][n_head * d_head]
    KVZ_ASSERT(wo.n_in == int64_t{nh} * d, "layer {}: output projection has {} inputs, want {}", il, wo.n_in, nh * d);
    std::vector<double> acc(static_cast<size_t>(nh) * per_head, 0.0);
    std::vector<float> row(static_cast<size_t>(wo.n_in));
    for (int64_t r = 0; r < wo.n_out; ++r) {
      get_row(wo, r, row.data());
      for (int g = 0; g < nh; ++g) {
        const float* w = row.data() + static_cast<size_t>(g) * d;
        double* a = acc.data() + g * per_head;
        for (int i = 0; i < d; ++i)
          for (int j = 0; j < d; ++j) a[static_cast<size_t>(i) * d + j] += double{w[i]} * w[j];
      }
    }
    float* dst = out.data() + static_cast<size_t>(il) * nh * per_head;
    for (size_t i = 0; i < acc.size(); ++i) dst[i] = static_cast<float>(acc[i]);
  };
  if (pool)
    pool->parallel_for(L, [&](int64_t b, int64_t e, int) {
      for (int64_t il = b; il < e; ++il) layer(static_cast<int>(il));
    });
  else
    for (int il = 0; il < L; ++il) layer(il);
  return out;
}

float output_norm(const float* gram, const float* v, int d) {
  thread_local std::vector<float> gv;
  gv.assign(static_cast<size_t>(d), 0.0f);
  for (int r = 0; r < d; ++r)  // gv = G v, row by row of the symmetric G
    for (int c = 0; c < d; ++c) gv[c] += gram[static_cast<size_t>(r) * d + c] * v[r];
  double q2 = 0.0;
  for (int c = 0; c < d; ++c) q2 += double{gv[c]} * v[c];
  return static_cast<float>(std::sqrt(std::max(q2, 0.0)));
}

float log_inv_norm(const float* h, int64_t d) {
  double ss = 0.0;
  for (int64_t c = 0; c < d; ++c) ss += double{h[c]} * h[c];
  return static_cast<float>(-0.5 * std::log(std::max(ss, 1e-300)));
}

int64_t kvzip_repeat_overhead(const KvzipRepeatPrompt& p) {
  const int64_t first = static_cast<int64_t>(p.first.size());
  const int64_t next = static_cast<int64_t>(p.next.size()) + p.n_cue;
  return std::max(first, next) + static_cast<int64_t>(p.postfix.size());
}

int64_t kvzip_min_positions_after(int64_t n_ctx, int64_t overhead, int64_t chunk) {
  return overhead + std::min({chunk, n_ctx, kKvzipMinChunk});
}

int64_t kvzip_fit_chunk(int64_t n_full, int64_t n_ctx, int64_t n_limit, int64_t overhead, int64_t chunk) {
  const int64_t want = std::min(chunk, n_ctx);
  const int64_t room = n_limit - n_full - overhead;
  if (room >= want) return want;
  return room >= std::min(want, kKvzipMinChunk) ? room : 0;
}

HeadScores kvzip_score(Session& s, int64_t n_sys, const std::vector<int32_t>& ctx_ids, const KvzipRepeatPrompt& prompt,
                       const KvzipScoreOptions& opt, const std::function<void(int64_t, int64_t)>& progress) {
  const HParams& hp = s.model().hp();
  const int64_t n_ctx = static_cast<int64_t>(ctx_ids.size());
  const int64_t n_full = n_sys + n_ctx;
  if (opt.chunk < 1) fail("KVzip chunk size must be positive, got {}", opt.chunk);
  if (n_ctx == 0) fail("KVzip: the context is empty, nothing to score");
  for (int il = 0; il < hp.n_layer; ++il)
    for (int ih = 0; ih < hp.n_head_kv && !hp.is_swa(il); ++ih)
      if (s.cache().seg(il, ih).len != n_full)
        fail("KVzip scoring needs a freshly prefilled, unpruned context ({} rows expected, a head has {})", n_full,
             s.cache().seg(il, ih).len);
  KVZ_ASSERT(s.n_pos() == n_full, "position counter {} != cache length {}", s.n_pos(), n_full);
  const int64_t overhead = kvzip_repeat_overhead(prompt);
  const int64_t chunk = kvzip_fit_chunk(n_full, n_ctx, s.n_ctx_max(), overhead, opt.chunk);
  if (chunk == 0)
    fail("KVzip scoring: the context ({} tokens with the system prompt) leaves {} positions of the {}-token window "
         "for the repeat pass, which needs at least {} (its prompt, {}, and a chunk of {}); shorten the context or "
         "use a method without a repeat pass (`kvzip methods`)",
         n_full, std::max<int64_t>(0, s.n_ctx_max() - n_full), s.n_ctx_max(),
         kvzip_min_positions_after(n_ctx, overhead, opt.chunk), overhead, std::min({opt.chunk, n_ctx, kKvzipMinChunk}));
  const Session::Checkpoint prefilled = s.checkpoint();

  std::vector<float> own_grams;
  const std::vector<float>* grams = nullptr;
  if (opt.plus) {
    if (!opt.grams) own_grams = output_gram_matrices(s.model(), &s.pool());
    grams = opt.grams ? opt.grams : &own_grams;
  }

  HeadScores out;
  out.reset(hp.n_layer, hp.n_head_kv, n_ctx, 0.0f);
  KvzipObserver obs(hp, out, n_sys, n_full, grams);
  s.set_observer(&obs);
  struct Unhook {
    Session& s;
    ~Unhook() { s.set_observer(nullptr); }
  } unhook{s};

  std::vector<int32_t> x;
  for (int64_t start = 0; start < n_ctx; start += chunk) {
    const int64_t m = std::min(chunk, n_ctx - start);
    x.clear();
    if (start == 0) {
      x = prompt.first;
    } else {
      x = prompt.next;
      const int64_t n_cue = std::min<int64_t>(prompt.n_cue, start);
      x.insert(x.end(), ctx_ids.begin() + (start - n_cue), ctx_ids.begin() + start);
    }
    x.insert(x.end(), prompt.postfix.begin(), prompt.postfix.end());
    x.insert(x.end(), ctx_ids.begin() + start, ctx_ids.begin() + start + m);
    const int64_t q = static_cast<int64_t>(x.size());
    obs.begin_chunk(n_sys + start, m, q);
    s.forward(x, LogitsMode::None, nullptr, /*n_batch=*/q);
    // Back to the prefilled context: drop the repeat rows, rewind positions, give the
    // sliding-window layers back the rows the pass rolled out.
    s.restore(prefilled);
    if (progress) progress(start + m, n_ctx);
  }
  for (int il = 0; il < hp.n_layer; ++il)
    KVZ_ASSERT(obs.filled()[il] == n_ctx, "layer {} got {} scores for {} context tokens", il, obs.filled()[il], n_ctx);
  return out;
}

}  // namespace kvz
