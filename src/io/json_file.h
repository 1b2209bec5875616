// Reading JSON (config.json, tokenizer.json, safetensors headers, JSON-lines records) with
// errors that name the file, the key path and the expected vs found type:
//   model/config.json: "rope_scaling.factor" is a string ("x"), expected a finite number
//
// JsonReader is the one path by which src/ reads JSON. nlohmann's typed access
// (get<T>(), value(), operator T) throws nlohmann::json::type_error on a mismatch, which
// carries neither the file nor the key; code here asks JsonReader instead and gets a
// kvz::Error that does. Writing JSON (building a nlohmann::json and dumping it) needs no
// reader.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvz {

// Throws kvz::Error when the file cannot be opened or is not valid JSON.
nlohmann::json read_json(const std::string& path);

// `v` as an int64 when it holds one exactly: an integer (signed, or unsigned up to
// INT64_MAX), or with `whole_doubles` a finite whole double in [-2^63, 2^63). nullopt for
// anything else: non-numbers, fractions, values no int64 holds. The range is checked in
// the number's own kind before converting (a double at 2^63, which INT64_MAX rounds up to,
// has no int64 value; converting it would be undefined). Both JsonReader::integer and the
// server's request fields read integers through it.
std::optional<int64_t> exact_int64(const nlohmann::json& v, bool whole_doubles);

// One JSON value plus where it sits: the file (or other source) it came from and its key
// path inside it ("rope_scaling.factor", "added_tokens[3].content"; "" for the top level).
// Cheap to copy: it shares the document, whose lifetime it extends when it owns it.
class JsonReader {
 public:
  // Owns `j`; `file` names it in errors.
  JsonReader(nlohmann::json j, std::string file);
  // Reads `j` in place; `j` must outlive the reader and every reader taken from it. `path`:
  // where `j` sits in `file` ("" for the top level).
  static JsonReader borrow(const nlohmann::json& j, std::string file, std::string path = "");
  // Reads the file (read_json's errors), or parses in-memory text (a JSON-lines record, a
  // safetensors header); `file` names the text in errors.
  static JsonReader open(const std::string& path);
  static JsonReader parse(std::string_view text, std::string file);

  const std::string& file() const { return doc_->file; }
  const std::string& path() const { return path_; }
  // `file: "path"`, or `file: the top-level value`: the subject of an error message.
  std::string where() const;
  // where() of member `key` of this object, whether present or not.
  std::string where(std::string_view key) const;
  // Throws kvz::Error "<where> <what>".
  [[noreturn]] void fail_here(std::string_view what) const;
  // Throws "<where> is <found>, expected <expected>".
  [[noreturn]] void type_error(std::string_view expected) const;

  // The JSON type, with an article and a short excerpt: `a string ("yes")`, `an integer (5)`.
  std::string describe() const;
  bool is_null() const { return j_->is_null(); }
  bool is_bool() const { return j_->is_boolean(); }
  bool is_int() const { return j_->is_number_integer(); }
  bool is_number() const { return j_->is_number(); }
  bool is_string() const { return j_->is_string(); }
  bool is_array() const { return j_->is_array(); }
  bool is_object() const { return j_->is_object(); }

  // This value as a type; anything else is a type_error. integer() also refuses values
  // outside [lo, hi] and number() infinities (JSON has no NaN; 1e999 parses as inf).
  std::string str() const;
  bool boolean() const;
  int64_t integer(int64_t lo = std::numeric_limits<int64_t>::min(),
                  int64_t hi = std::numeric_limits<int64_t>::max()) const;
  double number() const;
  uint64_t u64() const;  // a non-negative integer, up to 2^64 - 1
  const JsonReader& object() const;  // checks the type, returns *this
  const JsonReader& array() const;

  // Object members. A key whose value is null counts as absent, as transformers writes
  // unset options as null. at() requires the key; find() gives nullopt when it is absent.
  // Both require this value to be an object.
  bool has(std::string_view key) const;
  JsonReader at(std::string_view key) const;
  std::optional<JsonReader> find(std::string_view key) const;
  // Typed fields: required, or with a default used when the key is absent (or null).
  std::string get_str(std::string_view key) const;
  std::string get_str(std::string_view key, std::string def) const;
  bool get_bool(std::string_view key) const;
  bool get_bool(std::string_view key, bool def) const;
  int64_t get_int(std::string_view key, int64_t lo, int64_t hi) const;
  int64_t get_int(std::string_view key, int64_t lo, int64_t hi, int64_t def) const;
  double get_number(std::string_view key) const;
  double get_number(std::string_view key, double def) const;

  // Containers. size(): elements of an array or members of an object. elements() and
  // operator[] require an array; members() an object (in the document's key order).
  size_t size() const;
  JsonReader operator[](size_t i) const;
  std::vector<JsonReader> elements() const;
  std::vector<std::pair<std::string, JsonReader>> members() const;

  // The value itself, for copying a subtree or dumping it; never for typed access.
  const nlohmann::json& raw() const { return *j_; }

 private:
  struct Doc {
    nlohmann::json owned;
    std::string file;
  };
  JsonReader(std::shared_ptr<const Doc> doc, const nlohmann::json* j, std::string path)
      : doc_(std::move(doc)), j_(j), path_(std::move(path)) {}
  JsonReader child(std::string_view key, const nlohmann::json* j) const;
  JsonReader required(std::string_view key, std::string_view expected) const;  // missing: error naming `expected`

  std::shared_ptr<const Doc> doc_;
  const nlohmann::json* j_;
  std::string path_;
};

}  // namespace kvz
