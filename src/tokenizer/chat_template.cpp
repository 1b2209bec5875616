// Chat templates rendered in code. Each renderer reproduces one model template exactly, as
// transformers renders it (jinja2 with trim_blocks and lstrip_blocks):
//  - ChatML: SmolLM2-Instruct's tokenizer.chat_template (default system turn when the
//    first message is not a system message; content not trimmed). Qwen2.5's template
//    renders the same for plain chats (its default system text is read from the template);
//    its tool-call branches are not reproduced, and where jinja fails on an empty message
//    list (Qwen reads messages[0]) we render only the generation prompt.
//  - Llama3: Meta-Llama-3-*-Instruct (bos text, header ids, content | trim). The 3.1+
//    templates that add a "Cutting Knowledge Date" system block are not reproduced.
//  - Gemma: Gemma 3 (bos text, system prompt folded into the first user turn, assistant
//    role spelled "model", content | trim, roles must alternate).
// tests/golden/gen/gen_tokenizer_fixture.py renders the real templates with jinja2 and
// tests/unit/test_chat_template.cpp compares.
#include "tokenizer/chat_template.h"

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace kvz {

namespace {

constexpr const char* kSmolLm2System = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

// Python str.isspace(): what jinja2's `trim` filter (str.strip()) removes.
bool py_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

std::string py_strip(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e) {
    uint32_t cp;
    const int n = utf8::decode(s, b, &cp);
    if (n == 0 || !py_space(cp)) break;
    b += n;
  }
  while (e > b) {
    size_t k = e - 1;  // start of the last code point
    while (k > b && (static_cast<uint8_t>(s[k]) & 0xC0) == 0x80) --k;
    uint32_t cp;
    const int n = utf8::decode(s, k, &cp);
    if (n == 0 || k + n != e || !py_space(cp)) break;
    e = k;
  }
  return s.substr(b, e - b);
}

std::string render_chatml(const ChatFormat& f, const std::vector<ChatMessage>& msgs, bool agp) {
  std::string out;
  for (size_t i = 0; i < msgs.size(); ++i) {
    if (i == 0 && msgs[0].role != "system" && !f.default_system.empty())
      out += "<|im_start|>system\n" + f.default_system + "<|im_end|>\n";
    out += "<|im_start|>" + msgs[i].role + "\n" + msgs[i].content + "<|im_end|>\n";
  }
  if (agp) out += "<|im_start|>assistant\n";
  return out;
}

std::string render_llama3(const std::vector<ChatMessage>& msgs, bool agp) {
  std::string out;
  for (size_t i = 0; i < msgs.size(); ++i) {
    if (i == 0) out += "<|begin_of_text|>";
    out += "<|start_header_id|>" + msgs[i].role + "<|end_header_id|>\n\n" + py_strip(msgs[i].content) + "<|eot_id|>";
  }
  if (agp) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

std::string render_gemma(const std::vector<ChatMessage>& msgs, bool agp) {
  // The template reads messages[0] unconditionally, so jinja fails on an empty list.
  if (msgs.empty()) fail("chat: the Gemma template needs at least one message");
  std::string out = "<bos>";
  std::string first_user_prefix;
  size_t start = 0;
  if (!msgs.empty() && msgs[0].role == "system") {
    first_user_prefix = msgs[0].content + "\n\n";
    start = 1;
  }
  for (size_t i = start; i < msgs.size(); ++i) {
    const size_t k = i - start;
    if ((msgs[i].role == "user") != (k % 2 == 0))
      fail("chat: Gemma conversation roles must alternate user/assistant/user/assistant/... (message {} has role '{}')",
           i, msgs[i].role);
    const std::string role = msgs[i].role == "assistant" ? "model" : msgs[i].role;
    out += "<start_of_turn>" + role + "\n" + (k == 0 ? first_user_prefix : "");
    out += py_strip(msgs[i].content) + "<end_of_turn>\n";
  }
  if (agp) out += "<start_of_turn>model\n";
  return out;
}

// Literal text after "<|im_start|>system" + newline (a real one or a Jinja "\n" escape),
// up to "<|im_end|>", when it is plain text rather than an expression.
std::string find_default_system(const std::string& t) {
  for (const char* head : {"<|im_start|>system\n", "<|im_start|>system\\n"}) {
    const std::string_view h(head);
    for (size_t p = t.find(h); p != std::string::npos; p = t.find(h, p + 1)) {
      const size_t b = p + h.size();
      const size_t e = t.find("<|im_end|>", b);
      if (e == std::string::npos) break;
      const std::string lit = t.substr(b, e - b);
      if (lit.find_first_of("'\"{}+") == std::string::npos) return lit;  // plain text, not an expression
    }
  }
  return "";
}

}  // namespace

ChatFamily detect_chat_family(const std::string& t) {
  if (t.find("<|im_start|>") != std::string::npos) return ChatFamily::ChatML;
  if (t.find("<|start_header_id|>") != std::string::npos) return ChatFamily::Llama3;
  if (t.find("<start_of_turn>") != std::string::npos) return ChatFamily::Gemma;
  return ChatFamily::Unknown;
}

const char* chat_family_name(ChatFamily f) {
  switch (f) {
    case ChatFamily::ChatML: return "chatml";
    case ChatFamily::Llama3: return "llama3";
    case ChatFamily::Gemma: return "gemma";
    case ChatFamily::Unknown: break;
  }
  return "unknown";
}

ChatFormat detect_chat_format(const std::string& t) {
  ChatFormat f;
  f.family = detect_chat_family(t);
  if (f.family == ChatFamily::ChatML) f.default_system = find_default_system(t);
  return f;
}

ChatFormat default_chat_format(ChatFamily family) {
  ChatFormat f;
  f.family = family;
  if (family == ChatFamily::ChatML) f.default_system = kSmolLm2System;
  return f;
}

std::string render_chat(const ChatFormat& f, const std::vector<ChatMessage>& messages, bool agp) {
  switch (f.family) {
    case ChatFamily::ChatML: return render_chatml(f, messages, agp);
    case ChatFamily::Llama3: return render_llama3(messages, agp);
    case ChatFamily::Gemma: return render_gemma(messages, agp);
    case ChatFamily::Unknown: break;
  }
  fail("chat: unrecognised chat template family (supported: chatml, llama3, gemma)");
}

std::string render_chat(ChatFamily family, const std::vector<ChatMessage>& messages, bool agp) {
  return render_chat(default_chat_format(family), messages, agp);
}

}  // namespace kvz
