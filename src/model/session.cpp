#include "model/session.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstring>

#include "core/error.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/matmul_multi.h"

namespace kvz {

Session::Session(const Model& model, ThreadPool& pool, int64_t n_ctx_max, KvType kv_type)
    : model_(model),
      pool_(pool),
      cache_(model.hp().n_layer, model.hp().n_head_kv, model.hp().d_head, kv_type),
      n_ctx_max_(n_ctx_max > 0 ? n_ctx_max : model.hp().n_ctx_train) {}

void Session::reset() {
  cache_.clear();
  n_pos_ = 0;
}

Session::Checkpoint Session::checkpoint() const { return {n_pos_, cache_.snapshot(model_.hp().swa_layers)}; }

void Session::restore(const Checkpoint& c) {
  cache_.restore(c.cache);
  n_pos_ = c.n_pos;
}

// Sliding-window layers keep a rolling window: the next query (position n_pos_) sees
// positions > n_pos_ - n_swa, so older rows are dead. They are dropped lazily, once there
// are n_swa of them, so a decode step moves rows only every n_swa tokens; a local head
// holds fewer than 2 * n_swa rows between batches (plus the batch while it runs).
void Session::trim_windows() {
  const HParams& hp = model_.hp();
  const int64_t first_visible = n_pos_ - hp.n_swa + 1;
  for (int il = 0; il < hp.n_layer; ++il) {
    if (!hp.is_swa(il)) continue;
    for (int ih = 0; ih < hp.n_head_kv; ++ih) {
      const HeadSegment& s = cache_.seg(il, ih);
      const int64_t dead = std::lower_bound(s.pos.get(), s.pos.get() + s.len, first_visible) - s.pos.get();
      if (dead >= hp.n_swa) cache_.drop_front(il, ih, dead);
    }
  }
}

void Session::shrink_windows() {
  const HParams& hp = model_.hp();
  const int64_t first_visible = n_pos_ - hp.n_swa + 1;
  std::vector<uint8_t> keep;
  for (int il = 0; il < hp.n_layer; ++il) {
    if (!hp.is_swa(il)) continue;
    for (int ih = 0; ih < hp.n_head_kv; ++ih) {
      const HeadSegment& s = cache_.seg(il, ih);
      keep.assign(s.len, 0);
      for (int64_t r = 0; r < s.len; ++r) keep[r] = s.pos[r] >= first_visible;
      cache_.compact(il, ih, keep.data(), /*reserve=*/64);
    }
  }
}

void ForwardScratch::ensure(const HParams& hp, int64_t n_rows, size_t kv_row_bytes) {
  // A cache can be replaced by one of another row type (a loaded context): size its rows here.
  const size_t kv_rows = static_cast<size_t>(n_rows) * hp.n_head_kv * kv_row_bytes;
  if (kq.size() < kv_rows) {
    kq.resize(kv_rows);
    vq.resize(kv_rows);
  }
  if (n_rows <= n) return;
  const size_t dq = static_cast<size_t>(hp.n_head) * hp.d_head, dkv = static_cast<size_t>(hp.n_head_kv) * hp.d_head;
  x.resize(n_rows * hp.n_embd);
  h.resize(n_rows * std::max<size_t>(hp.n_embd, dq));
  q.resize(n_rows * dq);
  k.resize(n_rows * dkv);
  v.resize(n_rows * dkv);
  attn.resize(n_rows * dq);
  gate.resize(n_rows * hp.n_ff);
  up.resize(n_rows * hp.n_ff);
  pos.resize(n_rows);
  n = n_rows;
}

namespace {

// The layers of one forward batch of n rows at positions sc.pos[0, n), shared by a
// session's own batches and the multi-session decode step. In every layer
// `on_attn_input(il)` sees the attention input (sc.h) and `kv_attend(il)` stores the rows'
// post-RoPE K and V (f32 in sc.k, sc.v) in the cache(s) and leaves the attention output in
// sc.attn; the rest (projections, norms, FFN, logits) is the same for every row.
// With mode None, `last_layer` (when >= 0) is the last layer whose work anyone reads: the
// batch stops after that layer's attention (its output projection, FFN and the layers after
// it would feed nothing).
template <typename OnAttnInput, typename KvAttend>
void run_layers(const Model& model, ThreadPool& pool, ForwardScratch& sc, const int32_t* tokens, int64_t n,
                LogitsMode mode, float* logits, OnAttnInput&& on_attn_input, KvAttend&& kv_attend,
                int last_layer = -1) {
  const HParams& hp = model.hp();
  const Weights& w = model.w();
  const int64_t d = hp.n_embd, dh = hp.d_head;
  const int64_t dq = int64_t{hp.n_head} * dh, dkv = int64_t{hp.n_head_kv} * dh;
  for (int64_t t = 0; t < n; ++t) get_row(w.tok_embd, tokens[t], sc.x.data() + t * d);
  if (hp.embd_scale != 1.0f)
    for (int64_t i = 0; i < n * d; ++i) sc.x[i] *= hp.embd_scale;
  sc.rope.build(hp, w.rope_freqs, sc.pos.data(), n);
  if (hp.n_swa > 0) sc.rope_swa.build(hp, w.rope_freqs, sc.pos.data(), n, /*local=*/true);

  for (int il = 0; il < hp.n_layer; ++il) {
    const LayerWeights& l = w.layers[il];
    const RopeTable& rope = hp.is_swa(il) ? sc.rope_swa : sc.rope;
    for (int64_t t = 0; t < n; ++t) rms_norm(sc.x.data() + t * d, l.attn_norm, sc.h.data() + t * d, d, hp.norm_eps);
    on_attn_input(il);
    {  // one dispatch, activations quantized once for all three
      const WeightView wqkv[3] = {l.wq, l.wk, l.wv};
      float* const yqkv[3] = {sc.q.data(), sc.k.data(), sc.v.data()};
      matmul_multi(wqkv, 3, sc.h.data(), n, yqkv, &pool);
    }
    for (int64_t t = 0; t < n; ++t) {
      float* qt = sc.q.data() + t * dq;
      float* kt = sc.k.data() + t * dkv;
      float* vt = sc.v.data() + t * dkv;
      if (l.bq) {
        for (int64_t i = 0; i < dq; ++i) qt[i] += l.bq[i];
        for (int64_t i = 0; i < dkv; ++i) kt[i] += l.bk[i];
        for (int64_t i = 0; i < dkv; ++i) vt[i] += l.bv[i];
      }
      if (l.q_norm) {
        for (int h = 0; h < hp.n_head; ++h) rms_norm(qt + h * dh, l.q_norm, qt + h * dh, dh, hp.norm_eps);
        for (int h = 0; h < hp.n_head_kv; ++h) rms_norm(kt + h * dh, l.k_norm, kt + h * dh, dh, hp.norm_eps);
      }
      const float* c = rope.cos.data() + t * rope.half;
      const float* s = rope.sin.data() + t * rope.half;
      rope_apply(qt, hp.n_head, static_cast<int>(dh), hp.rope_style, c, s);
      rope_apply(kt, hp.n_head_kv, static_cast<int>(dh), hp.rope_style, c, s);
    }
    kv_attend(il);
    if (mode == LogitsMode::None && il == last_layer) return;
    matmul(l.wo, sc.attn.data(), n, sc.h.data(), &pool);
    if (l.attn_post_norm)
      for (int64_t t = 0; t < n; ++t)
        rms_norm(sc.h.data() + t * d, l.attn_post_norm, sc.h.data() + t * d, d, hp.norm_eps);
    for (int64_t i = 0; i < n * d; ++i) sc.x[i] += sc.h[i];

    for (int64_t t = 0; t < n; ++t) rms_norm(sc.x.data() + t * d, l.ffn_norm, sc.h.data() + t * d, d, hp.norm_eps);
    {
      const WeightView wgu[2] = {l.w_gate, l.w_up};
      float* const ygu[2] = {sc.gate.data(), sc.up.data()};
      matmul_multi(wgu, 2, sc.h.data(), n, ygu, &pool);
    }
    {  // gated activation, split over the pool in runs of whole 8-wide vectors (GeGLU: the
       // scalar form's float steps with a correctly rounded tanh, kernels/activation.h)
      const bool gelu = hp.ffn_act == FfnAct::GeluTanh;
      const int64_t total = n * hp.n_ff, run = 4096;
      pool.parallel_for((total + run - 1) / run, [&](int64_t b, int64_t e, int) {
        const int64_t lo = b * run, hi = std::min(total, e * run);
        (gelu ? geglu_tanh_vec : swiglu_vec)(sc.gate.data() + lo, sc.up.data() + lo, sc.gate.data() + lo, hi - lo);
      });
    }
    matmul(l.w_down, sc.gate.data(), n, sc.h.data(), &pool);
    if (l.ffn_post_norm)
      for (int64_t t = 0; t < n; ++t)
        rms_norm(sc.h.data() + t * d, l.ffn_post_norm, sc.h.data() + t * d, d, hp.norm_eps);
    for (int64_t i = 0; i < n * d; ++i) sc.x[i] += sc.h[i];
  }

  if (mode == LogitsMode::None) return;
  const int64_t first = mode == LogitsMode::All ? 0 : n - 1;
  const int64_t m = n - first;
  for (int64_t t = first; t < n; ++t)
    rms_norm(sc.x.data() + t * d, w.output_norm, sc.h.data() + (t - first) * d, d, hp.norm_eps);
  matmul(w.output, sc.h.data(), m, logits, &pool);
  if (hp.logit_softcap > 0.0f) softcap(logits, m * hp.n_vocab, hp.logit_softcap);
}

}  // namespace

void Session::forward(std::span<const int32_t> tokens, LogitsMode mode, std::vector<float>* logits, int64_t n_batch,
                      const std::function<void(int64_t, int64_t)>& progress) {
  const HParams& hp = model_.hp();
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) fail("forward: no tokens to process");
  if (n_pos_ + n > n_ctx_max_)
    fail("context of {} tokens ({} cached + {} new) exceeds the limit of {} tokens", n_pos_ + n, n_pos_, n,
         n_ctx_max_);
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= hp.n_vocab)
      fail("token id {} at index {} is outside the vocabulary [0, {})", tokens[i], i, hp.n_vocab);
  KVZ_ASSERT(mode == LogitsMode::None || logits != nullptr, "logits requested without an output");
  if (logits) logits->assign(mode == LogitsMode::All ? n * hp.n_vocab : (mode == LogitsMode::Last ? hp.n_vocab : 0), 0.0f);
  n_batch = std::max<int64_t>(1, n_batch);
  for (int64_t b = 0; b < n; b += n_batch) {
    const int64_t m = std::min(n_batch, n - b);
    float* out = nullptr;
    LogitsMode bm = LogitsMode::None;
    if (mode == LogitsMode::All) {
      bm = LogitsMode::All;
      out = logits->data() + b * hp.n_vocab;
    } else if (mode == LogitsMode::Last && b + m == n) {
      bm = LogitsMode::Last;
      out = logits->data();
    }
    forward_batch(tokens.data() + b, m, bm, out);
    if (progress) progress(b + m, n);
  }
}

// Appends n rows ([n][n_head_kv] rows of the cache's type in kq / vq) to every head of
// layer il; base_len[ih] receives each head's length before them.
void Session::append_rows(int il, int64_t n, const uint8_t* kq, const uint8_t* vq, const int32_t* pos,
                          std::vector<int64_t>& base_len) {
  const int H = model_.hp().n_head_kv;
  const size_t rb = cache_.row_bytes();
  for (int ih = 0; ih < H; ++ih) {
    base_len[ih] = cache_.seg(il, ih).len;
    for (int64_t t = 0; t < n; ++t) {
      const size_t row = (static_cast<size_t>(t) * H + ih) * rb;
      cache_.append(il, ih, kq + row, vq + row, pos[t]);
    }
  }
}

void Session::forward_batch(const int32_t* tokens, int64_t n, LogitsMode mode, float* logits) {
  const HParams& hp = model_.hp();
  sc_.ensure(hp, n, cache_.row_bytes());
  if (hp.n_swa > 0) trim_windows();
  cache_.reserve_extra(n);
  for (int64_t t = 0; t < n; ++t) sc_.pos[t] = static_cast<int32_t>(n_pos_ + t);
  std::vector<int64_t> base_len(hp.n_head_kv);
  run_layers(
      model_, pool_, sc_, tokens, n, mode, logits,
      [&](int il) {
        if (observer_) observer_->on_attn_input(il, sc_.h.data(), n, cache_, pool_);
      },
      [&](int il) {
        // K/V rows to the cache's storage type: [n][n_head_kv] rows of rb bytes.
        f32_to_kv_rows(cache_.type(), sc_.k.data(), sc_.kq.data(), n * hp.n_head_kv, hp.d_head);
        f32_to_kv_rows(cache_.type(), sc_.v.data(), sc_.vq.data(), n * hp.n_head_kv, hp.d_head);
        append_rows(il, n, sc_.kq.data(), sc_.vq.data(), sc_.pos.data(), base_len);
        if (observer_) observer_->on_layer(il, sc_.q.data(), n, cache_, pool_);
        attention(il, n, base_len);
        if (observer_) observer_->after_attention(il, pool_);
      },
      observer_ ? observer_->last_layer() : -1);
  n_pos_ += n;
}

void Session::forward_step(std::span<Session* const> ss, std::span<const int32_t> tokens, float* logits,
                           ForwardScratch& sc) {
  const int64_t n = static_cast<int64_t>(ss.size());
  KVZ_ASSERT(n > 0 && tokens.size() == ss.size() && n <= kAttnMaxRows, "forward_step of {} sessions, {} tokens", n,
             tokens.size());
  const Model& model = ss[0]->model_;
  ThreadPool& pool = ss[0]->pool_;
  const HParams& hp = model.hp();
  size_t rb_max = 0;
  for (int64_t i = 0; i < n; ++i) {
    Session& s = *ss[i];
    KVZ_ASSERT(&s.model_ == &model && &s.pool_ == &pool && !s.observer_, "forward_step: mixed sessions");
    if (s.n_pos_ + 1 > s.n_ctx_max_)
      fail("context of {} tokens exceeds the limit of {} tokens", s.n_pos_ + 1, s.n_ctx_max_);
    if (tokens[i] < 0 || tokens[i] >= hp.n_vocab)
      fail("token id {} is outside the vocabulary [0, {})", tokens[i], hp.n_vocab);
    if (hp.n_swa > 0) s.trim_windows();
    s.cache_.reserve_extra(1);
    rb_max = std::max(rb_max, s.cache_.row_bytes());
    for (int64_t j = 0; j < i; ++j) KVZ_ASSERT(ss[j] != ss[i], "forward_step: a session appears twice");
  }
  sc.ensure(hp, n, rb_max);
  for (int64_t i = 0; i < n; ++i) sc.pos[i] = static_cast<int32_t>(ss[i]->n_pos_);
  const int G = hp.n_group(), H = hp.n_head_kv;
  const int64_t dh = hp.d_head, dq = int64_t{hp.n_head} * dh, dkv = int64_t{H} * dh;
  const float scale = hp.softmax_scale();
  run_layers(
      model, pool, sc, tokens.data(), n, LogitsMode::All, logits, [](int) {},
      [&](int il) {
        const bool local = hp.is_swa(il);
        for (int64_t i = 0; i < n; ++i) {  // each row's K/V to its own session, in its cache's type
          Session& s = *ss[i];
          const size_t rb = s.cache_.row_bytes();
          uint8_t* kq = sc.kq.data() + i * H * rb_max;
          uint8_t* vq = sc.vq.data() + i * H * rb_max;
          f32_to_kv_rows(s.cache_.type(), sc.k.data() + i * dkv, kq, H, hp.d_head);
          f32_to_kv_rows(s.cache_.type(), sc.v.data() + i * dkv, vq, H, hp.d_head);
          for (int ih = 0; ih < H; ++ih) s.cache_.append(il, ih, kq + ih * rb, vq + ih * rb, sc.pos[i]);
        }
        // One item per (row, KV head): the G query heads of the group over that head's rows.
        pool.parallel_for(n * H, [&](int64_t begin, int64_t end, int) {
          for (int64_t item = begin; item < end; ++item) {
            const int64_t i = item / H;
            const int ih = static_cast<int>(item % H);
            const Session& s = *ss[i];
            const HeadSegment& seg = s.cache_.seg(il, ih);
            int64_t start[kAttnMaxRows], limit[kAttnMaxRows];
            const int64_t first = local ? s.window_start(seg, seg.len, sc.pos[i]) : 0;
            for (int g = 0; g < G; ++g) {
              start[g] = first;
              limit[g] = seg.len;
            }
            const int64_t off = i * dq + int64_t{ih} * G * dh;
            attend_head(sc.q.data() + off, dh, G, local ? start : nullptr, limit, seg.k.get(), seg.v.get(),
                        s.cache_.type(), static_cast<int>(dh), scale, sc.attn.data() + off, dh);
          }
        });
      });
  for (int64_t i = 0; i < n; ++i) ss[i]->n_pos_ += 1;
}

// Attention of the batch's queries over each KV head's segment. Work items are
// (KV head, block of tokens); each item reads its head's K/V once for the G query heads
// of the group and the tokens of the block. Items are claimed dynamically (a worker that
// is not scheduled never holds up the step), latest blocks first: they attend to the most
// keys, and longest-first claiming keeps the causal triangle balanced. In a sliding-window
// layer token t sees the rows with positions > pos_t - n_swa: its first row is found by
// position, since rows are in increasing position order.
// First row of a sliding-window head that a query at position `pos` sees, among the head's
// first `visible` rows (keys at positions > pos - n_swa).
int64_t Session::window_start(const HeadSegment& s, int64_t visible, int32_t pos) const {
  return std::lower_bound(s.pos.get(), s.pos.get() + visible, int64_t{pos} - model_.hp().n_swa + 1) - s.pos.get();
}

void Session::attention(int il, int64_t n, const std::vector<int64_t>& base_len) {
  const HParams& hp = model_.hp();
  const int G = hp.n_group();
  const int64_t dh = hp.d_head, dq = int64_t{hp.n_head} * dh;
  const int64_t tb = std::max<int64_t>(1, kAttnMaxRows / G);  // tokens per block
  const int64_t n_blocks = (n + tb - 1) / tb;
  const int64_t n_items = n_blocks * hp.n_head_kv;
  const float scale = hp.softmax_scale();
  const bool local = hp.is_swa(il);
  // Decode-shaped batches take the split-K path whatever the thread count (it is chosen by
  // the cache lengths alone), so one thread and many give the same logits bitwise.
  LayerObserver* tap = observer_ && observer_->captures_logits(il) ? observer_ : nullptr;
  if (n_blocks == 1 && !tap && attention_split(il, n, base_len)) return;
  pool_.parallel_for(n_items, [&](int64_t begin, int64_t end, int ith) {
    thread_local std::vector<float> qbuf, obuf;
    thread_local std::vector<int64_t> limit, start;
    qbuf.resize(kAttnMaxRows * dh);
    obuf.resize(kAttnMaxRows * dh);
    limit.resize(kAttnMaxRows);
    start.resize(kAttnMaxRows);
    for (int64_t item = begin; item < end; ++item) {
      const int ih = static_cast<int>(item % hp.n_head_kv);
      const int64_t t0 = (n_blocks - 1 - item / hp.n_head_kv) * tb;
      const int64_t nt = std::min(tb, n - t0);
      const HeadSegment& s = cache_.seg(il, ih);
      int rows = 0;
      for (int64_t t = t0; t < t0 + nt; ++t) {
        const int64_t first = local ? window_start(s, base_len[ih] + t + 1, sc_.pos[t]) : 0;
        for (int g = 0; g < G; ++g, ++rows) {
          std::memcpy(qbuf.data() + rows * dh, sc_.q.data() + t * dq + (int64_t{ih} * G + g) * dh, dh * sizeof(float));
          limit[rows] = base_len[ih] + (t + 1);
          start[rows] = first;
        }
      }
      if (tap) {
        LogitCapture cap;
        tap->logit_capture(il, ih, ith, t0, nt, cap);
        attend_head_capture(qbuf.data(), dh, rows, local ? start.data() : nullptr, limit.data(), s.k.get(),
                            s.v.get(), cache_.type(), static_cast<int>(dh), scale, obuf.data(), dh, nullptr, cap);
        tap->on_logits(il, ih, ith, t0, nt, cap);
      } else {
        attend_head(qbuf.data(), dh, rows, local ? start.data() : nullptr, limit.data(), s.k.get(), s.v.get(),
                    cache_.type(), static_cast<int>(dh), scale, obuf.data(), dh);
      }
      rows = 0;
      for (int64_t t = t0; t < t0 + nt; ++t)
        for (int g = 0; g < G; ++g, ++rows)
          std::memcpy(sc_.attn.data() + t * dq + (int64_t{ih} * G + g) * dh, obuf.data() + rows * dh, dh * sizeof(float));
    }
  });
}

// Split-K attention for decode-shaped batches (one block of at most kAttnMaxRows / G
// tokens). With one work item per KV head the threads would idle: SmolLM2 has 3 KV heads for
// 2 threads, Gemma 3 270M has 1, and after KVzip pruning the heads differ in length. Here
// each head's key range is cut into parts of about kSplitPart keys, each part is a work
// item (attend_head over [lo, hi) with its log-sum-exp), and the parts of a head are merged
// in part order: out = sum_p exp(lse_p - LSE) out_p. The parts depend on the head lengths
// only, never on the number of threads (docs/kernels.md, "Determinism"): a split chosen per
// thread count changed greedy answers between -t 1 and -t 2. Returns false (nothing done)
// when the cache is too short for splitting to pay.
bool Session::attention_split(int il, int64_t n, const std::vector<int64_t>& base_len) {
  const HParams& hp = model_.hp();
  const int G = hp.n_group(), H = hp.n_head_kv;
  const int64_t dh = hp.d_head, dq = int64_t{hp.n_head} * dh;
  const int rows = static_cast<int>(n) * G;
  const bool local = hp.is_swa(il);
  // Per head: the rows' key ranges [first[t], base_len + t + 1), and their union.
  split_first_.resize(static_cast<size_t>(H) * n);
  int64_t total = 0;
  for (int ih = 0; ih < H; ++ih) {
    const HeadSegment& s = cache_.seg(il, ih);
    for (int64_t t = 0; t < n; ++t)
      split_first_[ih * n + t] =
          local ? window_start(s, base_len[ih] + t + 1, sc_.pos[t]) : 0;
    total += base_len[ih] + n - split_first_[ih * n];
  }
  // Parts of about kSplitPart keys (rounded to the nearest count, at least one and at most
  // kMaxSplitParts per head); dynamic claiming spreads them over the threads. 512 keys are
  // 64 KB of f16 K+V for d_head 64: long enough that a part's fixed cost (the call, the
  // merge: G rows of d_head per part) stays small at one thread, short enough that SmolLM2's
  // 3 heads of a 1,000-token cache give 6 parts for 2 or 3 threads to share. The cap keeps
  // that cost bounded at long contexts (16 parts of 1,024 keys per head at 16K), where
  // 3 x 16 parts still balance any thread count up to about 12.
  constexpr int64_t kSplitPart = 512, kMaxSplitParts = 16;
  if (total < 2 * kSplitPart) return false;
  split_items_.clear();
  for (int ih = 0; ih < H; ++ih) {
    const int64_t lo = split_first_[ih * n], hi = base_len[ih] + n;
    const int64_t np = std::clamp<int64_t>((hi - lo + kSplitPart / 2) / kSplitPart, 1, kMaxSplitParts);
    for (int64_t p = 0; p < np; ++p) split_items_.push_back({ih, lo + (hi - lo) * p / np, lo + (hi - lo) * (p + 1) / np});
  }
  const size_t n_items = split_items_.size();
  split_out_.resize(n_items * rows * dh);
  split_lse_.resize(n_items * rows);
  const float scale = hp.softmax_scale();
  pool_.parallel_for(static_cast<int64_t>(n_items), [&](int64_t begin, int64_t end, int) {
    thread_local std::vector<float> qbuf;
    thread_local std::vector<int64_t> limit, start;
    qbuf.resize(kAttnMaxRows * dh);
    limit.resize(kAttnMaxRows);
    start.resize(kAttnMaxRows);
    for (int64_t item = begin; item < end; ++item) {
      const SplitItem& it = split_items_[static_cast<size_t>(item)];
      const HeadSegment& s = cache_.seg(il, it.ih);
      int r = 0;
      for (int64_t t = 0; t < n; ++t)
        for (int g = 0; g < G; ++g, ++r) {
          std::memcpy(qbuf.data() + r * dh, sc_.q.data() + t * dq + (int64_t{it.ih} * G + g) * dh, dh * sizeof(float));
          start[r] = std::max(split_first_[it.ih * n + t], it.lo);
          limit[r] = std::min(base_len[it.ih] + t + 1, it.hi);
        }
      attend_head(qbuf.data(), dh, rows, start.data(), limit.data(), s.k.get(), s.v.get(), cache_.type(),
                  static_cast<int>(dh), scale,
                  split_out_.data() + item * rows * dh, dh, split_lse_.data() + item * rows);
    }
  });
  // Merge the parts of each head (they are consecutive items).
  for (size_t i0 = 0; i0 < n_items;) {
    const int ih = split_items_[i0].ih;
    size_t i1 = i0;
    while (i1 < n_items && split_items_[i1].ih == ih) ++i1;
    for (int r = 0; r < rows; ++r) {
      float m = -std::numeric_limits<float>::infinity();
      for (size_t i = i0; i < i1; ++i) m = std::max(m, split_lse_[i * rows + r]);
      float* dst = sc_.attn.data() + (r / G) * dq + (int64_t{ih} * G + r % G) * dh;
      std::fill(dst, dst + dh, 0.0f);
      if (m == -std::numeric_limits<float>::infinity()) continue;  // no keys at all: zeros, as attend_head
      double wsum = 0;
      for (size_t i = i0; i < i1; ++i) wsum += std::exp(static_cast<double>(split_lse_[i * rows + r] - m));
      for (size_t i = i0; i < i1; ++i) {
        const float w = static_cast<float>(std::exp(static_cast<double>(split_lse_[i * rows + r] - m)) / wsum);
        if (w == 0.0f) continue;
        const float* src = split_out_.data() + (i * rows + r) * dh;
        for (int64_t c = 0; c < dh; ++c) dst[c] += w * src[c];
      }
    }
    i0 = i1;
  }
  return true;
}

}  // namespace kvz
