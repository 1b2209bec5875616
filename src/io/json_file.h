// Reading a JSON file (config.json, tokenizer.json, ...) with errors that name the file.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace kvz {

// Throws kvz::Error when the file cannot be opened or is not valid JSON.
nlohmann::json read_json(const std::string& path);

}  // namespace kvz
