// The prompt strings KVzip wraps a context and its queries in (kvzip-spec §2.2, from
// snu-mllab/KVzip model/template.py), chosen by the model's chat family. The prefix is the
// protected system prompt (never scored, never evicted); it opens the user turn, the
// context follows directly, and queries / the repeat instruction are appended to the same
// user turn before the postfix opens the assistant turn.
#pragma once

#include <string>

#include "tokenizer/chat_template.h"

namespace kvz {

struct KvzipTemplate {
  std::string prefix;   // incl. the task instruction
  std::string postfix;  // closes the user turn, opens the assistant's
  std::string repeat_first = "\n\nRepeat the previous context exactly.";
  std::string repeat_next = "\n\nRepeat the part of the previous context exactly, starting with ";
};

// task: "qa" (default instruction) or "gsm" (reasoning instruction). think_block: append
// Qwen3's empty think block to the postfix. Unknown family (no chat template, e.g. a base
// model): the reference's plain fallback ("...\n\nAnswer: "), opened by `bos`, the model's
// own BOS token text ("" when its vocabulary adds none); the reference writes Llama 3's.
KvzipTemplate kvzip_template(ChatFamily family, const std::string& task = "qa", bool think_block = false,
                             const std::string& bos = "<|begin_of_text|>");

}  // namespace kvz
