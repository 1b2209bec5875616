#include "eval/jsonl.h"

#include <fstream>

#include "core/error.h"
#include "io/json_file.h"

namespace kvz {

namespace {

std::vector<std::string> string_list(const JsonReader& j, bool join_inner) {
  if (j.is_string()) return {j.str()};
  if (!j.is_array()) j.type_error("a string or a list of strings");
  std::vector<std::string> out;
  for (const JsonReader& e : j.elements()) {
    if (e.is_string()) {
      out.push_back(e.str());
    } else if (join_inner && e.is_array()) {
      std::string s;
      for (const JsonReader& x : e.elements()) s += (s.empty() ? "" : ", ") + x.str();
      out.push_back(s);
    } else if (e.is_number()) {
      out.push_back(e.raw().dump());
    } else {
      e.type_error(join_inner ? "a string, a number or a list of strings" : "a string or a number");
    }
  }
  return out;
}

}  // namespace

EvalSample parse_jsonl_sample(const std::string& line, const std::string& task_name, int index,
                              const std::string& where) {
  const JsonReader j = JsonReader::parse(line, where);
  j.object();
  EvalSample s;
  s.task = task_name;
  s.index = index;
  s.context = j.get_str("context");
  const char* qkey = j.has("questions") ? "questions" : "question";
  s.questions = string_list(j.at(qkey), false);
  const char* akey = j.has("answers") ? "answers" : "answer";
  s.answers = string_list(j.at(akey), true);
  if (auto metric = j.find("metric")) {
    s.metrics = string_list(*metric, false);
    if (s.metrics.size() == 1 && s.questions.size() > 1) s.metrics.assign(s.questions.size(), s.metrics[0]);
  } else {
    s.metrics.assign(s.questions.size(), "inclusion");
  }
  s.max_new_tokens = static_cast<int>(j.get_int("max_new_tokens", 1, 1 << 20, s.max_new_tokens));
  s.prompt = j.get_str("prompt", s.prompt);
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
