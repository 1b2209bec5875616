// Chat templates. We do not run Jinja: we recognise the family of the model's template
// text (ChatML, Llama 3, Gemma, ...) and render it with code, which is what the supported
// models need. An unrecognised template is an error unless a family is forced.
#pragma once

#include <string>
#include <vector>

namespace kvz {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

enum class ChatFamily { ChatML, Llama3, Gemma, Unknown };

ChatFamily detect_chat_family(const std::string& jinja_template);
const char* chat_family_name(ChatFamily f);

// Renders messages; add_generation_prompt appends the assistant header. Default system
// prompts that a template inserts when none is given (SmolLM2's "You are a helpful AI
// assistant named SmolLM, trained by Hugging Face") are reproduced.
std::string render_chat(ChatFamily family, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt);

// What a model's template needs beyond its family, read from the Jinja text.
struct ChatFormat {
  ChatFamily family = ChatFamily::Unknown;
  // ChatML: system turn the template inserts when messages[0] is not a system message
  // (empty: none). Read from the literal after "<|im_start|>system\n".
  std::string default_system;
};

// detect_chat_family plus the details above. The family-only render_chat uses
// default_chat_format(family) (ChatML: SmolLM2's default system prompt).
ChatFormat detect_chat_format(const std::string& jinja_template);
ChatFormat default_chat_format(ChatFamily family);
// Throws kvz::Error for an Unknown family, and for Gemma when user/assistant turns do not
// alternate or there are no messages (the template fails the same way).
std::string render_chat(const ChatFormat& format, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt);

}  // namespace kvz
