// KVzip scoring. For chunk k of the context (rows [start, end) of every head), the repeat
// input x_k = prompt ++ postfix ++ chunk ids runs through the model at positions
// n_full .. n_full+q-1 with the whole cache visible (the model's real attention is
// untouched). In every layer the observer below computes, per KV head h,
//   S[l,h,t] = max over the G query heads of h and all q repeat rows i of
//              softmax_i over {sys rows, chunk rows, repeat rows <= i} evaluated at chunk row t
// (kvzip-spec §3.2) in fp32. The logits are the model's own: its attention over the whole
// cache computes q . k for every key of S, C and R anyway, so it captures those (per work
// item, one row block's, LogitCapture) and kernels/kvzip_score turns them into column maxima
// of the S + C + R softmax; no logit is computed twice.
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

  // The scores come from the model's own attention logits (captures_logits): on_layer checks
  // the cache and makes room, each attention work item hands its rows' logits of the system,
  // chunk and repeat keys to on_logits, and after_attention merges the threads' maxima.
  void on_layer(int il, const float* q, int64_t n, const KvCache& cache, ThreadPool& pool) override {
    KVZ_ASSERT(n == q_, "repeat input arrived in {} of {} tokens; it must run as one batch", n, q_);
    (void)q;
    if (hp_.is_swa(il)) return;  // sliding-window layers are never evicted, so never scored (scores stay 0)
    for (int ih = 0; ih < hp_.n_head_kv; ++ih)
      KVZ_ASSERT(cache.seg(il, ih).len == n_full_ + n,
                 "scoring needs the unpruned cache (head {} of layer {} has {} rows, want {})", ih, il,
                 cache.seg(il, ih).len, n_full_ + n);
    cache_ = &cache;
    const int nth = pool.size();
    // KVzip+ keeps a maximum per query head (weighted per head afterwards), KVzip per KV head.
    partial_.assign(static_cast<size_t>(nth) * (grams_ ? hp_.n_head : hp_.n_head_kv) * m_, 0.0f);
    width_ = n_sys_ + m_ + q_;
    bufs_.resize(static_cast<size_t>(nth));
    for (auto& b : bufs_) b.resize(static_cast<size_t>(kAttnMaxRows) * width_);
  }

  bool captures_logits(int il) const override { return !hp_.is_swa(il); }

  // Nothing reads the repeat pass after its last scored layer's logits.
  int last_layer() const override {
    for (int il = hp_.n_layer - 1; il >= 0; --il)
      if (!hp_.is_swa(il)) return il;
    return -1;
  }

  void logit_capture(int il, int ih, int ith, int64_t t0, int64_t nt, LogitCapture& cap) override {
    // S = the system rows, C = this chunk's context rows, R = the repeat rows (kvzip-spec §3.2).
    cap.n_ranges = 3;
    cap.lo[0] = 0, cap.hi[0] = n_sys_, cap.col[0] = 0;
    cap.lo[1] = start_, cap.hi[1] = start_ + m_, cap.col[1] = n_sys_;
    cap.lo[2] = n_full_, cap.hi[2] = n_full_ + q_, cap.col[2] = n_sys_ + m_;
    cap.out = bufs_[static_cast<size_t>(ith)].data();
    cap.stride = width_;
  }

  // Rows t * G + g of the item (token t0 + t, query head g of KV head ih).
  void on_logits(int il, int ih, int ith, int64_t t0, int64_t nt, const LogitCapture& cap) override {
    const int G = hp_.n_group();
    const int rows = static_cast<int>(nt) * G;
    int64_t lim[kAttnMaxRows];
    float w[kAttnMaxRows];
    float* dst[kAttnMaxRows];
    for (int r = 0; r < rows; ++r) {
      const int64_t t = t0 + r / G;
      lim[r] = t + 1;
      if (grams_) {
        w[r] = row_log_w_[static_cast<size_t>(t)];
        dst[r] = partial_.data() + (static_cast<size_t>(ith) * hp_.n_head + ih * G + r % G) * m_;
      } else {
        dst[r] = partial_.data() + (static_cast<size_t>(ith) * hp_.n_head_kv + ih) * m_;
      }
    }
    kvzip_colmax_from_logits(cap.out, cap.stride, rows, lim, n_sys_, m_, grams_ ? w : nullptr, dst);
  }

  void after_attention(int il, ThreadPool& pool) override {
    if (!hp_.is_swa(il)) {
      if (grams_)
        merge_plus(il, pool);
      else
        merge(il, pool.size());
    }
    filled_[il] += m_;
    // The pass stops here (last_layer): the sliding-window layers after it keep scores 0.
    if (il == last_layer())
      for (int later = il + 1; later < hp_.n_layer; ++later) filled_[later] += m_;
  }

 private:
  // KVzip: S[h, t] = max over the threads' maxima (themselves over the group's rows).
  void merge(int il, int nth) {
    const int H = hp_.n_head_kv;
    for (int ih = 0; ih < H; ++ih) {
      float* dst = out_.head(il, ih) + (start_ - n_sys_);
      for (int64_t t = 0; t < m_; ++t) {
        float mx = 0.0f;
        for (int th = 0; th < nth; ++th) mx = std::max(mx, partial_[(static_cast<size_t>(th) * H + ih) * m_ + t]);
        dst[t] = mx;
      }
    }
  }

  // KVzip+: per query head g, colmax_g[t] = max_i a^g_{i,t} / ||h_i|| over the repeat rows i;
  // then S[h,t] = max over g of h's group of ||W_O^g v_t|| * colmax_g[t].
  void merge_plus(int il, ThreadPool& pool) {
    const int nh = hp_.n_head, G = hp_.n_group(), H = hp_.n_head_kv, nth = pool.size();
    const int64_t dh = hp_.d_head;
    const KvCache& cache = *cache_;
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
  // [n_threads][H][m] (KVzip+: [n_threads][n_head][m]) column maxima per thread; max is exact
  // in any order, so the scores do not depend on the thread count or on which thread took
  // which item (docs/kernels.md).
  std::vector<float> partial_;
  std::vector<std::vector<float>> bufs_;  // [n_threads][kAttnMaxRows][width_] captured logits
  int64_t width_ = 0;                     // n_sys + m + q: S, C and R columns of a row
  const KvCache* cache_ = nullptr;        // the session's (KVzip+ reads the chunk's values)
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
