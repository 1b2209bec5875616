#include "eval/jsonl.h"

#include <nlohmann/json.hpp>

#include <fstream>

#include "core/error.h"

namespace kvz {

namespace {

using json = nlohmann::json;

std::vector<std::string> string_list(const json& j, const char* key, const std::string& where, bool join_inner) {
  if (j.is_string()) return {j.get<std::string>()};
  if (!j.is_array()) fail("{}: \"{}\" must be a string or a list of strings", where, key);
  std::vector<std::string> out;
  for (const auto& e : j) {
    if (e.is_string()) {
      out.push_back(e.get<std::string>());
    } else if (join_inner && e.is_array()) {
      std::string s;
      for (const auto& x : e) {
        if (!x.is_string()) fail("{}: \"{}\" holds a list with a non-string item", where, key);
        s += (s.empty() ? "" : ", ") + x.get<std::string>();
      }
      out.push_back(s);
    } else if (e.is_number()) {
      out.push_back(e.dump());
    } else {
      fail("{}: \"{}\" must hold strings", where, key);
    }
  }
  return out;
}

}  // namespace

EvalSample parse_jsonl_sample(const std::string& line, const std::string& task_name, int index,
                              const std::string& where) {
  json j;
  try {
    j = json::parse(line);
  } catch (const json::parse_error& e) {
    fail("{}: not valid JSON ({})", where, e.what());
  }
  if (!j.is_object()) fail("{}: expected a JSON object per line", where);
  EvalSample s;
  s.task = task_name;
  s.index = index;
  if (!j.contains("context") || !j["context"].is_string()) fail("{}: missing string field \"context\"", where);
  s.context = j["context"].get<std::string>();
  const char* qkey = j.contains("questions") ? "questions" : "question";
  if (!j.contains(qkey)) fail("{}: missing field \"questions\"", where);
  s.questions = string_list(j[qkey], qkey, where, false);
  const char* akey = j.contains("answers") ? "answers" : "answer";
  if (!j.contains(akey)) fail("{}: missing field \"answers\"", where);
  s.answers = string_list(j[akey], akey, where, true);
  if (j.contains("metric")) {
    s.metrics = string_list(j["metric"], "metric", where, false);
    if (s.metrics.size() == 1 && s.questions.size() > 1) s.metrics.assign(s.questions.size(), s.metrics[0]);
  } else {
    s.metrics.assign(s.questions.size(), "inclusion");
  }
  if (j.contains("max_new_tokens")) {
    if (!j["max_new_tokens"].is_number_integer()) fail("{}: \"max_new_tokens\" must be an integer", where);
    s.max_new_tokens = j["max_new_tokens"].get<int>();
  }
  if (j.contains("prompt")) {
    if (!j["prompt"].is_string()) fail("{}: \"prompt\" must be \"qa\" or \"gsm\"", where);
    s.prompt = j["prompt"].get<std::string>();
  }
  validate_sample(s, where);
  return s;
}

std::vector<EvalSample> load_jsonl_samples(const std::string& path, const std::string& task_name) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot open", path);
  std::vector<EvalSample> out;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    out.push_back(parse_jsonl_sample(line, task_name, static_cast<int>(out.size()), fmt::format("{}:{}", path, lineno)));
  }
  if (out.empty()) fail("{}: no samples", path);
  return out;
}

}  // namespace kvz
