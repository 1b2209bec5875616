#include "model/hf_source.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "io/json_file.h"
#include "core/fp16.h"

namespace kvz {

using json = nlohmann::json;

namespace {

// config.json key -> GGUF key suffix, shared by every family (transformers' llama names).
const std::pair<const char*, const char*> kCommonKeys[] = {
    {"num_hidden_layers", "block_count"},
    {"hidden_size", "embedding_length"},
    {"num_attention_heads", "attention.head_count"},
    {"num_key_value_heads", "attention.head_count_kv"},
    {"intermediate_size", "feed_forward_length"},
    {"max_position_embeddings", "context_length"},
    {"head_dim", "attention.key_length"},
    {"rms_norm_eps", "attention.layer_norm_rms_epsilon"},
    {"vocab_size", "vocab_size"},
};

// Per-layer tensor suffixes (after "model.layers.N."), HF -> GGUF (after "blk.N.").
const std::pair<const char*, const char*> kCommonTensors[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};
const std::pair<const char*, const char*> kGlobalTensors[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

bool file_exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

GgufValue value_of(const json& j, const std::string& where) {
  GgufValue v;
  if (j.is_boolean()) {
    v.type = GgufType::BOOL;
    v.v = j.get<bool>();
  } else if (j.is_number_integer()) {
    v.type = GgufType::I64;
    if (j.is_number_unsigned() && j.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      fail("{}: value {} is too large", where, j.dump());
    v.v = j.get<int64_t>();
  } else if (j.is_number_float()) {
    v.type = GgufType::F64;
    v.v = j.get<double>();
  } else if (j.is_string()) {
    v.type = GgufType::STRING;
    v.v = j.get<std::string>();
  } else {
    fail("{}: expected a number, bool or string, got {}", where, j.dump());
  }
  return v;
}

// ggml's Q8_0 weight rule (quantize_row_q8_0_ref): per 32 values d = amax / 127,
// q = round(x / d), d stored as fp16.
void quantize_q8_0(const float* x, uint8_t* dst, int64_t n) {
  for (int64_t b = 0; b < n / 32; ++b) {
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[b * 32 + i]));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    uint8_t* blk = dst + b * 34;
    const uint16_t h = f32_to_fp16(d);
    std::memcpy(blk, &h, 2);
    for (int i = 0; i < 32; ++i) blk[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(std::lround(x[b * 32 + i] * id)));
  }
}

}  // namespace

bool is_model_dir(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::unique_ptr<HfSource> HfSource::open(const std::string& dir, const LoadOptions& opt) {
  std::unique_ptr<HfSource> s(new HfSource());
  s->path_ = dir;
  s->format_ = "hf";
  s->load_config(dir);
  s->load_tensors(dir, opt);
  return s;
}

void HfSource::load_config(const std::string& dir) {
  const std::string cpath = dir + "/config.json";
  if (!file_exists(cpath)) fail("{}: not a model folder (no config.json)", dir);
  json c = read_json(cpath);
  if (!c.is_object()) fail("{}: not a JSON object", cpath);
  // Multimodal wrappers (Gemma 3 4B+) keep the language model's settings in text_config.
  if (c.contains("text_config") && c["text_config"].is_object()) {
    json t = c["text_config"];
    if (!t.contains("model_type") && c.contains("model_type")) t["model_type"] = c["model_type"];
    c = t;
  }
  const std::string mt = c.value("model_type", "");
  for (const auto& a : architectures())
    for (const auto& name : a.hf.model_types)
      if (name == mt) arch_ = &a;
  if (!arch_) {
    std::string known;
    for (const auto& a : architectures())
      for (const auto& name : a.hf.model_types) known += (known.empty() ? "" : ", ") + name;
    fail("{}: model_type '{}' is not supported (supported: {})", cpath, mt, known);
  }
  const std::string arch = arch_->name, pre = arch + ".";
  auto set = [&](const std::string& key, GgufValue v) { kv_[key] = std::move(v); };
  auto set_str = [&](const std::string& key, const std::string& v) { set(key, value_of(json(v), key)); };
  set_str("general.architecture", arch);
  std::string name = c.value("_name_or_path", c.value("_model_name_or_path", std::string()));
  if (name.empty()) name = dir.substr(dir.find_last_of('/') == std::string::npos ? 0 : dir.find_last_of('/') + 1);
  set_str("general.name", name);

  auto map_key = [&](const std::string& hf_key, const std::string& gguf_suffix) {
    auto it = c.find(hf_key);
    if (it == c.end() || it->is_null()) return;
    set(pre + gguf_suffix, value_of(*it, cpath + ": " + hf_key));
  };
  for (const auto& [k, g] : kCommonKeys) map_key(k, g);
  for (const auto& [k, g] : arch_->hf.keys) map_key(k, g);
  if (c.contains("head_dim") && c["head_dim"].is_number_integer())
    set(pre + "attention.value_length", value_of(c["head_dim"], cpath));

  // RoPE: transformers < 5 writes rope_theta and rope_scaling; 5.x writes rope_parameters
  // {rope_type, rope_theta, factor, ...}.
  json rope = c.contains("rope_parameters") && c["rope_parameters"].is_object() ? c["rope_parameters"] : json::object();
  // Per-layer-type parameters (Gemma 3 in transformers 5.x): full attention is the main
  // rope, sliding-window layers get their own base.
  if (rope.contains("full_attention") && rope["full_attention"].is_object()) {
    if (rope.contains("sliding_attention") && rope["sliding_attention"].contains("rope_theta"))
      set(pre + "rope.freq_base_swa", value_of(rope["sliding_attention"]["rope_theta"], cpath + ": rope_theta"));
    rope = json(rope["full_attention"]);
  }
  if (c.contains("rope_scaling") && c["rope_scaling"].is_object())
    for (auto& [k, v] : c["rope_scaling"].items()) rope[k] = v;
  if (c.contains("rope_theta") && !c["rope_theta"].is_null()) rope["rope_theta"] = c["rope_theta"];
  if (rope.contains("rope_theta")) set(pre + "rope.freq_base", value_of(rope["rope_theta"], cpath + ": rope_theta"));
  std::string rtype = rope.value("rope_type", rope.value("type", std::string("default")));
  if (rtype != "default") {
    // Types the loaders do not implement (yarn, dynamic, longrope, ...) reach them by name
    // and are refused there.
    set_str(pre + "rope.scaling.type", rtype);
    const std::pair<const char*, const char*> kRopeKeys[] = {
        {"factor", "rope.scaling.factor"},
        {"low_freq_factor", "rope.scaling.low_freq_factor"},
        {"high_freq_factor", "rope.scaling.high_freq_factor"},
        {"original_max_position_embeddings", "rope.scaling.original_context_length"}};
    for (const auto& [k, g] : kRopeKeys)
      if (rope.contains(k) && !rope[k].is_null()) set(pre + g, value_of(rope[k], cpath + ": " + k));
  }

  // Sliding-window attention. transformers 5 lists every layer's kind in layer_types; older
  // Gemma 3 configs give the period as sliding_window_pattern. Only gemma3 runs local
  // layers: any other family with a sliding layer is refused rather than run with full
  // attention (a silently different model).
  std::vector<bool> local;
  if (c.contains("layer_types") && c["layer_types"].is_array()) {
    for (const auto& t : c["layer_types"]) {
      const std::string kind = t.is_string() ? t.get<std::string>() : t.dump();
      if (kind != "sliding_attention" && kind != "full_attention")
        fail("{}: layer_types entry '{}' is not a layer kind kvzip knows (sliding_attention, full_attention)", cpath, kind);
      local.push_back(kind == "sliding_attention");
    }
  }
  const bool use_swa = c.value("use_sliding_window", false);
  const bool any_local = std::find(local.begin(), local.end(), true) != local.end();
  if (arch != "gemma3" && (use_swa || any_local))
    fail("{}: this {} model uses sliding-window attention (use_sliding_window / layer_types), which kvzip "
         "implements for gemma3 only", cpath, arch);
  if (arch == "gemma3") {
    GgufValue v;
    if (!local.empty()) {
      v.type = GgufType::ARRAY;
      v.elem_type = GgufType::BOOL;
      v.v = local;
      set(pre + "attention.sliding_window_pattern", std::move(v));
    } else if (c.contains("sliding_window_pattern") && !c["sliding_window_pattern"].is_null()) {
      set(pre + "attention.sliding_window_pattern", value_of(c["sliding_window_pattern"], cpath + ": sliding_window_pattern"));
    }
  }
  tied_ = c.contains("tie_word_embeddings") && c["tie_word_embeddings"].is_boolean() && c["tie_word_embeddings"].get<bool>();
}

void HfSource::load_tensors(const std::string& dir, const LoadOptions& opt) {
  // Shards: model.safetensors, or the files named by model.safetensors.index.json.
  std::vector<std::string> files;
  const std::string index = dir + "/model.safetensors.index.json";
  if (file_exists(dir + "/model.safetensors")) {
    files.push_back("model.safetensors");
  } else if (file_exists(index)) {
    const json j = read_json(index);
    if (!j.contains("weight_map") || !j["weight_map"].is_object()) fail("{}: no weight_map object", index);
    std::set<std::string> seen;
    for (const auto& [t, f] : j["weight_map"].items()) {
      if (!f.is_string()) fail("{}: weight_map['{}'] is not a file name", index, t);
      const std::string fn = f.get<std::string>();
      if (fn.empty() || fn.find('/') != std::string::npos || fn.find("..") != std::string::npos)
        fail("{}: weight_map['{}'] = '{}' is not a plain file name in the folder", index, t, fn);
      if (seen.insert(fn).second) files.push_back(fn);
    }
  } else {
    fail("{}: no model.safetensors or model.safetensors.index.json", dir);
  }

  std::map<std::string, std::string> layer_map;  // HF per-layer suffix -> GGUF suffix
  for (const auto& [h, g] : kCommonTensors) layer_map[h] = g;
  for (const auto& [h, g] : arch_->hf.tensors) layer_map[h] = g;

  size_ = 0;
  for (const auto& fn : files) {
    shards_.push_back(SafetensorsFile::open(dir + "/" + fn));
    const SafetensorsFile& sf = *shards_.back();
    size_ += sf.file_size();
    for (const SafeTensor& st : sf.tensors()) {
      // HF name -> GGUF name.
      std::string gname;
      for (const auto& [h, g] : kGlobalTensors)
        if (st.name == h) gname = g;
      constexpr std::string_view kLayers = "model.layers.";
      if (gname.empty() && st.name.compare(0, kLayers.size(), kLayers) == 0) {
        const size_t b = kLayers.size(), e = st.name.find('.', b);
        const std::string num = e == std::string::npos ? "" : st.name.substr(b, e - b);
        const bool digits = !num.empty() && num.size() < 6 && num.find_first_not_of("0123456789") == std::string::npos;
        if (digits) {
          const std::string suffix = st.name.substr(e + 1);
          if (suffix == "self_attn.rotary_emb.inv_freq") continue;  // recomputed from the config
          auto it = layer_map.find(suffix);
          if (it != layer_map.end()) gname = "blk." + num + "." + it->second;
        }
      }
      if (gname.empty())
        fail("{}: tensor '{}' has no mapping for model_type of architecture '{}' (a variant kvzip does not know)",
             sf.path(), st.name, arch_->name);
      if (tensor_index_.count(gname)) fail("{}: tensor '{}' appears twice", sf.path(), st.name);
      if (!st.type)
        fail("{}: tensor '{}' has dtype {}; kvzip computes with F32, F16 and BF16 only", sf.path(), st.name, st.dtype);
      if (st.shape.empty() || st.shape.size() > 2)
        fail("{}: tensor '{}' has {} dimensions, expected 1 or 2", sf.path(), st.name, st.shape.size());

      GgufTensor t;
      t.name = gname;
      t.shape.assign(st.shape.rbegin(), st.shape.rend());
      t.type = *st.type;
      t.offset = st.offset;
      t.n_bytes = st.n_bytes;
      t.data = st.data;
      const bool is_norm = gname.find("norm") != std::string::npos;
      if (st.shape.size() == 1) {
        // f32 copy: loaders read norms and biases as f32 vectors.
        const int64_t n = st.shape[0];
        std::vector<uint8_t> buf(n * sizeof(float));
        auto* out = reinterpret_cast<float*>(buf.data());
        dequantize_row(t.type, st.data, out, n);
        if (arch_->hf.norm_plus_one && is_norm)
          for (int64_t i = 0; i < n; ++i) out[i] += 1.0f;
        t.type = DType::F32;
        t.n_bytes = buf.size();
        owned_.push_back(std::move(buf));
        t.data = owned_.back().data();
      } else if (opt.convert) {
        if (*opt.convert != DType::Q8_0) fail("--convert: only q8_0 is supported");
        const int64_t n_in = t.shape[0], n_out = t.shape[1];
        if (n_in % 32 != 0) fail("{}: tensor '{}' rows of {} cannot be split into Q8_0 blocks of 32", sf.path(), st.name, n_in);
        std::vector<uint8_t> buf(static_cast<size_t>(n_out) * (n_in / 32) * 34);
        std::vector<float> row(n_in);
        const size_t in_row = row_bytes(t.type, n_in), out_row = (n_in / 32) * 34;
        for (int64_t r = 0; r < n_out; ++r) {
          dequantize_row(t.type, st.data + r * in_row, row.data(), n_in);
          quantize_q8_0(row.data(), buf.data() + r * out_row, n_in);
        }
        t.type = DType::Q8_0;
        t.n_bytes = buf.size();
        owned_.push_back(std::move(buf));
        t.data = owned_.back().data();
      }
      tensor_index_.emplace(t.name, tensors_.size());
      tensors_.push_back(std::move(t));
    }
  }
  // The loaders take an absent output.weight to mean tied embeddings.
  if (!tied_ && !tensor("output.weight"))
    fail("{}: no lm_head.weight and config.json does not set tie_word_embeddings", dir);
}

}  // namespace kvz
