#include "synthetic_model.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <random>

#include "core/fp16.h"
#include "io/safetensors.h"

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

// GGUF name -> HF name (the inverse of the common table in model/hf_source.cpp).
std::string hf_name(const std::string& g) {
  if (g == "token_embd.weight") return "model.embed_tokens.weight";
  if (g == "output_norm.weight") return "model.norm.weight";
  if (g == "output.weight") return "lm_head.weight";
  const std::pair<const char*, const char*> layer[] = {
      {"attn_norm", "input_layernorm"}, {"attn_q", "self_attn.q_proj"},  {"attn_k", "self_attn.k_proj"},
      {"attn_v", "self_attn.v_proj"},   {"attn_output", "self_attn.o_proj"}, {"ffn_norm", "post_attention_layernorm"},
      {"ffn_gate", "mlp.gate_proj"},    {"ffn_up", "mlp.up_proj"},       {"ffn_down", "mlp.down_proj"}};
  const size_t a = g.find('.'), b = g.find('.', a + 1);
  const std::string il = g.substr(a + 1, b - a - 1), rest = g.substr(b + 1, g.rfind('.') - b - 1);
  for (const auto& [gg, hh] : layer)
    if (rest == gg) return "model.layers." + il + "." + hh + ".weight";
  throw std::runtime_error("unmapped " + g);
}

// llama.cpp's convert permutes q/k rows within each head: GGUF row 2i+j <- HF row j*d/2+i.
std::vector<uint8_t> unpermute(const GgufTensor& t, int n_head) {
  const int64_t n_in = t.shape[0], n_out = t.shape[1], d = n_out / n_head;
  const size_t rb = row_bytes(t.type, n_in);
  std::vector<uint8_t> out(t.n_bytes);
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t i = 0; i < d / 2; ++i)
      for (int64_t j = 0; j < 2; ++j)
        std::memcpy(out.data() + (h * d + j * d / 2 + i) * rb, t.data + (h * d + 2 * i + j) * rb, rb);
  return out;
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

  // Metadata setters that let SyntheticSpec's overrides replace a value; the overrides
  // left over are added at the end.
  std::map<std::string, float> f32_left = s.f32_keys;
  std::map<std::string, uint32_t> u32_left = s.u32_keys;
  std::map<std::string, std::string> str_left = s.str_keys;
  auto pick = [](auto& left, const std::string& key, auto v) {
    if (auto it = left.find(key); it != left.end()) {
      v = it->second;
      left.erase(it);
    }
    return v;
  };
  auto u32 = [&](const std::string& key, uint32_t v) { w.set_u32(key, pick(u32_left, key, v)); };
  auto f32 = [&](const std::string& key, float v) { w.set_f32(key, pick(f32_left, key, v)); };
  auto str = [&](const std::string& key, const std::string& v) { w.set_str(key, pick(str_left, key, v)); };
  str("general.architecture", s.arch);
  const std::string a = s.arch + ".";
  str("general.name", "synthetic-llama");
  u32(a + "block_count", s.n_layer);
  u32(a + "context_length", s.n_ctx);
  u32(a + "embedding_length", s.n_embd);
  u32(a + "feed_forward_length", s.n_ff);
  u32(a + "attention.head_count", s.n_head);
  u32(a + "attention.head_count_kv", s.n_head_kv);
  f32(a + "rope.freq_base", 10000.0f);
  f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
  u32(a + "rope.dimension_count", d_head);
  u32(a + "vocab_size", n_vocab);
  const bool gemma = s.arch == "gemma3";
  if (gemma) {
    u32(a + "attention.sliding_window", s.n_swa);
    if (s.swa_flags.empty())
      u32(a + "attention.sliding_window_pattern", s.swa_pattern);
    else
      w.set_i32_array(a + "attention.sliding_window_pattern", s.swa_flags);
    f32(a + "rope.freq_base_swa", s.rope_base_swa);
  }
  str("tokenizer.ggml.model", "gpt2");
  str("tokenizer.ggml.pre", "default");
  w.set_str_array("tokenizer.ggml.tokens", tokens);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_str_array("tokenizer.ggml.merges", {"a b"});
  u32("tokenizer.ggml.bos_token_id", 257);
  u32("tokenizer.ggml.eos_token_id", 258);
  str("tokenizer.chat_template",
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
      "'<|im_end|>' + '\\n'}}{% endfor %}");

  for (const auto& [k, v] : u32_left) w.set_u32(k, v);
  for (const auto& [k, v] : f32_left) w.set_f32(k, v);
  for (const auto& [k, v] : str_left) w.set_str(k, v);

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

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / (name + "-" + std::to_string(::getpid()))).string();
}

std::string write_synthetic_llama(const SyntheticSpec& spec, const std::string& tag) {
  const std::string path = temp_path("kvzip-test-" + tag) + ".gguf";
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

void write_hf_copy(const SyntheticSpec& spec, HfFolder& f) {
  f.gguf_path = write_synthetic_llama(spec, f.dir.filename().string());
  auto g = GgufFile::open(f.gguf_path);
  std::vector<SafetensorsEntry> shard[2];
  nlohmann::json weight_map = nlohmann::json::object();
  for (const auto& t : g->tensors()) {
    SafetensorsEntry e;
    e.name = hf_name(t.name);
    e.dtype = t.type == DType::F32 ? "F32" : t.type == DType::F16 ? "F16" : "BF16";
    e.shape.assign(t.shape.rbegin(), t.shape.rend());
    const bool is_q = t.name.find("attn_q.") != std::string::npos, is_k = t.name.find("attn_k.") != std::string::npos;
    e.bytes = is_q ? unpermute(t, spec.n_head) : is_k ? unpermute(t, spec.n_head_kv)
                                                       : std::vector<uint8_t>(t.data, t.data + t.n_bytes);
    const int s = t.name.rfind("blk.1.", 0) == 0 ? 1 : 0;
    weight_map[e.name] = s ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
    shard[s].push_back(std::move(e));
  }
  f.write("model-00001-of-00002.safetensors", safetensors_bytes(shard[0]));
  f.write("model-00002-of-00002.safetensors", safetensors_bytes(shard[1]));
  f.write("model.safetensors.index.json", nlohmann::json{{"weight_map", weight_map}}.dump());
  const nlohmann::json config = {{"model_type", "llama"},
                                 {"num_hidden_layers", spec.n_layer},
                                 {"hidden_size", spec.n_embd},
                                 {"num_attention_heads", spec.n_head},
                                 {"num_key_value_heads", spec.n_head_kv},
                                 {"intermediate_size", spec.n_ff},
                                 {"max_position_embeddings", spec.n_ctx},
                                 {"rms_norm_eps", 1e-5},
                                 {"rope_theta", 10000.0},
                                 {"vocab_size", g->get_str_array("tokenizer.ggml.tokens").size()},
                                 {"tie_word_embeddings", spec.tied}};
  f.write("config.json", config.dump());
  // tokenizer.json: the same byte-level vocabulary.
  nlohmann::json vocab = nlohmann::json::object(), added = nlohmann::json::array();
  const auto tokens = g->get_str_array("tokenizer.ggml.tokens");
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i].rfind("<|", 0) == 0)
      added.push_back({{"id", i}, {"content", tokens[i]}, {"special", true}});
    else
      vocab[tokens[i]] = i;
  }
  const nlohmann::json tok = {
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array({nlohmann::json::array({"a", "b"})})}, {"unk_token", nullptr}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"added_tokens", added}};
  f.write("tokenizer.json", tok.dump());
  f.write("tokenizer_config.json", nlohmann::json{{"eos_token", "<|im_end|>"}}.dump());
}

}  // namespace kvz::test
