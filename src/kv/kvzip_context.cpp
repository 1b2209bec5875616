#include "kv/kvzip_context.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "io/context_store.h"

namespace kvz {

namespace {
std::string strip(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}
}  // namespace

KvzipTemplate model_kvzip_template(const Model& m, const std::string& task, bool think_block) {
  const auto& vocab = m.tokenizer().vocab();
  const ChatFamily fam = detect_chat_family(vocab.chat_template);
  const bool has_bos = vocab.add_bos && vocab.bos_id >= 0 && vocab.bos_id < static_cast<int32_t>(vocab.tokens.size());
  return kvzip_template(fam, task, think_block, has_bos ? vocab.tokens[vocab.bos_id] : "");
}

std::vector<int32_t> kvzip_question_ids(const Model& m, const KvzipTemplate& t, const std::string& question) {
  // Template pieces contain special-token text that must map to single ids; no BOS is
  // added automatically (kvzip-spec §9.5).
  std::vector<int32_t> ids = m.tokenizer().encode("\n\n" + strip(question), false, true);
  const std::vector<int32_t> post = m.tokenizer().encode(t.postfix, false, true);
  ids.insert(ids.end(), post.begin(), post.end());
  return ids;
}

KvzipRepeatPrompt kvzip_repeat_prompt(const Model& m, const KvzipTemplate& t) {
  // Template pieces contain special-token text that must map to single ids; no BOS.
  auto enc = [&](const std::string& x) { return m.tokenizer().encode(x, false, true); };
  KvzipRepeatPrompt rp;
  rp.first = enc(t.repeat_first);
  rp.next = enc(t.repeat_next);
  rp.postfix = enc(t.postfix);
  return rp;
}

int64_t compress_positions_needed(int64_t n_sys, int64_t n_ctx, const Press& press, const KvzipRepeatPrompt& rp) {
  return n_sys + n_ctx + press.positions_after_context(n_ctx, kvzip_repeat_overhead(rp));
}

WindowFit check_window(int64_t n_sys, int64_t n_ctx, int64_t window, std::span<const int64_t> scoring,
                       int64_t answer_room) {
  WindowFit f;
  f.n_ctx = n_ctx;
  f.n_sys = n_sys;
  f.window = window;
  if (n_ctx <= 0) {
    f.fails = WindowFit::Fails::no_tokens;
  } else if (n_sys + n_ctx > window) {
    f.fails = WindowFit::Fails::context;
  } else {
    for (size_t i = 0; i < scoring.size(); ++i)
      if (scoring[i] > window) {
        f.fails = WindowFit::Fails::scoring;
        f.need = scoring[i];
        f.pass = i;
        return f;
      }
    if (answer_room > 0 && n_sys + n_ctx + answer_room > window) {
      f.fails = WindowFit::Fails::answers;
      f.need = answer_room;
    }
  }
  return f;
}

KvzipContext::KvzipContext(const Model& model, ThreadPool& pool, ContextOptions opt)
    : model_(model), opt_(std::move(opt)), session_(model, pool, opt_.n_ctx_max, opt_.kv_type) {
  tmpl_ = model_kvzip_template(model, opt_.task, opt_.think_block);
  sys_ids_ = enc(tmpl_.prefix);
  postfix_ids_ = enc(tmpl_.postfix);
  n_sys_ = static_cast<int64_t>(sys_ids_.size());
}

std::vector<int32_t> KvzipContext::enc(const std::string& s) const {
  // Template pieces contain special-token text that must map to single ids; no BOS is
  // added automatically (kvzip-spec §9.5).
  return model_.tokenizer().encode(s, /*add_special=*/false, /*parse_special=*/true);
}

void KvzipContext::prefill(const std::string& context, const std::function<void(int64_t, int64_t)>& progress) {
  prefill_ids(model_.tokenizer().encode(context, false, /*parse_special=*/false), progress);
}

void KvzipContext::prefill_ids(const std::vector<int32_t>& ctx_ids, const std::function<void(int64_t, int64_t)>& progress) {
  if (ctx_ids.empty()) fail("the context is empty");
  if (n_sys_ + static_cast<int64_t>(ctx_ids.size()) > session_.n_ctx_max())
    fail("context of {} tokens (+{} system prompt) does not fit the limit of {} tokens", ctx_ids.size(), n_sys_,
         session_.n_ctx_max());
  session_.reset();
  full_.reset();
  scores_ = HeadScores{};
  pruned_ = false;
  ctx_ids_ = ctx_ids;
  std::vector<int32_t> ids = sys_ids_;
  ids.insert(ids.end(), ctx_ids.begin(), ctx_ids.end());
  session_.forward(ids, LogitsMode::None, nullptr, opt_.n_batch, progress);
}

const HeadScores& KvzipContext::score(const std::function<void(int64_t, int64_t)>& progress) {
  if (ctx_ids_.empty()) fail("score: no context was prefilled");
  if (pruned_ && !full_) fail("score: the context is already pruned; scoring needs the full cache");
  restore_full();  // retain_full: score again from the unpruned context
  scores_ = kvzip_score(session_, n_sys_, ctx_ids_, kvzip_repeat_prompt(model_, tmpl_), opt_.scoring, progress);
  return scores_;
}

int64_t KvzipContext::positions_needed(int64_t n_ctx, const Press* press) const {
  const KvzipRepeatPrompt rp = kvzip_repeat_prompt(model_, tmpl_);
  if (press) return compress_positions_needed(n_sys_, n_ctx, *press, rp);
  return n_sys_ + n_ctx + kvzip_min_positions_after(n_ctx, kvzip_repeat_overhead(rp), opt_.scoring.chunk);
}

std::vector<int32_t> KvzipContext::question_ids(const std::string& question) const {
  return kvzip_question_ids(model_, tmpl_, question);
}

void KvzipContext::restore_full() {
  if (!pruned_) return;
  if (!full_) fail("the context is already pruned; scoring needs the full cache (create the context with retain_full)");
  session_.cache() = full_->clone();
  session_.set_n_pos(n_sys_ + n_ctx());
  pruned_ = false;
}

const HeadScores& KvzipContext::score(Press& press, const std::string& question,
                                      const std::function<void(int64_t, int64_t)>& progress) {
  if (ctx_ids_.empty()) fail("score: no context was prefilled");
  restore_full();
  const std::vector<int32_t> q = question.empty() ? std::vector<int32_t>{} : question_ids(question);
  if (session_.n_pos() + static_cast<int64_t>(q.size()) > session_.n_ctx_max())
    fail("context plus question ({} + {} tokens) exceed the limit of {}", session_.n_pos(), q.size(), session_.n_ctx_max());
  const KvzipRepeatPrompt rp = kvzip_repeat_prompt(model_, tmpl_);
  PressInput in{session_, n_sys_, sys_ids_, ctx_ids_, q, rp, progress};
  HeadScores s = press.score(in);
  // Sliding-window layers are never evicted; whatever a press computed there is not a score.
  for (int il = 0; il < model_.hp().n_layer; ++il)
    for (int ih = 0; ih < model_.hp().n_head_kv && model_.hp().is_swa(il); ++ih)
      std::fill(s.head(il, ih), s.head(il, ih) + s.n_ctx, 0.0f);
  set_scores(std::move(s));
  return scores_;
}

PruneReport KvzipContext::compress(Press& press, SelectOptions o, const std::string& question,
                                   const std::function<void(int64_t, int64_t)>& progress) {
  score(press, question, progress);
  return prune(press, std::move(o));
}

PruneReport KvzipContext::prune(const Press& press, SelectOptions o) {
  fill_layer_ratios(press, o);
  return prune(o);
}

void KvzipContext::fill_layer_ratios(const Press& press, SelectOptions& o) const {
  if (o.layer_ratios.empty()) {
    // Per-layer budgets (PyramidKV) are laid out over the evictable layers only; a
    // sliding-window layer keeps its window (ratio 1, ignored by the selection).
    const std::vector<uint8_t> ev = evictable_layers();
    const int n_ev = static_cast<int>(std::count(ev.begin(), ev.end(), 1));
    const std::vector<double> r = press.layer_ratios(n_ev, n_ctx(), o.ratio);
    if (!r.empty()) {
      o.layer_ratios.assign(ev.size(), 1.0);
      for (size_t il = 0, j = 0; il < ev.size(); ++il)
        if (ev[il]) o.layer_ratios[il] = r[j++];
    }
  }
}

void KvzipContext::set_scores(HeadScores s) {
  const HParams& hp = model_.hp();
  if (s.n_layer != hp.n_layer || s.n_head_kv != hp.n_head_kv || s.n_ctx != n_ctx())
    fail("scores of shape [{}][{}][{}] do not fit this context [{}][{}][{}]", s.n_layer, s.n_head_kv, s.n_ctx,
         hp.n_layer, hp.n_head_kv, n_ctx());
  scores_ = std::move(s);
}

std::vector<uint8_t> KvzipContext::evictable_layers() const {
  const HParams& hp = model_.hp();
  std::vector<uint8_t> e(hp.n_layer, 1);
  for (int il = 0; il < hp.n_layer; ++il) e[il] = !hp.is_swa(il);
  return e;
}

PruneReport KvzipContext::prune(const SelectOptions& o) {
  if (!has_scores()) fail("prune: no scores; run score() first");
  SelectOptions so = o;
  if (so.evictable.empty()) so.evictable = evictable_layers();
  return apply_mask(select_pairs(scores_, so), o.ratio);
}

PruneReport KvzipContext::prune_heads(const std::vector<float>& head_scores, double ratio) {
  const HParams& hp = model_.hp();
  return apply_mask(select_heads(head_scores, hp.n_layer, hp.n_head_kv, n_ctx(), ratio, evictable_layers()), ratio);
}

PruneReport KvzipContext::apply_mask(const KeepMask& m, double ratio) {
  if (ctx_ids_.empty()) fail("prune: no context was prefilled");
  KvCache& cache = session_.cache();
  if (pruned_) {
    if (!full_) fail("prune: this context was already pruned; create it with retain_full to prune again");
    cache = full_->clone();
  } else if (opt_.retain_full) {
    full_ = std::make_unique<KvCache>(cache.clone());
  }
  PruneReport r;
  r.ratio_requested = ratio;
  r.ratio_true = m.ratio_true();
  r.kv_bytes_before = cache.bytes_used();
  const int64_t n_full = n_sys_ + n_ctx();
  std::vector<uint8_t> rows;
  for (int il = 0; il < cache.n_layer(); ++il)
    for (int ih = 0; ih < cache.n_head_kv() && !model_.hp().is_swa(il); ++ih) {  // local layers keep their window
      const HeadSegment& s = cache.seg(il, ih);
      KVZ_ASSERT(s.len >= n_full, "head ({}, {}) has {} rows, fewer than the context's {}", il, ih, s.len, n_full);
      rows.assign(s.len, 1);  // sys prompt and any turns after the context are always kept
      const uint8_t* k = m.head(il, ih);
      for (int64_t t = 0; t < n_ctx(); ++t) rows[n_sys_ + t] = k[t];
      cache.compact(il, ih, rows.data(), /*reserve=*/64);
    }
  session_.shrink_windows();  // sliding-window layers: keep only the rows still visible
  r.kv_bytes_after = cache.bytes_used();
  pruned_ = true;
  return r;
}

std::vector<uint8_t> KvzipContext::kept_mask() const {
  const KvCache& cache = session_.cache();
  const int64_t n = n_ctx();
  std::vector<uint8_t> keep(static_cast<size_t>(cache.n_layer()) * cache.n_head_kv() * n, 0);
  for (int il = 0; il < cache.n_layer(); ++il)
    for (int ih = 0; ih < cache.n_head_kv(); ++ih) {
      const HeadSegment& s = cache.seg(il, ih);
      uint8_t* k = keep.data() + (static_cast<size_t>(il) * cache.n_head_kv() + ih) * n;
      for (int64_t r = 0; r < s.len; ++r) {
        const int64_t t = s.pos[r] - n_sys_;
        if (t >= 0 && t < n) k[t] = 1;
      }
    }
  return keep;
}

double KvzipContext::ratio_kept() const {
  const HParams& hp = model_.hp();
  const std::vector<uint8_t> keep = kept_mask();
  const size_t per_layer = static_cast<size_t>(hp.n_head_kv) * n_ctx();
  int64_t kept = 0, total = 0;
  for (int il = 0; il < hp.n_layer; ++il) {
    if (hp.is_swa(il)) continue;  // never pruned, outside the budget (as PruneReport)
    const auto b = keep.begin() + static_cast<std::ptrdiff_t>(il * per_layer);
    kept += std::count(b, b + static_cast<std::ptrdiff_t>(per_layer), uint8_t{1});
    total += static_cast<int64_t>(per_layer);
  }
  return total == 0 ? 1.0 : static_cast<double>(kept) / total;
}

PruneReport KvzipContext::reprune(SelectOptions o, const Press* press) {
  if (ctx_ids_.empty()) fail("prune: no context was prefilled");
  if (press) fill_layer_ratios(*press, o);
  if (!pruned_ || full_) return prune(o);
  if (!has_scores()) fail("prune: the context holds no scores to prune it again by");
  const double have = ratio_kept();
  const HParams& hp = model_.hp();
  int64_t n_total = 0;  // the evictable layers' context pairs
  for (int il = 0; il < hp.n_layer; ++il) n_total += hp.is_swa(il) ? 0 : int64_t{hp.n_head_kv} * n_ctx();
  if ((o.ratio - have) * static_cast<double>(n_total) >= 1.0)
    fail("prune: ratio {} keeps more than the {:.4f} this context still holds; a higher ratio needs the full cache",
         o.ratio, have);
  const std::vector<uint8_t> kept = kept_mask();
  HeadScores s = scores_;  // evicted pairs rank below every kept one
  for (size_t i = 0; i < s.v.size(); ++i)
    if (!kept[i]) s.v[i] = std::numeric_limits<float>::lowest();
  SelectOptions so = o;
  if (so.evictable.empty()) so.evictable = evictable_layers();
  KeepMask m = select_pairs(s, so);
  m.n_kept = 0;
  for (int il = 0; il < hp.n_layer; ++il)
    for (int ih = 0; ih < hp.n_head_kv; ++ih) {
      uint8_t* k = m.keep.data() + (static_cast<size_t>(il) * hp.n_head_kv + ih) * n_ctx();
      const uint8_t* have_k = kept.data() + (static_cast<size_t>(il) * hp.n_head_kv + ih) * n_ctx();
      for (int64_t t = 0; t < n_ctx(); ++t) k[t] &= have_k[t];
      if (!hp.is_swa(il)) m.n_kept += std::count(k, k + n_ctx(), uint8_t{1});
    }
  KvCache& cache = session_.cache();
  PruneReport r;
  r.ratio_requested = o.ratio;
  r.ratio_true = m.ratio_true();
  r.kv_bytes_before = cache.bytes_used();
  std::vector<uint8_t> rows;
  for (int il = 0; il < cache.n_layer(); ++il)
    for (int ih = 0; ih < cache.n_head_kv() && !hp.is_swa(il); ++ih) {
      const HeadSegment& seg = cache.seg(il, ih);
      rows.assign(seg.len, 1);  // sys prompt and any turns after the context are always kept
      const uint8_t* k = m.head(il, ih);
      for (int64_t row = 0; row < seg.len; ++row) {
        const int64_t t = seg.pos[row] - n_sys_;
        if (t >= 0 && t < n_ctx()) rows[row] = k[t];
      }
      cache.compact(il, ih, rows.data(), /*reserve=*/64);
    }
  r.kv_bytes_after = cache.bytes_used();
  return r;
}

void KvzipContext::convert_kv(KvType t) {
  if (session_.cache().type() == t) return;
  session_.cache() = session_.cache().converted(t);
  if (full_) *full_ = full_->converted(t);
}

QueryResult KvzipContext::query(const std::string& question, const GenerateParams& p, bool update_cache,
                                const std::function<bool(int32_t)>& on_token) {
  if (ctx_ids_.empty()) fail("query: no context was prefilled");
  return query_ids(question_ids(question), p, update_cache, on_token);
}

QueryResult KvzipContext::query_ids(const std::vector<int32_t>& ids, const GenerateParams& p, bool update_cache,
                                    const std::function<bool(int32_t)>& on_token,
                                    const std::function<void(int64_t, int64_t)>& prefill_progress) {
  if (ctx_ids_.empty()) fail("query: no context was prefilled");
  const Session::Checkpoint before = session_.checkpoint();
  QueryResult r;
  const Tokenizer& tok = model_.tokenizer();
  try {
    r.stats = generate(session_, ids, p, on_token, &r.answer_ids, prefill_progress);
  } catch (...) {
    session_.restore(before);  // a failed query loses nothing
    throw;
  }
  if (!r.answer_ids.empty() && tok.is_eog(r.answer_ids.back())) {
    r.end_id = r.answer_ids.back();
    r.answer_ids.pop_back();
  }
  r.answer = tok.decode(r.answer_ids, /*skip_special=*/true);
  if (!update_cache) session_.restore(before);
  return r;
}

std::vector<float> KvzipContext::answer_logprobs(const std::string& question, const std::vector<int32_t>& targets) {
  if (ctx_ids_.empty()) fail("answer_logprobs: no context was prefilled");
  if (targets.empty()) return {};
  std::vector<int32_t> ids = question_ids(question);
  const size_t n_query = ids.size();
  ids.insert(ids.end(), targets.begin(), targets.end() - 1);  // the last target is only predicted
  const Session::Checkpoint before = session_.checkpoint();  // exact, rolled windows included
  std::vector<float> logits;  // [ids.size()][n_vocab]
  try {
    session_.forward(ids, LogitsMode::All, &logits);
  } catch (...) {
    session_.restore(before);
    throw;
  }
  session_.restore(before);
  const size_t n_vocab = static_cast<size_t>(model_.hp().n_vocab);
  std::vector<float> out(targets.size() * n_vocab);
  for (size_t i = 0; i < targets.size(); ++i) {
    const float* row = logits.data() + (n_query - 1 + i) * n_vocab;
    float* o = out.data() + i * n_vocab;
    float mx = row[0];
    for (size_t v = 1; v < n_vocab; ++v) mx = std::max(mx, row[v]);
    double sum = 0;
    for (size_t v = 0; v < n_vocab; ++v) sum += std::exp(static_cast<double>(row[v] - mx));
    const float lse = mx + static_cast<float>(std::log(sum));
    for (size_t v = 0; v < n_vocab; ++v) o[v] = row[v] - lse;
  }
  return out;
}

const KvCache& KvzipContext::full_cache() const {
  if (full_) return *full_;  // also while a re-prune scores on the session's cache
  if (!pruned_) return session_.cache();
  fail("this context was pruned and its full cache was not kept (create it with retain_full)");
}

StoredContext KvzipContext::stored() const {
  StoredContext meta;
  meta.n_sys = n_sys_;
  meta.n_pos = session_.n_pos();
  meta.pruned = pruned_;
  meta.sys_ids = sys_ids_;
  meta.ctx_ids = ctx_ids_;
  meta.scores = scores_;
  return meta;
}

void KvzipContext::save(const std::string& path, const std::string& info, bool full_cache) const {
  if (ctx_ids_.empty()) fail("save: no context was prefilled");
  StoredContext meta = stored();
  meta.info = info;
  if (!full_cache || !pruned_) {
    save_context(path, model_.identity(), meta, session_.cache());
    return;
  }
  if (!full_) fail("save: the full cache was not retained (create the context with retain_full)");
  meta.pruned = false;
  meta.n_pos = n_sys_ + n_ctx();
  save_context(path, model_.identity(), meta, *full_);
}

void KvzipContext::load(const std::string& path) {
  StoredContext meta;
  KvCache cache = load_context(path, model_.identity(), meta);  // throws before anything changes
  assign(std::move(meta), std::move(cache), path);
}

void KvzipContext::assign(StoredContext meta, KvCache cache, const std::string& what) {
  if (meta.sys_ids != sys_ids_)
    fail("{}: the context was saved with another system prompt/template ({} tokens, this one {})", what,
         meta.sys_ids.size(), sys_ids_.size());
  if (meta.n_pos > session_.n_ctx_max())
    fail("{}: the context spans {} positions, more than this session's limit of {}", what, meta.n_pos,
         session_.n_ctx_max());
  session_.cache() = std::move(cache);
  session_.set_n_pos(meta.n_pos);
  ctx_ids_ = std::move(meta.ctx_ids);
  scores_ = std::move(meta.scores);
  pruned_ = meta.pruned;
  full_.reset();
}

}  // namespace kvz
