// Hugging Face config.json -> hyper-parameters: the input is the config text; it becomes an
// HfSource without tensors (HfSource::from_config), whose metadata goes through the
// family's hyper-parameter step and validate_hparams (model_hparams), as Model::load does
// before it looks at a tensor.
#include <string>
#include <string_view>

#include "common.h"
#include "io/json_file.h"
#include "json_mutator.h"
#include "model/hf_source.h"
#include "model/model.h"
#include "targets.h"

namespace kvz::fuzz {

std::string config(const uint8_t* data, size_t size) {
  return refused([&] {
    const JsonReader c = JsonReader::parse(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz/config.json");
    const auto src = HfSource::from_config(c, "fuzz");
    model_hparams(*src);
  });
}

}  // namespace kvz::fuzz

KVZ_FUZZ_ENTRY(config)
KVZ_FUZZ_JSON_MUTATOR()
