// `kvzip chat` (chat.cpp): a multi-turn session over a compressed context, read line by line
// from stdin.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "compress.h"

namespace kvz::cli {

struct ChatOpts {
  CompressOpts c;
  std::string load_path;
  int n_predict = 256;
  bool no_history = false;
};

CLI::App* add_chat_command(CLI::App& app, ChatOpts& o);
int run_chat_command(const CLI::App& cmd, const ChatOpts& o);

}  // namespace kvz::cli
