#include "common.h"

#include <fmt/ranges.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/progress.h"
#include "io/model_registry.h"

namespace kvz::cli {

namespace fs = std::filesystem;

namespace {

bool is_registry_dir(const fs::path& d) {
  std::error_code ec;
  return fs::is_regular_file(d / "models.tsv", ec) && fs::is_regular_file(d / "pull-model.sh", ec);
}

// The registry's file for `name`, or the default model's known file when no registry was
// found (so the default path is right even for a binary copied away from the repository).
std::string cached_file(const ModelPlaces& p, const std::string& name) {
  if (!p.registry.empty()) {
    const std::vector<RegistryModel> reg = read_model_registry(p.registry);
    if (const RegistryModel* m = find_registry_model(reg, name)) return p.models_dir + "/" + name + "/" + m->file;
    return "";
  }
  if (name == kDefaultModel) return p.models_dir + "/" + name + "/SmolLM2-135M-Instruct.Q4_1.gguf";
  return "";
}

}  // namespace

ModelPlaces find_model_places(const std::string& exe_path, const std::string& source_dir,
                              const std::string& models_dir, const std::string& registry_env) {
  ModelPlaces p;
  p.models_dir = models_dir;
  std::vector<fs::path> cands;
  if (!registry_env.empty()) {
    // pull-model.sh reads this registry too; the script is still the one found below.
    p.registry = registry_env;
  }
  if (!exe_path.empty()) {
    fs::path d = fs::path(exe_path).parent_path();
    for (int up = 0; up < 4 && !d.empty(); ++up) {
      cands.push_back(d / "scripts");
      cands.push_back(d / "share" / "kvzip" / "scripts");
      if (d == d.parent_path()) break;
      d = d.parent_path();
    }
  }
  if (!source_dir.empty()) cands.push_back(fs::path(source_dir) / "scripts");
  for (const fs::path& c : cands) {
    p.searched.push_back(c.string());
    if (!is_registry_dir(c)) continue;
    std::error_code ec;
    const fs::path abs = fs::weakly_canonical(c, ec);
    const fs::path dir = ec ? c : abs;
    if (p.registry.empty()) p.registry = (dir / "models.tsv").string();
    p.pull_script = (dir / "pull-model.sh").string();
    break;
  }
  return p;
}

std::string pull_command(const ModelPlaces& p, const std::string& name) {
  const std::string script = p.pull_script.empty() ? "scripts/pull-model.sh" : p.pull_script;
  return fmt::format("{} {}", script, name);
}

std::string resolve_model(const ModelPlaces& p, const std::string& arg) {
  std::error_code ec;
  if (arg.empty()) fail("-m/--model: empty model name");
  if (fs::exists(arg, ec)) return arg;
  const std::string file = cached_file(p, arg);
  if (file.empty()) {
    if (p.registry.empty())
      fail("{}: no such file or folder; pull names need the model registry scripts/models.tsv, which was not found "
           "in {}",
           arg, fmt::join(p.searched, ", "));
    std::vector<std::string> names;
    for (const auto& m : read_model_registry(p.registry)) names.push_back(m.name);
    fail("{}: no such file or folder, and not a pull name of {} (pull names: {})", arg, p.registry,
         fmt::join(names, ", "));
  }
  if (fs::exists(file, ec)) return file;
  fail("model '{}' is not in the model cache ({} is missing); fetch it with:\n  {}", arg, file, pull_command(p, arg));
}

std::string default_model_path(const ModelPlaces& p) {
  const std::string f = cached_file(p, kDefaultModel);
  return f.empty() ? p.models_dir + "/" + kDefaultModel : f;
}

void require_default_model(const ModelPlaces& p) {
  std::error_code ec;
  const std::string f = default_model_path(p);
  if (fs::exists(f, ec)) return;
  fail("the default model {} is not in the model cache ({} is missing); fetch it with:\n  {}\nor give another with "
       "-m FILE|FOLDER|PULL_NAME",
       kDefaultModel, f, pull_command(p, kDefaultModel));
}

bool given(const CLI::App& cmd, const std::string& flag) {
  const CLI::Option* o = cmd.get_option_no_throw(flag);
  return o != nullptr && o->count() > 0;  // a flag the command does not have is never given
}

void check_flags(const CLI::App& cmd, const std::string& mode, const std::vector<FlagRule>& rules) {
  for (const FlagRule& r : rules)
    if (given(cmd, r.flag) && r.inapplicable) fail("{} does not apply to {}: {}", r.flag, mode, r.why);
}

std::string human_bytes(double b) {
  const char* u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int i = 0;
  while (b >= 1024 && i < 4) {
    b /= 1024;
    ++i;
  }
  return i == 0 ? fmt::format("{:.0f} {}", b, u[i]) : fmt::format("{:.2f} {}", b, u[i]);
}

std::string read_text_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail("{}: cannot open", path);
  std::string s;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  std::fclose(f);
  return s;
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

std::unique_ptr<Model> load_model(const std::string& path, const LoadOptions& opt) {
  ProgressBar bar("loading", "%", stderr_is_tty());
  auto m = Model::load(path, [&](double f) { bar.update(100.0 * f, 100.0); }, opt);
  bar.finish();
  return m;
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, name = "unknown", family, model;
  auto value = [](const std::string& l) {
    const auto p = l.find(':');
    return p == std::string::npos || p + 2 > l.size() ? std::string() : l.substr(p + 2);
  };
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) name = value(line);
    else if (line.rfind("cpu family", 0) == 0) family = value(line);
    else if (line.rfind("model\t", 0) == 0 || line.rfind("model :", 0) == 0) model = value(line);
    if (line.empty() && name != "unknown") break;  // the first processor's block
  }
  if (!family.empty() && !model.empty()) name += fmt::format(" (family {}, model {})", family, model);
  return name;
}

}  // namespace kvz::cli
