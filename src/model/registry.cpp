// The one list of architectures. Adding a family: write model/<family>.cpp with its
// loader, add one line here.
#include "core/error.h"
#include "model/model.h"

namespace kvz {

const std::vector<ArchSpec>& architectures() {
  static const std::vector<ArchSpec> list = {
      {"llama", hparams_llama, load_llama, hf_names_llama()},
      {"qwen2", hparams_qwen2, load_qwen2, hf_names_qwen2()},
      {"qwen3", hparams_qwen3, load_qwen3, hf_names_qwen3()},
      {"gemma3", hparams_gemma3, load_gemma3, hf_names_gemma3()},
  };
  return list;
}

const ArchSpec& arch_of(const TensorSource& f) {
  const std::string arch = f.get_str("general.architecture");
  for (const auto& a : architectures())
    if (arch == a.name) return a;
  std::string known;
  for (const auto& a : architectures()) known += std::string(known.empty() ? "" : ", ") + a.name;
  fail("{}: architecture '{}' is not supported (supported: {})", f.path(), arch, known);
}

}  // namespace kvz
