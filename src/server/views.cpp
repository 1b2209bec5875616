#include "server/views.h"

#include <cstddef>

#include "core/error.h"
#include "kv/kept_view.h"

namespace kvz::server {

// cmake/embed_file.cmake turns src/server/web/index.html into these (build/generated/).
extern const unsigned char kWebPage[];
extern const size_t kWebPageSize;

using nlohmann::json;

namespace {
// Where kept_report_html puts the data: a comment in the page's <head>, inert when served.
constexpr std::string_view kDataMarker = "<!--KVZ_DATA-->";
}  // namespace

json kept_json(const KvCache& cache, const StoredContext& meta, const Tokenizer& tok, const HParams& hp, bool heads) {
  const int64_t n_ctx = static_cast<int64_t>(meta.ctx_ids.size());
  if (cache.n_layer() != hp.n_layer || cache.n_head_kv() != hp.n_head_kv)
    fail("kept: the cache has {} layers x {} KV heads, the model {} x {}", cache.n_layer(), cache.n_head_kv(),
         hp.n_layer, hp.n_head_kv);
  const KeptView v = kept_view(cache, meta.n_sys, n_ctx);
  const std::vector<std::string> pieces = token_pieces(tok, meta.ctx_ids);

  json tokens = json::array();
  for (int64_t t = 0; t < n_ctx; ++t)
    tokens.push_back({{"text", pieces[t]}, {"heads", v.token_heads[t]}, {"kept", v.token_fraction(t)}});
  json head_rows = json::array(), head_kept = json::array(), layer_kept = json::array(), swa = json::array();
  int64_t rows_all = 0, rows_budget = 0, pairs_budget = 0;
  for (int il = 0; il < v.n_layer; ++il) {
    json r = json::array(), f = json::array();
    for (int ih = 0; ih < v.n_head_kv; ++ih) {
      r.push_back(v.rows(il, ih));
      f.push_back(v.head_fraction(il, ih));
      rows_all += v.rows(il, ih);
      if (!hp.is_swa(il)) rows_budget += v.rows(il, ih);
    }
    if (!hp.is_swa(il)) pairs_budget += int64_t{v.n_head_kv} * n_ctx;
    head_rows.push_back(r);
    head_kept.push_back(f);
    layer_kept.push_back(v.layer_fraction(il));
    swa.push_back(hp.is_swa(il));
  }
  json out = {{"object", "context.kept"},
              {"n_layer", v.n_layer},
              {"n_head_kv", v.n_head_kv},
              {"n_sys", v.n_sys},
              {"n_ctx", n_ctx},
              {"kept_rows", rows_all},
              {"ratio_true", pairs_budget > 0 ? static_cast<double>(rows_budget) / pairs_budget : 1.0},
              {"tokens", tokens},
              {"head_rows", head_rows},
              {"head_kept", head_kept},
              {"layer_kept", layer_kept},
              {"sliding_window", swa}};
  if (heads) {
    json maps = json::array();
    for (int il = 0; il < v.n_layer; ++il) {
      json row = json::array();
      for (int ih = 0; ih < v.n_head_kv; ++ih) row.push_back(kept_bitmap_hex(v.head(il, ih), n_ctx));
      maps.push_back(row);
    }
    out["kept_bitmaps"] = maps;
  }
  return out;
}

std::string_view web_page() { return {reinterpret_cast<const char*>(kWebPage), kWebPageSize}; }

std::string json_for_script(const json& j) {
  const std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  std::string out;
  out.reserve(s.size() + s.size() / 16);
  for (const char c : s) {
    if (c == '<') out += "\\u003c";
    else if (c == '>') out += "\\u003e";
    else if (c == '&') out += "\\u0026";
    else out += c;
  }
  return out;
}

std::string kept_report_html(const json& data) {
  const std::string_view page = web_page();
  const size_t at = page.find(kDataMarker);
  KVZ_ASSERT(at != std::string_view::npos, "the embedded page has no data marker");
  std::string out;
  out.reserve(page.size() + 4096);
  out.append(page.substr(0, at));
  out += "<script id=\"kvz-data\" type=\"application/json\">";
  out += json_for_script(data);
  out += "</script>";
  out.append(page.substr(at + kDataMarker.size()));
  return out;
}

}  // namespace kvz::server
