// The kept-token views and the web page: the JSON of GET /v1/contexts/{id}/kept, the page
// served at GET / (src/server/web/index.html, embedded in the binary at build time), and
// the same page as one static file with a context's data inside (`kvzip kept`). The page
// draws the same three views from either source. No HTTP here.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "cache/head_cache.h"
#include "io/context_store.h"
#include "model/hparams.h"
#include "tokenizer/tokenizer.h"

namespace kvz::server {

// What the cache rows of a context hold (kv/kept_view.h), as JSON:
//   n_layer, n_head_kv, n_sys, n_ctx, kept_rows (context rows held in all heads),
//   ratio_true (kept share of the context pairs of the pruned, global-attention layers),
//   tokens: [{text, heads, kept}] (heads: (layer, KV head) pairs holding it; kept: heads / pairs),
//   head_rows, head_kept: [n_layer][n_head_kv] rows held and their fraction of n_ctx,
//   layer_kept: [n_layer], sliding_window: [n_layer] (those layers hold a rolling window, not a budget),
//   heads=true also kept_bitmaps: [n_layer][n_head_kv] hex strings (kv/kept_view.h kept_bitmap_hex).
nlohmann::json kept_json(const KvCache& cache, const StoredContext& meta, const Tokenizer& tok, const HParams& hp,
                         bool heads);

// The page (HTML, CSS and JavaScript in one document).
std::string_view web_page();

// The page with `data` ({"context": description, "kept": kept_json(heads=true)}) embedded:
// opened from disk it shows the views of that context without a server.
std::string kept_report_html(const nlohmann::json& data);

// JSON text safe to place inside <script>: '<', '>' and '&' (which only occur inside JSON
// strings) become \u escapes; invalid UTF-8 becomes U+FFFD.
std::string json_for_script(const nlohmann::json& j);

}  // namespace kvz::server
