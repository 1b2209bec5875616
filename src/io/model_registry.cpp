#include "io/model_registry.h"

#include <charconv>
#include <fstream>

#include "core/error.h"

namespace kvz {

std::vector<RegistryModel> read_model_registry(const std::string& tsv_path) {
  std::ifstream in(tsv_path);
  if (!in) fail("{}: cannot open the model registry", tsv_path);
  std::vector<RegistryModel> out;
  std::string line;
  for (int ln = 1; std::getline(in, line); ++ln) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos || line[0] == '#') continue;
    std::vector<std::string> f;
    for (size_t b = 0;;) {
      const size_t e = line.find('\t', b);
      f.push_back(line.substr(b, e == std::string::npos ? std::string::npos : e - b));
      if (e == std::string::npos) break;
      b = e + 1;
    }
    if (f.size() < 7) fail("{}:{}: {} TAB-separated columns, expected at least 7", tsv_path, ln, f.size());
    RegistryModel m;
    m.name = f[0];
    m.file = f[2].substr(0, f[2].find('='));
    if (m.name.empty() || m.file.empty() || m.file.find('/') != std::string::npos)
      fail("{}:{}: empty name or bad file column '{}'", tsv_path, ln, f[2]);
    const auto r = std::from_chars(f[4].data(), f[4].data() + f[4].size(), m.size);
    if (r.ec != std::errc{} || r.ptr != f[4].data() + f[4].size())
      fail("{}:{}: size '{}' is not a byte count", tsv_path, ln, f[4]);
    m.arch = f[5];
    m.quant = f[6];
    if (f.size() > 7) m.notes = f[7];
    out.push_back(std::move(m));
  }
  return out;
}

const RegistryModel* find_registry_model(const std::vector<RegistryModel>& reg, const std::string& name) {
  for (const auto& m : reg)
    if (m.name == name) return &m;
  return nullptr;
}

}  // namespace kvz
