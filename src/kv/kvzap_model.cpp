#include "kv/kvzap_model.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "kernels/types.h"
#include "model/model.h"

namespace kvz {

namespace {

std::string hex64(uint64_t v) { return fmt::format("{:016x}", v); }

// Reads tensor `name` as f32 and checks its shape; throws naming the folder.
std::vector<float> read_tensor(const SafetensorsFile& f, const std::string& dir, const std::string& name,
                               std::vector<int64_t> shape) {
  const SafeTensor* t = f.tensor(name);
  if (!t) fail("{}: KVzap weights: tensor '{}' is missing", dir, name);
  if (!t->type) fail("{}: KVzap weights: tensor '{}' has dtype {} (expected F32, F16 or BF16)", dir, name, t->dtype);
  if (t->shape != shape)
    fail("{}: KVzap weights: tensor '{}' has shape [{}], expected [{}]", dir, name, fmt::join(t->shape, ", "),
         fmt::join(shape, ", "));
  std::vector<float> v(static_cast<size_t>(t->n_elements()));
  dequantize_row(*t->type, t->data, v.data(), t->n_elements());
  return v;
}

SafetensorsEntry f32_entry(std::string name, std::vector<int64_t> shape, const std::vector<float>& v) {
  SafetensorsEntry e{std::move(name), "F32", std::move(shape), {}};
  e.bytes.resize(v.size() * sizeof(float));
  std::memcpy(e.bytes.data(), v.data(), e.bytes.size());
  return e;
}

int dim(const JsonReader& v) { return static_cast<int>(v.integer(1, 1 << 20)); }

}  // namespace

float gelu_erf(float x) { return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f)); }

KvzapModel KvzapModel::zeros(Kind kind, int n_layer, int d_in, int n_out, int d_hidden) {
  KvzapModel m;
  m.kind_ = kind;
  m.d_in_ = d_in;
  m.n_out_ = n_out;
  m.d_hidden_ = kind == Kind::Mlp ? d_hidden : 0;
  m.layers_.resize(static_cast<size_t>(n_layer));
  const size_t first = kind == Kind::Mlp ? static_cast<size_t>(d_hidden) : static_cast<size_t>(n_out);
  for (auto& l : m.layers_) {
    l.w1.assign(first * d_in, 0.0f);
    l.b1.assign(first, 0.0f);
    if (kind == Kind::Mlp) {
      l.w2.assign(static_cast<size_t>(n_out) * d_hidden, 0.0f);
      l.b2.assign(static_cast<size_t>(n_out), 0.0f);
    }
  }
  return m;
}

KvzapModel KvzapModel::load_unchecked(const std::string& dir) {
  const std::string cpath = dir + "/config.json";
  if (!std::filesystem::exists(cpath)) fail("{}: not a KVzap folder (no config.json)", dir);
  const JsonReader c = JsonReader::open(cpath);
  if (c.object().get_str("model_type", "") != "kvzap") fail("{}: model_type is not \"kvzap\"", cpath);
  const int d_in = dim(c.at("input_dim")), n_out = dim(c.at("output_dim")), n_layer = dim(c.at("n_modules"));
  const auto hidden = c.find("hidden_dim");  // null or absent: the linear surrogate
  const bool mlp = hidden.has_value();
  const int d_hidden = mlp ? dim(*hidden) : 0;

  KvzapModel m = zeros(mlp ? Kind::Mlp : Kind::Linear, n_layer, d_in, n_out, d_hidden);
  if (auto info = c.find("kvzip")) m.info_ = info->object().raw();
  auto f = SafetensorsFile::open(dir + "/model.safetensors");
  for (int il = 0; il < n_layer; ++il) {
    KvzapLayer& l = m.layers_[static_cast<size_t>(il)];
    const std::string p = fmt::format("layers.{}.", il);
    if (mlp) {
      l.w1 = read_tensor(*f, dir, p + "0.weight", {d_hidden, d_in});
      l.b1 = read_tensor(*f, dir, p + "0.bias", {d_hidden});
      l.w2 = read_tensor(*f, dir, p + "2.weight", {n_out, d_hidden});
      l.b2 = read_tensor(*f, dir, p + "2.bias", {n_out});
    } else {
      l.w1 = read_tensor(*f, dir, p + "weight", {n_out, d_in});
      l.b1 = read_tensor(*f, dir, p + "bias", {n_out});
    }
    for (const auto* v : {&l.w1, &l.b1, &l.w2, &l.b2})
      for (float x : *v)
        if (!std::isfinite(x)) fail("{}: KVzap weights of layer {} contain NaN or infinity", dir, il);
  }
  return m;
}

KvzapModel KvzapModel::load(const std::string& dir, const Model& model) {
  KvzapModel m = load_unchecked(dir);
  const HParams& hp = model.hp();
  if (m.n_layer() != hp.n_layer || m.d_in() != hp.n_embd || m.n_out() != hp.n_head_kv)
    fail("{}: KVzap weights for {} layers x {} inputs -> {} KV heads do not fit this model ({} layers, n_embd {}, "
         "{} KV heads)",
         dir, m.n_layer(), m.d_in(), m.n_out(), hp.n_layer, hp.n_embd, hp.n_head_kv);
  const JsonReader info = JsonReader::borrow(m.info_, dir + "/config.json", "kvzip");
  if (info.is_object()) {  // published surrogates have no "kvzip" record
    if (auto have = info.find("model_fingerprint")) {
      const std::string want = hex64(model.identity().fingerprint);
      if (have->str() != want)
        fail("{}: KVzap weights were trained for another model ('{}', fingerprint {}; loaded model {})", dir,
             info.get_str("model_name", "?"), have->str(), want);
    }
  }
  return m;
}

void KvzapModel::save_untagged(const std::string& dir) const {
  std::filesystem::create_directories(dir);
  nlohmann::json c = {{"model_type", "kvzap"}, {"input_dim", d_in_}, {"output_dim", n_out_}, {"n_modules", n_layer()}};
  c["hidden_dim"] = kind_ == Kind::Mlp ? nlohmann::json(d_hidden_) : nlohmann::json(nullptr);
  if (!info_.empty()) c["kvzip"] = info_;
  std::vector<SafetensorsEntry> es;
  for (int il = 0; il < n_layer(); ++il) {
    const KvzapLayer& l = layers_[static_cast<size_t>(il)];
    const std::string p = fmt::format("layers.{}.", il);
    if (kind_ == Kind::Mlp) {
      es.push_back(f32_entry(p + "0.weight", {d_hidden_, d_in_}, l.w1));
      es.push_back(f32_entry(p + "0.bias", {d_hidden_}, l.b1));
      es.push_back(f32_entry(p + "2.weight", {n_out_, d_hidden_}, l.w2));
      es.push_back(f32_entry(p + "2.bias", {n_out_}, l.b2));
    } else {
      es.push_back(f32_entry(p + "weight", {n_out_, d_in_}, l.w1));
      es.push_back(f32_entry(p + "bias", {n_out_}, l.b1));
    }
  }
  const std::vector<uint8_t> bytes = safetensors_bytes(es, {{"format", "pt"}});
  auto write = [&](const std::string& path, const void* data, size_t n) {
    std::ofstream out(path + ".tmp", std::ios::binary);
    out.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
    out.close();
    if (!out) fail("{}: write failed", path);
    std::filesystem::rename(path + ".tmp", path);
  };
  write(dir + "/model.safetensors", bytes.data(), bytes.size());
  const std::string cj = c.dump(2) + "\n";
  write(dir + "/config.json", cj.data(), cj.size());
}

void KvzapModel::save(const std::string& dir, const Model& m, const nlohmann::json& info) const {
  KvzapModel tagged = *this;
  tagged.info_ = info.is_object() ? info : nlohmann::json::object();
  tagged.info_["model_fingerprint"] = hex64(m.identity().fingerprint);
  tagged.info_["model_name"] = m.hp().name;
  tagged.info_["model_arch"] = m.hp().arch;
  tagged.save_untagged(dir);
}

int64_t KvzapModel::macs_per_token() const {
  const int64_t per = kind_ == Kind::Mlp ? int64_t{d_hidden_} * (d_in_ + n_out_) : int64_t{n_out_} * d_in_;
  return per * n_layer();
}

void KvzapModel::predict(int il, const float* h, int64_t n, float* out, std::vector<float>& scratch,
                         ThreadPool* pool) const {
  const KvzapLayer& l = layers_[static_cast<size_t>(il)];
  auto affine = [&](const std::vector<float>& w, const std::vector<float>& b, int n_in, int n_o, const float* x,
                    float* y) {
    matmul(WeightView{DType::F32, n_in, n_o, w.data()}, x, n, y, pool);
    for (int64_t t = 0; t < n; ++t)
      for (int o = 0; o < n_o; ++o) y[t * n_o + o] += b[static_cast<size_t>(o)];
  };
  if (kind_ == Kind::Linear) {
    affine(l.w1, l.b1, d_in_, n_out_, h, out);
    return;
  }
  const size_t need = static_cast<size_t>(n) * d_hidden_;
  if (scratch.size() < need) scratch.resize(need);
  affine(l.w1, l.b1, d_in_, d_hidden_, h, scratch.data());
  for (size_t i = 0; i < need; ++i) scratch[i] = gelu_erf(scratch[i]);
  affine(l.w2, l.b2, d_hidden_, n_out_, scratch.data(), out);
}

}  // namespace kvz
