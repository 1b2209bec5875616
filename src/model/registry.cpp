// The one list of architectures. Adding a family: write model/<family>.cpp with its
// loader, add one line here.
#include "model/model.h"

namespace kvz {

const std::vector<ArchSpec>& architectures() {
  static const std::vector<ArchSpec> list = {
      {"llama", load_llama, hf_names_llama()},
      {"qwen2", load_qwen2, hf_names_qwen2()},
      {"qwen3", load_qwen3, hf_names_qwen3()},
      {"gemma3", load_gemma3, hf_names_gemma3()},
  };
  return list;
}

}  // namespace kvz
