#include "io/json_file.h"

#include <cctype>
#include <cmath>
#include <fstream>

#include "core/error.h"

namespace kvz {

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
}

namespace {

constexpr size_t kExcerpt = 40;  // characters of a value quoted in an error

std::string excerpt(std::string s) {
  if (s.size() > kExcerpt) s = s.substr(0, kExcerpt) + "...";
  return s;
}

// A key as it appears in a path: `.name` for identifier-like keys, `['a b']` otherwise.
std::string key_step(std::string_view key) {
  bool plain = !key.empty();
  for (char c : key) plain = plain && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-');
  return plain ? fmt::format(".{}", key) : fmt::format("['{}']", excerpt(std::string(key)));
}

}  // namespace

JsonReader::JsonReader(nlohmann::json j, std::string file) {
  auto doc = std::make_shared<Doc>();
  doc->owned = std::move(j);
  doc->file = std::move(file);
  j_ = &doc->owned;
  doc_ = std::move(doc);
}

JsonReader JsonReader::borrow(const nlohmann::json& j, std::string file, std::string path) {
  auto doc = std::make_shared<Doc>();
  doc->file = std::move(file);
  return JsonReader(std::move(doc), &j, std::move(path));
}

JsonReader JsonReader::open(const std::string& path) { return JsonReader(read_json(path), path); }

JsonReader JsonReader::parse(std::string_view text, std::string file) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", file, e.what());
  }
  return JsonReader(std::move(j), std::move(file));
}

std::string JsonReader::where() const {
  return path_.empty() ? file() + ": the top-level value" : fmt::format("{}: \"{}\"", file(), path_);
}

std::string JsonReader::where(std::string_view key) const { return child(key, j_).where(); }

void JsonReader::fail_here(std::string_view what) const { fail("{} {}", where(), what); }

void JsonReader::type_error(std::string_view expected) const {
  fail("{} is {}, expected {}", where(), describe(), expected);
}

std::string JsonReader::describe() const {
  const nlohmann::json& j = *j_;
  switch (j.type()) {
    case nlohmann::json::value_t::null: return "null";
    case nlohmann::json::value_t::boolean: return fmt::format("a boolean ({})", j.dump());
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned: return fmt::format("an integer ({})", j.dump());
    case nlohmann::json::value_t::number_float: return fmt::format("a number ({})", j.get<double>());
    case nlohmann::json::value_t::string: return fmt::format("a string (\"{}\")", excerpt(j.get<std::string>()));
    case nlohmann::json::value_t::array: return fmt::format("an array ({})", excerpt(j.dump()));
    case nlohmann::json::value_t::object: return fmt::format("an object ({})", excerpt(j.dump()));
    default: return "binary data";
  }
}

std::string JsonReader::str() const {
  if (!j_->is_string()) type_error("a string");
  return j_->get<std::string>();
}

bool JsonReader::boolean() const {
  if (!j_->is_boolean()) type_error("a boolean");
  return j_->get<bool>();
}

std::optional<int64_t> exact_int64(const nlohmann::json& v, bool whole_doubles) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (!whole_doubles || !v.is_number_float()) return std::nullopt;
  const double d = v.get<double>();
  constexpr double k2p63 = 9223372036854775808.0;
  if (!(d >= -k2p63 && d < k2p63) || std::floor(d) != d) return std::nullopt;  // NaN fails the first
  return static_cast<int64_t>(d);
}

int64_t JsonReader::integer(int64_t lo, int64_t hi) const {
  if (!j_->is_number_integer()) type_error("an integer");
  const std::optional<int64_t> v = exact_int64(*j_, false);
  if (!v) fail("{} = {} is too large (outside [{}, {}])", where(), j_->get<uint64_t>(), lo, hi);
  if (*v < lo || *v > hi) fail("{} = {} is outside [{}, {}]", where(), *v, lo, hi);
  return *v;
}

uint64_t JsonReader::u64() const {
  if (!j_->is_number_integer()) type_error("a non-negative integer");
  if (!j_->is_number_unsigned() && j_->get<int64_t>() < 0) fail("{} = {} is negative", where(), j_->get<int64_t>());
  return j_->get<uint64_t>();
}

double JsonReader::number() const {
  if (!j_->is_number() || !std::isfinite(j_->get<double>())) type_error("a finite number");
  return j_->get<double>();
}

const JsonReader& JsonReader::object() const {
  if (!j_->is_object()) type_error("an object");
  return *this;
}

const JsonReader& JsonReader::array() const {
  if (!j_->is_array()) type_error("an array");
  return *this;
}

JsonReader JsonReader::child(std::string_view key, const nlohmann::json* j) const {
  std::string step = key_step(key);
  if (path_.empty() && step[0] == '.') step.erase(0, 1);
  return JsonReader(doc_, j, path_ + step);
}

std::optional<JsonReader> JsonReader::find(std::string_view key) const {
  object();
  auto it = j_->find(key);
  if (it == j_->end() || it->is_null()) return std::nullopt;
  return child(key, &*it);
}

bool JsonReader::has(std::string_view key) const { return find(key).has_value(); }

JsonReader JsonReader::at(std::string_view key) const {
  auto r = find(key);
  if (!r) fail("{} is missing", where(key));
  return *r;
}

JsonReader JsonReader::required(std::string_view key, std::string_view expected) const {
  auto r = find(key);
  if (!r) fail("{} is missing, expected {}", where(key), expected);
  return *r;
}

std::string JsonReader::get_str(std::string_view key) const {
  return required(key, "a string").str();
}
std::string JsonReader::get_str(std::string_view key, std::string def) const {
  auto v = find(key);
  return v ? v->str() : def;
}
bool JsonReader::get_bool(std::string_view key) const {
  return required(key, "a boolean").boolean();
}
bool JsonReader::get_bool(std::string_view key, bool def) const {
  auto v = find(key);
  return v ? v->boolean() : def;
}
int64_t JsonReader::get_int(std::string_view key, int64_t lo, int64_t hi) const {
  return required(key, "an integer").integer(lo, hi);
}
int64_t JsonReader::get_int(std::string_view key, int64_t lo, int64_t hi, int64_t def) const {
  auto v = find(key);
  return v ? v->integer(lo, hi) : def;
}
double JsonReader::get_number(std::string_view key) const {
  return required(key, "a finite number").number();
}
double JsonReader::get_number(std::string_view key, double def) const {
  auto v = find(key);
  return v ? v->number() : def;
}

size_t JsonReader::size() const {
  if (!j_->is_array() && !j_->is_object()) type_error("an array or an object");
  return j_->size();
}

JsonReader JsonReader::operator[](size_t i) const {
  array();
  if (i >= j_->size()) fail("{} has {} elements, expected at least {}", where(), j_->size(), i + 1);
  return JsonReader(doc_, &(*j_)[i], fmt::format("{}[{}]", path_, i));
}

std::vector<JsonReader> JsonReader::elements() const {
  array();
  std::vector<JsonReader> out;
  out.reserve(j_->size());
  for (size_t i = 0; i < j_->size(); ++i) out.push_back(JsonReader(doc_, &(*j_)[i], fmt::format("{}[{}]", path_, i)));
  return out;
}

std::vector<std::pair<std::string, JsonReader>> JsonReader::members() const {
  object();
  std::vector<std::pair<std::string, JsonReader>> out;
  out.reserve(j_->size());
  for (auto it = j_->begin(); it != j_->end(); ++it) out.emplace_back(it.key(), child(it.key(), &it.value()));
  return out;
}

}  // namespace kvz
