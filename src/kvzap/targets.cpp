#include "kvzap/targets.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/attention.h"
#include "kernels/kvzip_score.h"
#include "tokenizer/chat_template.h"

namespace kvz {

namespace {
constexpr float kMinScore = 1e-30f;  // clamp before the log (upstream has none; §1.1 notes)
}

RepeatSequence kvzap_repeat_sequence(const Model& m, const std::vector<int32_t>& text) {
  const Tokenizer& tok = m.tokenizer();
  const auto& vocab = tok.vocab();
  const std::string instruction = "\n\nRepeat the previous context exactly.";
  std::string pre, mid;
  const ChatFormat fmt = detect_chat_format(vocab.chat_template);
  if (fmt.family != ChatFamily::Unknown) {
    // Render with two sentinels and cut around them: the template's own pieces, whatever
    // the family inserts (default system prompt, BOS, headers).
    const std::string su = "\x01U\x01", sa = "\x01A\x01";
    const std::string r = render_chat(fmt, {{"user", su}, {"assistant", sa}}, false);
    const size_t iu = r.find(su), ia = r.find(sa);
    KVZ_ASSERT(iu != std::string::npos && ia != std::string::npos && iu < ia, "chat template lost its messages");
    pre = r.substr(0, iu);
    mid = instruction + r.substr(iu + su.size(), ia - iu - su.size());
  } else {
    const bool has_bos = vocab.add_bos && vocab.bos_id >= 0 && vocab.bos_id < static_cast<int32_t>(vocab.tokens.size());
    pre = has_bos ? vocab.tokens[vocab.bos_id] : "";
    mid = instruction + "\n\n";
  }
  RepeatSequence s;
  s.ids = tok.encode(pre, false, true);
  s.text0 = static_cast<int64_t>(s.ids.size());
  s.n_text = static_cast<int64_t>(text.size());
  s.ids.insert(s.ids.end(), text.begin(), text.end());
  const std::vector<int32_t> mid_ids = tok.encode(mid, false, true);
  s.ids.insert(s.ids.end(), mid_ids.begin(), mid_ids.end());
  s.rep0 = static_cast<int64_t>(s.ids.size());
  s.ids.insert(s.ids.end(), text.begin(), text.end());
  return s;
}

namespace {

// Collects h at the sampled text rows and the running per-query-head column maxima of
// a^g_{j,i} / ||h_j|| over the repeat rows j, layer by layer as the batches pass.
class TargetObserver final : public LayerObserver {
 public:
  TargetObserver(const HParams& hp, const RepeatSequence& seq, const std::vector<int64_t>& pos,
                 const std::vector<float>& grams, KvzapTargets& out)
      : hp_(hp),
        seq_(seq),
        grams_(grams),
        out_(out),
        slot_(seq.n_text, -1),
        colmax_(static_cast<size_t>(hp.n_layer) * hp.n_head * seq.n_text, 0.0f),
        vnorm_(colmax_.size(), 0.0f),
        have_vnorm_(hp.n_layer, 0) {
    for (size_t p = 0; p < pos.size(); ++p) {
      if (pos[p] < 0 || pos[p] >= seq.n_text)
        fail("kvzap targets: position {} outside the text of {}", pos[p], seq.n_text);
      slot_[pos[p]] = static_cast<int64_t>(p);
    }
  }

  // Sliding-window layers are never evicted, so they get no targets (x and y stay 0): their
  // cache holds only the window, and the repeat rows cannot see the text through it anyway.
  void on_attn_input(int il, const float* h, int64_t n, const KvCache& cache, ThreadPool& pool) override {
    if (hp_.is_swa(il)) return;
    const int64_t row0 = cache.seg(il, 0).len, D = hp_.n_embd;
    for (int64_t t = 0; t < n; ++t) {
      const int64_t row = row0 + t;
      const float* ht = h + t * D;
      if (row >= seq_.text0 && row < seq_.text0 + seq_.n_text) {
        const int64_t p = slot_[row - seq_.text0];
        if (p >= 0) std::memcpy(out_.x.data() + (static_cast<size_t>(il) * out_.n_pos + p) * D, ht, D * sizeof(float));
      }
      if (row >= seq_.rep0) rlw_[row - seq_.rep0] = log_inv_norm(ht, D);
    }
  }

  void on_layer(int il, const float* q, int64_t n, const KvCache& cache, ThreadPool& pool) override {
    if (hp_.is_swa(il)) return;
    const int64_t len = cache.seg(il, 0).len, row0 = len - n;
    const int64_t a = std::max(row0, seq_.rep0), b = len;  // repeat rows of this batch
    if (a >= b) return;
    if (!have_vnorm_[il]) value_norms(il, cache, pool);
    const int nh = hp_.n_head, G = hp_.n_group(), d = hp_.d_head, nth = pool.size();
    const int64_t dq = int64_t{nh} * d, m = seq_.n_text, ctx_end = seq_.text0 + m;
    const int64_t n_blocks = (b - a + kAttnMaxRows - 1) / kAttnMaxRows;
    // Per-thread column maxima: max is exact in any order, so the targets do not depend
    // on the thread count (docs/kernels.md).
    partial_.assign(static_cast<size_t>(nth) * nh * m, 0.0f);
    const float scale = hp_.softmax_scale();
    const size_t rb = cache.row_bytes();
    pool.parallel_for(n_blocks * nh, [&](int64_t begin, int64_t end, int ith) {
      thread_local std::vector<float> qbuf, lw;
      thread_local std::vector<int64_t> lim;
      qbuf.resize(static_cast<size_t>(kAttnMaxRows) * d);
      lw.resize(kAttnMaxRows);
      lim.resize(kAttnMaxRows);
      for (int64_t item = begin; item < end; ++item) {
        const int g = static_cast<int>(item % nh);
        const int64_t r0 = a + (item / nh) * kAttnMaxRows, r1 = std::min(b, r0 + kAttnMaxRows);
        const HeadSegment& s = cache.seg(il, g / G);
        int rows = 0;
        for (int64_t r = r0; r < r1; ++r, ++rows) {
          std::memcpy(qbuf.data() + static_cast<size_t>(rows) * d, q + (r - row0) * dq + int64_t{g} * d,
                      d * sizeof(float));
          lim[rows] = r - ctx_end + 1;  // causal over [middle | repeat]
          lw[rows] = rlw_[r - seq_.rep0];
        }
        ScoreKeys keys{s.k.get(), seq_.text0, s.k.get() + seq_.text0 * rb, m,
                       s.k.get() + ctx_end * rb, cache.type()};
        keys.row_log_w = lw.data();
        kvzip_score_head(qbuf.data(), d, rows, lim.data(), keys, d, scale,
                         partial_.data() + (static_cast<size_t>(ith) * nh + g) * m);
      }
    });
    float* cm = colmax_.data() + static_cast<size_t>(il) * nh * m;
    for (int th = 0; th < nth; ++th)
      for (size_t i = 0; i < static_cast<size_t>(nh) * m; ++i)
        cm[i] = std::max(cm[i], partial_[static_cast<size_t>(th) * nh * m + i]);
  }

  // y at the sampled positions once every layer has seen every repeat row.
  void finish() {
    const int nh = hp_.n_head, G = hp_.n_group(), H = hp_.n_head_kv;
    const int64_t m = seq_.n_text;
    for (int il = 0; il < hp_.n_layer; ++il) {
      if (hp_.is_swa(il)) continue;
      KVZ_ASSERT(have_vnorm_[il], "layer {} saw no repeat rows", il);
      const size_t base = static_cast<size_t>(il) * nh * m;
      for (int64_t i = 0; i < m; ++i) {
        const int64_t p = slot_[i];
        if (p < 0) continue;
        float* y = out_.y.data() + (static_cast<size_t>(il) * out_.n_pos + p) * H;
        for (int ih = 0; ih < H; ++ih) {
          float best = 0.0f;
          for (int g = ih * G; g < (ih + 1) * G; ++g)
            best = std::max(best, vnorm_[base + g * m + i] * colmax_[base + g * m + i]);
          y[ih] = std::log(std::max(best, kMinScore));
        }
      }
    }
  }

  std::vector<float> rlw_;  // [n_text] -log ||h_j|| of the repeat rows, current layer

 private:
  // ||W_O^g v_i|| = sqrt(v_i^T G_g v_i) for every text row and query head of layer il.
  void value_norms(int il, const KvCache& cache, ThreadPool& pool) {
    const int nh = hp_.n_head, G = hp_.n_group(), d = hp_.d_head;
    const int64_t m = seq_.n_text;
    float* dst = vnorm_.data() + static_cast<size_t>(il) * nh * m;
    const float* gl = grams_.data() + static_cast<size_t>(il) * nh * d * d;
    pool.parallel_for(int64_t{nh} * m, [&](int64_t begin, int64_t end, int) {
      std::vector<float> v(d);
      for (int64_t item = begin; item < end; ++item) {
        const int g = static_cast<int>(item / m);
        const int64_t i = item % m;
        cache.values_f32(il, g / G, seq_.text0 + i, 1, v.data());
        dst[static_cast<size_t>(g) * m + i] = output_norm(gl + static_cast<size_t>(g) * d * d, v.data(), d);
      }
    });
    have_vnorm_[il] = 1;
  }

  const HParams& hp_;
  const RepeatSequence& seq_;
  const std::vector<float>& grams_;
  KvzapTargets& out_;
  std::vector<int64_t> slot_;  // [n_text] index into the sampled positions, -1 = not sampled
  std::vector<float> colmax_;  // [L][n_head][n_text] max_j a^g_{j,i} / ||h_j||
  std::vector<float> vnorm_;   // [L][n_head][n_text] ||W_O^g v_i||
  std::vector<uint8_t> have_vnorm_;
  std::vector<float> partial_;  // [n_threads][n_head][n_text]
};

}  // namespace

KvzapTargets kvzip_plus_targets(Session& s, const RepeatSequence& seq, const std::vector<int64_t>& pos,
                                const std::vector<float>& grams, int64_t n_batch) {
  const HParams& hp = s.model().hp();
  KVZ_ASSERT(seq.rep0 + seq.n_text == static_cast<int64_t>(seq.ids.size()) && seq.n_text > 0, "bad repeat sequence");
  KVZ_ASSERT(grams.size() == static_cast<size_t>(hp.n_layer) * hp.n_head * hp.d_head * hp.d_head, "gram size");
  KvzapTargets out;
  out.n_pos = static_cast<int64_t>(pos.size());
  out.x.assign(static_cast<size_t>(hp.n_layer) * out.n_pos * hp.n_embd, 0.0f);
  out.y.assign(static_cast<size_t>(hp.n_layer) * out.n_pos * hp.n_head_kv, 0.0f);
  TargetObserver obs(hp, seq, pos, grams, out);
  obs.rlw_.assign(static_cast<size_t>(seq.n_text), 0.0f);
  s.reset();
  s.set_observer(&obs);
  struct Unhook {
    Session& s;
    ~Unhook() {
      s.set_observer(nullptr);
      s.reset();
    }
  } unhook{s};
  s.forward(seq.ids, LogitsMode::None, nullptr, n_batch);
  obs.finish();
  return out;
}

}  // namespace kvz
