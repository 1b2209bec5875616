#include "model/hf_source.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include "core/error.h"
#include "io/json_file.h"
#include "core/fp16.h"

namespace kvz {

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

// A config.json scalar as the GGUF value the loaders read; their typed getters then check
// it is the kind of value the key needs (naming the config key through key_origin).
GgufValue value_of(const JsonReader& j) {
  GgufValue v;
  if (j.is_bool()) {
    v.type = GgufType::BOOL;
    v.v = j.boolean();
  } else if (j.is_int()) {
    v.type = GgufType::I64;
    v.v = j.integer();
  } else if (j.is_number()) {
    v.type = GgufType::F64;
    v.v = j.number();
  } else if (j.is_string()) {
    v.type = GgufType::STRING;
    v.v = j.str();
  } else {
    j.type_error("a number, boolean or string");
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
  const std::string cpath = dir + "/config.json";
  if (!file_exists(cpath)) fail("{}: not a model folder (no config.json)", dir);
  s->load_config(JsonReader::open(cpath), dir);
  s->load_tensors(dir, opt);
  return s;
}

std::unique_ptr<HfSource> HfSource::from_config(const JsonReader& config, const std::string& dir) {
  std::unique_ptr<HfSource> s(new HfSource());
  s->path_ = dir;
  s->format_ = "hf";
  s->load_config(config, dir);
  return s;
}

void HfSource::load_config(JsonReader c, const std::string& dir) {
  const std::string cpath = c.file();
  c.object();
  std::string mt = c.get_str("model_type", "");
  // Multimodal wrappers (Gemma 3 4B+) keep the language model's settings in text_config.
  if (auto t = c.find("text_config")) {
    mt = t->object().get_str("model_type", mt);
    c = *t;
  }
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
  auto set_str = [&](const std::string& key, const std::string& v) { set(key, GgufValue{GgufType::STRING, {}, v}); };
  // A key read from the config: its value, and its name for the loaders' errors.
  auto set_from = [&](const std::string& key, const JsonReader& v) {
    set(key, value_of(v));
    key_origin_[key] = v.where();
  };
  auto set_number = [&](const std::string& key, const JsonReader& v) {
    if (!v.is_number()) v.type_error("a finite number");
    set_from(key, v);
  };
  set_str("general.architecture", arch);
  std::string name = c.get_str("_name_or_path", c.get_str("_model_name_or_path", ""));
  if (name.empty()) name = dir.substr(dir.find_last_of('/') == std::string::npos ? 0 : dir.find_last_of('/') + 1);
  set_str("general.name", name);

  auto map_key = [&](const std::string& hf_key, const std::string& gguf_suffix) {
    key_origin_[pre + gguf_suffix] = c.where(hf_key);  // named also when absent (a required key)
    if (auto v = c.find(hf_key)) set_from(pre + gguf_suffix, *v);
  };
  for (const auto& [k, g] : kCommonKeys) map_key(k, g);
  for (const auto& [k, g] : arch_->hf.keys) map_key(k, g);
  if (auto h = c.find("head_dim"); h && h->is_int()) set_from(pre + "attention.value_length", *h);

  // RoPE: transformers < 5 writes rope_theta and rope_scaling; 5.x writes rope_parameters
  // {rope_type, rope_theta, factor, ...}. Each field keeps its reader, so that errors name
  // the key as the file spells it ("rope_scaling.factor").
  std::map<std::string, JsonReader> rope;
  auto take = [&](const JsonReader& o) {
    for (const auto& [k, v] : o.members())
      if (!v.is_null()) rope.insert_or_assign(k, v);
  };
  if (auto rp = c.find("rope_parameters")) {
    rp->object();
    // Per-layer-type parameters (Gemma 3 in transformers 5.x): full attention is the main
    // rope, sliding-window layers get their own base.
    if (auto full = rp->find("full_attention")) {
      if (auto sliding = rp->find("sliding_attention"))
        if (auto theta = sliding->object().find("rope_theta")) set_number(pre + "rope.freq_base_swa", *theta);
      take(full->object());
    } else {
      take(*rp);
    }
  }
  if (auto rs = c.find("rope_scaling")) take(rs->object());
  if (auto theta = c.find("rope_theta")) rope.insert_or_assign("rope_theta", *theta);
  auto rope_field = [&](const char* k) -> const JsonReader* {
    auto it = rope.find(k);
    return it == rope.end() ? nullptr : &it->second;
  };
  if (const JsonReader* theta = rope_field("rope_theta")) set_number(pre + "rope.freq_base", *theta);
  const JsonReader* type = rope_field("rope_type") ? rope_field("rope_type") : rope_field("type");
  const std::string rtype = type ? type->str() : "default";
  if (rtype != "default") {
    // Types the loaders do not implement (yarn, dynamic, longrope, ...) reach them by name
    // and are refused there.
    set_from(pre + "rope.scaling.type", *type);
    const std::pair<const char*, const char*> kRopeKeys[] = {
        {"factor", "rope.scaling.factor"},
        {"low_freq_factor", "rope.scaling.low_freq_factor"},
        {"high_freq_factor", "rope.scaling.high_freq_factor"},
        {"original_max_position_embeddings", "rope.scaling.original_context_length"}};
    for (const auto& [k, g] : kRopeKeys)
      if (const JsonReader* v = rope_field(k)) set_number(pre + g, *v);
  }

  // Sliding-window attention. transformers 5 lists every layer's kind in layer_types; older
  // Gemma 3 configs give the period as sliding_window_pattern. Only gemma3 runs local
  // layers: any other family with a sliding layer is refused rather than run with full
  // attention (a silently different model).
  std::vector<bool> local;
  if (auto types = c.find("layer_types")) {
    for (const JsonReader& t : types->elements()) {
      const std::string kind = t.str();
      if (kind != "sliding_attention" && kind != "full_attention")
        t.fail_here(fmt::format("= '{}' is not a layer kind kvzip knows (sliding_attention, full_attention)", kind));
      local.push_back(kind == "sliding_attention");
    }
  }
  const bool use_swa = c.get_bool("use_sliding_window", false);
  const bool any_local = std::find(local.begin(), local.end(), true) != local.end();
  if (arch != "gemma3" && (use_swa || any_local))
    fail("{}: this {} model uses sliding-window attention (use_sliding_window / layer_types), which kvzip "
         "implements for gemma3 only", cpath, arch);
  if (arch == "gemma3") {
    const std::string pk = pre + "attention.sliding_window_pattern";
    if (!local.empty()) {
      GgufValue v;
      v.type = GgufType::ARRAY;
      v.elem_type = GgufType::BOOL;
      v.v = local;
      set(pk, std::move(v));
      key_origin_[pk] = c.where("layer_types");
    } else if (auto p = c.find("sliding_window_pattern")) {
      set_from(pk, *p);
    }
  }
  tied_ = c.get_bool("tie_word_embeddings", false);
}

void HfSource::load_tensors(const std::string& dir, const LoadOptions& opt) {
  // Shards: model.safetensors, or the files named by model.safetensors.index.json.
  std::vector<std::string> files;
  const std::string index = dir + "/model.safetensors.index.json";
  if (file_exists(dir + "/model.safetensors")) {
    files.push_back("model.safetensors");
  } else if (file_exists(index)) {
    const JsonReader j = JsonReader::open(index);
    std::set<std::string> seen;
    for (const auto& [t, f] : j.object().at("weight_map").members()) {
      const std::string fn = f.str();
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
