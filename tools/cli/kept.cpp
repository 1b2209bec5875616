// `kvzip kept CONTEXT.kvz -o kept.html`: the web page's kept-token views of a saved context
// as one static HTML file (the server's page with the context's data embedded; it opens
// offline, no server). The model gives the tokenizer that turns ids into text and the
// identity the file is checked against.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/context_store.h"
#include "kept.h"
#include "model/model.h"
#include "server/views.h"

namespace kvz::cli {

void add_kept_command(CLI::App& app, KeptCli& c, const std::string& default_model) {
  c.model = default_model;
  auto* s = app.add_subcommand(
      "kept", "write what a saved compressed context kept as one static HTML page: its text shaded by the share of "
              "heads keeping each token, the layer x KV-head grid of kept fractions, per-layer budget bars (the "
              "views of `kvzip serve`'s page, offline)");
  s->add_option("context", c.context, "a saved context (.kvz: kvzip ask --save, or a file of the server's context "
                                      "directory)")->required();
  s->add_option("-o,--out", c.out, "HTML file to write")->capture_default_str();
  s->add_option("-m,--model", c.model, "the model the context was made with (GGUF file or Hugging Face folder)")
      ->capture_default_str();
}

int run_kept_command(const KeptCli& c, const LoadOptions& lopt) {
  auto model = Model::load(c.model, {}, lopt);
  StoredContext meta;
  const KvCache cache = load_context(c.context, model->identity(), meta);
  nlohmann::json info = nlohmann::json::parse(meta.info, nullptr, false);
  if (!info.is_object()) info = nlohmann::json::object();  // files of `kvzip ask --save` carry no description
  const std::string name = std::filesystem::path(c.context).filename().string();
  if (!info.contains("id")) info["id"] = name;
  info["source"] = name;
  info["n_ctx"] = meta.ctx_ids.size();
  info["kv_bytes"] = cache.bytes_used();
  if (!info.contains("model")) info["model"] = model->identity().name.empty() ? model->identity().arch : model->identity().name;
  const nlohmann::json kept = server::kept_json(cache, meta, model->tokenizer(), model->hp(), /*heads=*/true);
  const std::string html = server::kept_report_html({{"context", info}, {"kept", kept}});
  write_file_atomic(c.out, html.data(), html.size());
  fmt::print("wrote {}: {} context tokens, {} layers x {} KV heads, {:.1f}% of the context pairs kept\n", c.out,
             meta.ctx_ids.size(), kept["n_layer"].get<int>(), kept["n_head_kv"].get<int>(),
             100.0 * kept["ratio_true"].get<double>());
  return 0;
}

}  // namespace kvz::cli
