// Chat rendering vs the models' Jinja templates rendered by jinja2
// (tests/golden/data/chat_templates.json, from tests/golden/gen/gen_tokenizer_fixture.py).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/chat_template.h"

namespace kvz {
namespace {

nlohmann::json load_chat_fixture() {
  std::ifstream f(std::string(KVZ_SOURCE_DIR) + "/tests/golden/data/chat_templates.json");
  if (!f) throw std::runtime_error("missing fixture chat_templates.json");
  return nlohmann::json::parse(f);
}

std::vector<ChatMessage> messages(const nlohmann::json& j) {
  std::vector<ChatMessage> out;
  for (const auto& m : j) out.push_back({m.at("role"), m.at("content")});
  return out;
}

TEST(ChatTemplate, DetectFamilies) {
  EXPECT_EQ(detect_chat_family("{{'<|im_start|>' + role}}"), ChatFamily::ChatML);
  EXPECT_EQ(detect_chat_family("{{'<|start_header_id|>'}}"), ChatFamily::Llama3);
  EXPECT_EQ(detect_chat_family("<start_of_turn>user"), ChatFamily::Gemma);
  EXPECT_EQ(detect_chat_family("[INST]"), ChatFamily::Unknown);
  EXPECT_STREQ(chat_family_name(ChatFamily::ChatML), "chatml");
  EXPECT_THROW(render_chat(ChatFamily::Unknown, {}, true), Error);
}

TEST(ChatTemplate, ChatMLWithoutDefaultSystem) {
  // Qwen3-style ChatML (no inserted system turn).
  const ChatFormat f = detect_chat_format("{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' }}");
  EXPECT_EQ(f.family, ChatFamily::ChatML);
  EXPECT_EQ(f.default_system, "");
  EXPECT_EQ(render_chat(f, {{"user", "hi"}}, true), "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, DefaultSystemFromTemplate) {
  const auto fx = load_chat_fixture();
  const auto& fams = fx.at("families");
  EXPECT_EQ(detect_chat_format(fams.at("smollm2").at("template")).default_system,
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  if (fams.contains("qwen25")) {
    EXPECT_EQ(detect_chat_format(fams.at("qwen25").at("template")).default_system,
              "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
  }
}

TEST(ChatTemplate, MatchesJinjaRendering) {
  const auto fx = load_chat_fixture();
  const std::map<std::string, ChatFamily> want_family = {
      {"smollm2", ChatFamily::ChatML}, {"qwen25", ChatFamily::ChatML}, {"llama3", ChatFamily::Llama3},
      {"gemma3", ChatFamily::Gemma}};
  int n = 0;
  for (const auto& [name, fam] : fx.at("families").items()) {
    const ChatFormat f = detect_chat_format(fam.at("template"));
    ASSERT_EQ(f.family, want_family.at(name)) << name;
    for (const auto& c : fam.at("cases")) {
      const auto msgs = messages(c.at("messages"));
      const bool agp = c.at("add_generation_prompt");
      if (c.contains("error")) {
        // Qwen's template indexes messages[0] even for an empty list; we do not fail there.
        if (f.family != ChatFamily::ChatML) {
          EXPECT_THROW(render_chat(f, msgs, agp), Error) << name;
        }
      } else {
        EXPECT_EQ(render_chat(f, msgs, agp), c.at("expected").get<std::string>()) << name << " " << c.dump();
        if (name == "smollm2") {
          EXPECT_EQ(render_chat(ChatFamily::ChatML, msgs, agp), c.at("expected").get<std::string>());
        }
      }
      ++n;
    }
  }
  EXPECT_GE(n, 42);
}

}  // namespace
}  // namespace kvz
