// `kvzip kept` options (kept.cpp).
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "model/model.h"

namespace kvz::cli {

struct KeptCli {
  std::string context;  // a .kvz file (kvzip ask --save, or the server's context directory)
  std::string out = "kept.html";
  std::string model;
};

void add_kept_command(CLI::App& app, KeptCli& c, const std::string& default_model);
int run_kept_command(const KeptCli& c, const LoadOptions& lopt);

}  // namespace kvz::cli
