// Pieces the kvzip commands share: where models come from (paths and pull names), the one
// check that every flag given applies to the chosen mode, loading with progress, and the
// small printing helpers. Front-end code only; the engine knows nothing of it.
#pragma once

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/model.h"

namespace kvz::cli {

// Where pulled models live and where the registry (scripts/models.tsv) and the script that
// fetches them (scripts/pull-model.sh) are. main() fills it from the environment and the
// binary's own location; commands only read it.
struct ModelPlaces {
  std::string models_dir;   // $KVZ_MODELS_DIR, else ~/.cache/kvzip/models (as pull-model.sh)
  std::string registry;     // models.tsv; "" when none was found
  std::string pull_script;  // pull-model.sh beside it; "" when none was found
  std::vector<std::string> searched;  // the folders looked in, for error messages
};

// Looks for scripts/models.tsv + scripts/pull-model.sh beside the binary and in the folders
// above it (a build folder inside the repository), then in `source_dir` (the repository the
// binary was built from). `registry_env`: $KVZ_MODELS_TSV, which pull-model.sh also honours.
ModelPlaces find_model_places(const std::string& exe_path, const std::string& source_dir,
                              const std::string& models_dir, const std::string& registry_env);

// The command that fetches pull name `name`, exactly as it is to be typed.
std::string pull_command(const ModelPlaces& p, const std::string& name);
// A model argument: an existing file or folder as it is; a pull name of the registry to its
// file in the model cache. A pull name that is not cached, or a name that is neither, is a
// kvz::Error; the former prints the command that fetches it.
std::string resolve_model(const ModelPlaces& p, const std::string& arg);
// Where the default model (smollm2-135m) is cached, whether it is there or not.
constexpr const char* kDefaultModel = "smollm2-135m";
std::string default_model_path(const ModelPlaces& p);
// Throws the missing-default-model error (with the pull command) unless it is cached.
void require_default_model(const ModelPlaces& p);

// The one applicability check of the command line: `flag` given (count() > 0) while
// `inapplicable` holds is an error "FLAG does not apply to MODE: WHY". Commands state their
// modes as a list of rules; nothing is silently ignored. Rules may name flags a command does
// not have (commands share rule lists); such a flag is never given.
struct FlagRule {
  std::string flag;
  bool inapplicable = false;
  std::string why;
};
bool given(const CLI::App& cmd, const std::string& flag);
void check_flags(const CLI::App& cmd, const std::string& mode, const std::vector<FlagRule>& rules);

// Human-readable output goes to stdout, or to stderr when --json owns stdout.
struct Out {
  bool json = false;
  std::FILE* text() const { return json ? stderr : stdout; }
  template <typename... A>
  void print(fmt::format_string<A...> f, A&&... a) const {
    fmt::print(text(), f, std::forward<A>(a)...);
  }
};

std::string human_bytes(double b);
std::string read_text_file(const std::string& path);
std::string one_line(std::string s);  // newlines to spaces: one answer per printed line
std::unique_ptr<Model> load_model(const std::string& path, const LoadOptions& opt);
// /proc/cpuinfo's "model name" with its family and model numbers ("AMD EPYC (family 26,
// model 2)"): what every measurement names its machine by.
std::string cpu_model_name();

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace kvz::cli
