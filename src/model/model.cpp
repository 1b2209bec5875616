#include "model/model.h"

#include <cmath>

#include "core/error.h"
#include "io/gguf.h"
#include "model/hf_source.h"

namespace kvz {

float HParams::softmax_scale() const {
  return attn_scale > 0.0f ? attn_scale : 1.0f / std::sqrt(static_cast<float>(d_head));
}

namespace {
size_t view_bytes(const WeightView& v) { return v.data ? row_bytes(v.type, v.n_in) * v.n_out : 0; }
}  // namespace

std::unique_ptr<Model> Model::load(const std::string& path, const std::function<void(double)>& progress,
                                   const LoadOptions& opt) {
  auto m = std::make_unique<Model>();
  const bool hf = is_model_dir(path);
  if (hf)
    m->file_ = HfSource::open(path, opt);
  else
    m->file_ = GgufFile::open(path);
  const TensorSource& f = *m->file_;
  m->hp_.arch = f.get_str("general.architecture");
  m->hp_.name = f.get_str_opt("general.name").value_or("");
  const ArchSpec* spec = nullptr;
  for (const auto& a : architectures())
    if (m->hp_.arch == a.name) spec = &a;
  if (!spec) {
    std::string known;
    for (const auto& a : architectures()) known += std::string(known.empty() ? "" : ", ") + a.name;
    fail("{}: architecture '{}' is not supported (supported: {})", path, m->hp_.arch, known);
  }
  spec->load(f, m->hp_, m->w_);
  VocabData vocab = hf ? vocab_from_hf(path) : vocab_from_gguf(f);
  const int n_tok = static_cast<int>(vocab.tokens.size());
  if (n_tok > m->hp_.n_vocab)
    fail("{}: the tokenizer has {} tokens but the model only {} embedding rows", path, n_tok, m->hp_.n_vocab);
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
  return m;
}

size_t Model::weight_bytes_per_token() const {
  size_t b = view_bytes(w_.output) + row_bytes(w_.tok_embd.type, w_.tok_embd.n_in);
  for (const auto& l : w_.layers)
    b += view_bytes(l.wq) + view_bytes(l.wk) + view_bytes(l.wv) + view_bytes(l.wo) + view_bytes(l.w_gate) +
         view_bytes(l.w_up) + view_bytes(l.w_down) + 2 * sizeof(float) * hp_.n_embd;
  return b;
}

}  // namespace kvz
