#include "model/model.h"

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>

#include "core/error.h"
#include "io/gguf.h"
#include "model/hf_source.h"
#include "model/identity.h"
#include "model/validate.h"

namespace kvz {

float HParams::softmax_scale() const {
  return attn_scale > 0.0f ? attn_scale : 1.0f / std::sqrt(static_cast<float>(d_head));
}

namespace {
size_t view_bytes(const WeightView& v) { return v.data ? row_bytes(v.type, v.n_in) * v.n_out : 0; }

// Every weight matrix (a tied output is tok_embd's view, listed twice).
std::vector<WeightView*> matrices(Weights& w) {
  std::vector<WeightView*> m = {&w.tok_embd, &w.output};
  for (auto& l : w.layers)
    for (WeightView* v : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) m.push_back(v);
  return m;
}
}  // namespace

HParams model_hparams(const TensorSource& f) {
  const ArchSpec& spec = arch_of(f);
  HParams hp;
  hp.arch = spec.name;
  hp.name = f.get_str_opt("general.name").value_or("");
  spec.hparams(f, hp);
  validate_hparams(hp, f);
  return hp;
}

std::unique_ptr<Model> Model::load(const std::string& path, const std::function<void(double)>& progress,
                                   const LoadOptions& opt) {
  auto m = std::make_unique<Model>();
  const bool hf = is_model_dir(path);
  if (hf)
    m->file_ = HfSource::open(path, opt);
  else
    m->file_ = GgufFile::open(path);
  const TensorSource& f = *m->file_;
  // Hyper-parameters checked before any tensor is looked at, then the tensors against them.
  m->hp_ = model_hparams(f);
  arch_of(f).load(f, m->hp_, m->w_);
  VocabData vocab = hf ? vocab_from_hf(path) : vocab_from_gguf(f);
  validate_weights(m->hp_, m->w_, vocab, f);
  const int n_tok = static_cast<int>(vocab.tokens.size());
  // HF embeddings may have more rows than the tokenizer has tokens (Qwen2.5: 151936 vs
  // 151665); the extra ids become unused placeholder tokens, as convert_hf_to_gguf.py does.
  if (n_tok < m->hp_.n_vocab) {
    if (vocab.types.empty()) vocab.types.assign(n_tok, TokenType::Normal);
    for (int id = n_tok; id < m->hp_.n_vocab; ++id) {
      vocab.tokens.push_back(fmt::format("[PAD{}]", id));
      vocab.types.push_back(TokenType::Unused);
      if (!vocab.scores.empty()) vocab.scores.push_back(0.0f);
    }
  }
  m->tok_ = std::make_unique<Tokenizer>(std::move(vocab));

  // Touch every weight page once so the first generated token does not pay for page
  // faults; this is also where a slow disk shows, hence the progress callback.
  size_t total = 0;
  for (const auto& t : f.tensors()) total += t.n_bytes;
  size_t done = 0;
  volatile uint8_t sink = 0;
  for (const auto& t : f.tensors()) {
    for (size_t off = 0; off < t.n_bytes; off += 4096) sink = sink + t.data[off];
    done += t.n_bytes;
    if (progress) progress(total ? static_cast<double>(done) / total : 1.0);
  }
  // The identity samples the first bytes of every tensor: taken before the interleaving
  // releases the file's pages, or those reads would map them again (on kernels with large
  // page-cache folios, whole megabytes around each sample: 37 MiB of SmolLM2's 94 MiB).
  m->id_ = model_identity(*m);
  if (opt.interleave) m->interleave_weights();
  // The tokenizer has its own copy of the vocabulary and merges (3.5 MB of SmolLM2's metadata).
  m->file_->release_arrays(256);
  return m;
}

Model::Mapping::~Mapping() {
  if (base) ::munmap(base, mapped);
}

void Model::interleave_weights() {
  // Every matrix the kernels can read interleaved, once (a tied output shares tok_embd).
  std::vector<WeightView*> views;
  for (WeightView* v : matrices(w_)) {
    const int group = interleave_group(v->type);
    if (v->data && v->interleave == 1 && group && v->n_out >= group) views.push_back(v);
  }
  std::map<const void*, size_t> offset;  // source data -> offset in the mapping
  size_t total = 0;
  for (const WeightView* v : views)
    if (offset.emplace(v->data, total).second) total += (row_bytes(v->type, v->n_in) * v->n_out + 63) / 64 * 64;
  if (total == 0) return;
  // 2 MiB-aligned so transparent huge pages can back it (fewer TLB misses while decode
  // streams every weight once per token); the madvise is a hint and may be refused.
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t mapped = (total + kHuge - 1) / kHuge * kHuge + kHuge;
  void* p = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) fail("{}: cannot allocate {} bytes for the interleaved weights", file_->path(), total);
  repacked_.base = p;
  repacked_.mapped = mapped;
  repacked_.size = total;
  auto* base = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(p) + kHuge - 1) / kHuge * kHuge);
  ::madvise(base, (total + kHuge - 1) / kHuge * kHuge, MADV_HUGEPAGE);
  std::map<const void*, WeightView> done;
  for (WeightView* v : views) {
    auto it = done.find(v->data);
    if (it == done.end()) {
      const WeightView iv = interleave_rows(*v, base + offset.at(v->data), interleave_group(v->type));
      file_->release(static_cast<const uint8_t*>(v->data), row_bytes(v->type, v->n_in) * v->n_out);
      it = done.emplace(v->data, iv).first;
    }
    *v = it->second;
  }
  ::mprotect(p, mapped, PROT_READ);
  release_file_data();
}

// When every matrix lives in the interleaved copy, the file's tensor data is dead weight: the
// small float vectors (norms, biases; a few hundred KiB) are copied into owned memory and the
// whole data region is released at once. Releasing tensor by tensor leaves the pages shared
// with a neighbour, and one read of a norm there maps a whole page-cache folio back.
void Model::release_file_data() {
  for (const WeightView* v : matrices(w_))
    if (v->data && v->interleave == 1) return;  // some matrix is read from the file in place
  std::map<const void*, const GgufTensor*> by_data;
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (const auto& t : file_->tensors()) {
    by_data.emplace(t.data, &t);
    lo = std::min(lo, reinterpret_cast<uintptr_t>(t.data));
    hi = std::max(hi, reinterpret_cast<uintptr_t>(t.data) + t.n_bytes);
  }
  std::vector<const float**> vecs = {&w_.output_norm};
  for (auto& l : w_.layers)
    for (const float** f : {&l.attn_norm, &l.bq, &l.bk, &l.bv, &l.q_norm, &l.k_norm, &l.attn_post_norm, &l.ffn_norm,
                            &l.ffn_post_norm})
      vecs.push_back(f);
  size_t n = 0;
  for (const float** f : vecs)
    if (*f) {
      auto it = by_data.find(*f);
      if (it == by_data.end()) return;  // not a whole tensor of the file: leave everything as is
      n += (it->second->n_bytes + sizeof(float) - 1) / sizeof(float);
    }
  owned_vectors_.resize(n);
  std::map<const void*, const float*> copied;  // a vector used twice is copied once
  size_t at = 0;
  for (const float** f : vecs) {
    if (!*f) continue;
    auto [it, fresh] = copied.emplace(*f, owned_vectors_.data() + at);
    if (fresh) {
      const GgufTensor* t = by_data.at(*f);
      std::memcpy(owned_vectors_.data() + at, t->data, t->n_bytes);
      at += (t->n_bytes + sizeof(float) - 1) / sizeof(float);
    }
    *f = it->second;
  }
  if (lo < hi) file_->release(reinterpret_cast<const uint8_t*>(lo), hi - lo);
}

size_t Model::weight_bytes_per_token() const {
  size_t b = view_bytes(w_.output) + row_bytes(w_.tok_embd.type, w_.tok_embd.n_in);
  for (const auto& l : w_.layers)
    b += view_bytes(l.wq) + view_bytes(l.wk) + view_bytes(l.wv) + view_bytes(l.wo) + view_bytes(l.w_gate) +
         view_bytes(l.w_up) + view_bytes(l.w_down) + 2 * sizeof(float) * hp_.n_embd;
  return b;
}

}  // namespace kvz
