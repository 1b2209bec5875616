// A Hugging Face model folder as a TensorSource: config.json keys become the GGUF keys
// the family's loader reads, safetensors tensor names become GGUF names, through the
// family's HfNames table (model.h). Weight matrices in F32/F16/BF16 stay memory-mapped
// (HF [n_out, n_in] row-major is GGUF's {n_in, n_out}); 1-D tensors (norms, biases) are
// converted to f32 copies, with Gemma's 1 + w applied; LoadOptions::convert quantizes
// the matrices into owned memory instead.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "io/json_file.h"
#include "io/safetensors.h"
#include "io/tensor_source.h"
#include "model/model.h"

namespace kvz {

class HfSource final : public TensorSource {
 public:
  // dir: a folder with config.json and model.safetensors (or model.safetensors.index.json
  // and its shards). Throws kvz::Error naming the file and the problem.
  static std::unique_ptr<HfSource> open(const std::string& dir, const LoadOptions& opt = {});
  // The metadata of a config.json already read (`config`'s file names it in errors), with
  // no tensors: what model_hparams() needs (the config fuzz target). `dir` is the path().
  static std::unique_ptr<HfSource> from_config(const JsonReader& config, const std::string& dir);
  const ArchSpec& arch() const { return *arch_; }

 private:
  HfSource() = default;
  void load_config(JsonReader config, const std::string& dir);
  void load_tensors(const std::string& dir, const LoadOptions& opt);

  const ArchSpec* arch_ = nullptr;
  bool tied_ = false;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::vector<std::vector<uint8_t>> owned_;  // converted tensor data
};

// True when `path` is a directory (an HF folder rather than a GGUF file).
bool is_model_dir(const std::string& path);

}  // namespace kvz
