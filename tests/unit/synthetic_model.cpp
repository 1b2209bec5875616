#include "synthetic_model.h"

#include <unistd.h>

#include <random>

#include "core/fp16.h"

namespace kvz::test {

namespace {

// GPT-2 bytes_to_unicode: printable bytes map to themselves, the rest to U+0100+n.
std::vector<std::string> byte_level_symbols() {
  std::vector<int> cps(256, -1);
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    cps[b] = printable ? b : 256 + n++;
  }
  std::vector<std::string> out;
  for (int b = 0; b < 256; ++b) {
    const int cp = cps[b];
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xc0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3f));
    }
    out.push_back(s);
  }
  return out;
}

void add_matrix(GgufWriter& w, const std::string& name, int64_t n_in, int64_t n_out, DType t, std::mt19937_64& rng,
                float scale, const std::string& skip) {
  std::normal_distribution<float> nd(0.0f, scale);
  if (name == skip) return;
  const size_t n = static_cast<size_t>(n_in * n_out);
  if (t == DType::F16) {
    std::vector<uint16_t> v(n);
    for (auto& x : v) x = f32_to_fp16(nd(rng));
    w.add_tensor(name, t, {n_in, n_out}, v.data(), v.size() * 2);
  } else {
    std::vector<float> v(n);
    for (auto& x : v) x = nd(rng);
    w.add_tensor(name, DType::F32, {n_in, n_out}, v.data(), v.size() * 4);
  }
}

void add_norm(GgufWriter& w, const std::string& name, int64_t n, std::mt19937_64& rng, const std::string& skip = "") {
  std::uniform_real_distribution<float> ud(0.8f, 1.2f);
  std::vector<float> v(n);
  for (auto& x : v) x = ud(rng);
  if (name == skip) return;
  w.add_tensor(name, DType::F32, {n}, v.data(), v.size() * 4);
}

}  // namespace

GgufWriter synthetic_llama(const SyntheticSpec& s) {
  GgufWriter w;
  std::mt19937_64 rng(s.seed);
  const int d_head = s.n_embd / s.n_head;
  std::vector<std::string> tokens = byte_level_symbols();
  tokens.push_back("ab");  // one merge, so the BPE path is real
  tokens.push_back("<|im_start|>");
  tokens.push_back("<|im_end|>");
  std::vector<int32_t> types(tokens.size(), 1);
  types[257] = types[258] = 3;
  const int n_vocab = static_cast<int>(tokens.size());

  w.set_str("general.architecture", s.arch);
  const std::string a = s.arch + ".";
  w.set_str("general.name", "synthetic-llama");
  w.set_u32(a + "block_count", s.n_layer);
  w.set_u32(a + "context_length", s.n_ctx);
  w.set_u32(a + "embedding_length", s.n_embd);
  w.set_u32(a + "feed_forward_length", s.n_ff);
  w.set_u32(a + "attention.head_count", s.n_head);
  w.set_u32(a + "attention.head_count_kv", s.n_head_kv);
  w.set_f32(a + "rope.freq_base", 10000.0f);
  w.set_f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_u32(a + "rope.dimension_count", d_head);
  w.set_u32(a + "vocab_size", n_vocab);
  const bool gemma = s.arch == "gemma3";
  if (gemma) {
    w.set_u32(a + "attention.sliding_window", s.n_swa);
    if (s.swa_flags.empty())
      w.set_u32(a + "attention.sliding_window_pattern", s.swa_pattern);
    else
      w.set_i32_array(a + "attention.sliding_window_pattern", s.swa_flags);
    w.set_f32(a + "rope.freq_base_swa", s.rope_base_swa);
  }
  w.set_str("tokenizer.ggml.model", "gpt2");
  w.set_str("tokenizer.ggml.pre", "default");
  w.set_str_array("tokenizer.ggml.tokens", tokens);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_str_array("tokenizer.ggml.merges", {"a b"});
  w.set_u32("tokenizer.ggml.bos_token_id", 257);
  w.set_u32("tokenizer.ggml.eos_token_id", 258);
  w.set_str("tokenizer.chat_template",
            "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
            "'<|im_end|>' + '\\n'}}{% endfor %}");

  add_matrix(w, "token_embd.weight", s.n_embd, n_vocab, s.wtype, rng, 1.0f, s.skip_tensor);
  add_norm(w, "output_norm.weight", s.n_embd, rng);
  if (!s.tied) add_matrix(w, "output.weight", s.n_embd, n_vocab, s.wtype, rng, 0.2f, s.skip_tensor);
  const float ws = 1.0f / std::sqrt(static_cast<float>(s.n_embd));
  for (int il = 0; il < s.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    add_norm(w, p + "attn_norm.weight", s.n_embd, rng);
    add_matrix(w, p + "attn_q.weight", s.n_embd, s.n_head * d_head, s.wtype, rng, ws, s.skip_tensor);
    add_matrix(w, p + "attn_k.weight", s.n_embd, s.n_head_kv * d_head, s.wtype, rng, ws, s.skip_tensor);
    add_matrix(w, p + "attn_v.weight", s.n_embd, s.n_head_kv * d_head, s.wtype, rng, ws, s.skip_tensor);
    add_matrix(w, p + "attn_output.weight", s.n_head * d_head, s.n_embd, s.wtype, rng, ws, s.skip_tensor);
    if (gemma) {
      add_norm(w, p + "attn_q_norm.weight", d_head, rng, s.skip_tensor);
      add_norm(w, p + "attn_k_norm.weight", d_head, rng, s.skip_tensor);
      add_norm(w, p + "post_attention_norm.weight", s.n_embd, rng, s.skip_tensor);
      add_norm(w, p + "post_ffw_norm.weight", s.n_embd, rng, s.skip_tensor);
    }
    add_norm(w, p + "ffn_norm.weight", s.n_embd, rng);
    add_matrix(w, p + "ffn_gate.weight", s.n_embd, s.n_ff, s.wtype, rng, ws, s.skip_tensor);
    add_matrix(w, p + "ffn_up.weight", s.n_embd, s.n_ff, s.wtype, rng, ws, s.skip_tensor);
    add_matrix(w, p + "ffn_down.weight", s.n_ff, s.n_embd, s.wtype, rng, 1.0f / std::sqrt(static_cast<float>(s.n_ff)), s.skip_tensor);
  }
  return w;
}

std::string write_synthetic_llama(const SyntheticSpec& spec, const std::string& tag) {
  const std::string path = "/tmp/kvzip-test-" + tag + "-" + std::to_string(::getpid()) + ".gguf";
  synthetic_llama(spec).write(path);
  return path;
}

std::unique_ptr<Model> load_tiny_gemma3(int n_layer, const std::string& tag) {
  SyntheticSpec spec;
  spec.arch = "gemma3";
  spec.n_layer = n_layer;
  spec.n_swa = 8;
  spec.swa_pattern = 2;
  const std::string path = write_synthetic_llama(spec, tag);
  auto model = Model::load(path);
  std::remove(path.c_str());
  return model;
}

}  // namespace kvz::test
