// `kvzip serve` options (serve.cpp).
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

#include "model/model.h"

namespace kvz::cli {

struct ServeCli {
  std::string model;
  std::string host = "127.0.0.1";
  int port = 8080;
  int parallel = 4;
  std::string context_dir;
  std::string store;
  std::string mem_budget = "0";
  std::string api_key;
  std::string max_body = "64M";
  int threads = 0;
  int64_t n_ctx = 0;
  int max_tokens = 4096;
  int64_t prefill_chunk = 256;
  std::string kvzap;  // --kvzap DIR; empty: the default folder when there is one
};

void add_serve_command(CLI::App& app, ServeCli& c, const std::string& default_model);
int run_serve_command(const ServeCli& c, const LoadOptions& lopt);

}  // namespace kvz::cli
