#include "kv/kvzip_template.h"

namespace kvz {

KvzipTemplate kvzip_template(ChatFamily family, const std::string& task, bool think_block, const std::string& bos) {
  KvzipTemplate t;
  switch (family) {
    case ChatFamily::Llama3:
      t.prefix =
          "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\n";
      t.postfix = "\n\n<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    case ChatFamily::ChatML:  // the reference's "qwen" template; SmolLM2 uses ChatML too
      t.prefix = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n";
      t.postfix = "<|im_end|>\n<|im_start|>assistant\n";
      if (think_block) t.postfix += "<think>\n\n</think>\n\n";
      break;
    case ChatFamily::Gemma:
      t.prefix = "<bos><start_of_turn>user\nYou are a helpful assistant.\n\n";
      t.postfix = "<end_of_turn>\n<start_of_turn>model\n";
      break;
    case ChatFamily::Unknown:
      t.prefix = bos;
      t.postfix = "\n\nAnswer: ";
      break;
  }
  t.prefix += task.rfind("gsm", 0) == 0
                  ? "Given the context, answer to the following reasoning question.\n\n"
                  : "Given the context, answer to the following question or request without explanation.\n\n";
  return t;
}

}  // namespace kvz
