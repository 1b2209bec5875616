// kvzip._kvzip: the native half of the Python package, a thin layer over the C API
// (include/kvzip.h). Every engine call runs with the GIL released; callbacks take it back
// only to check for signals (Ctrl-C) and to call Python. A Python exception raised in a
// callback (KeyboardInterrupt included) stops the call through the API's cancellation and
// is re-raised when the call returns.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "kvzip.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

PyObject* g_error = nullptr;      // kvzip.KvzipError(RuntimeError)
PyObject* g_cancelled = nullptr;  // kvzip.Cancelled(KvzipError)

// A Python exception caught inside a callback (GIL held there), raised again after the call.
struct Pending {
  PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
  void fetch() { PyErr_Fetch(&type, &value, &tb); }
  bool has() const { return type != nullptr; }
  ~Pending() {  // only reached with the GIL held and nothing left to raise
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
  }
};

[[noreturn]] void raise_status(kvz_status st, const std::string& msg, Pending* p = nullptr) {
  if (p && p->has()) {
    PyErr_Restore(p->type, p->value, p->tb);
    p->type = p->value = p->tb = nullptr;
    throw nb::python_error();
  }
  PyObject* exc = g_error;
  if (st == KVZ_ERR_ARGUMENT) exc = PyExc_ValueError;
  else if (st == KVZ_ERR_NO_MEMORY) exc = PyExc_MemoryError;
  else if (st == KVZ_ERR_CANCELLED) exc = g_cancelled;
  PyErr_SetString(exc, msg.c_str());
  throw nb::python_error();
}

// What a callback needs: the Python callables (may be None) and where an exception goes.
struct Call {
  nb::object progress, on_token;
  Pending err;
};

int progress_cb(void* user, int64_t done, int64_t total) {
  Call* c = static_cast<Call*>(user);
  nb::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() != 0) {  // Ctrl-C (main thread only; elsewhere a no-op)
    c->err.fetch();
    return 1;
  }
  if (c->progress.is_valid() && !c->progress.is_none()) {
    try {
      c->progress(done, total);
    } catch (nb::python_error& e) {
      e.restore();
      c->err.fetch();
      return 1;
    }
  }
  return 0;
}

int token_cb(void* user, int32_t token, const char* piece, size_t n) {
  Call* c = static_cast<Call*>(user);
  nb::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() != 0) {
    c->err.fetch();
    return 1;
  }
  if (c->on_token.is_valid() && !c->on_token.is_none()) {
    try {
      nb::object r = c->on_token(nb::str(piece, n), token);
      return PyObject_IsTrue(r.ptr()) == 1 ? 1 : 0;  // a true result stops the generation
    } catch (nb::python_error& e) {
      e.restore();
      c->err.fetch();
      return 1;
    }
  }
  return 0;
}

struct Model {
  kvz_model* h = nullptr;
  Model(const std::string& path, int threads) {
    kvz_status st;
    {
      nb::gil_scoped_release r;
      st = kvz_model_load(path.c_str(), threads, &h);
    }
    if (st != KVZ_OK) raise_status(st, kvz_last_error());
  }
  ~Model() { kvz_model_free(h); }
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  void check(kvz_status st) const {
    if (st != KVZ_OK) raise_status(st, kvz_model_error(h));
  }
};

struct Context {
  kvz_context* h = nullptr;
  nb::object model;  // keeps the Model alive as long as the context
  std::mutex mu;     // one call at a time per context (taken with the GIL released)

  Context(nb::object m, const std::string& options) : model(std::move(m)) {
    Model& mm = nb::cast<Model&>(model);
    const kvz_status st = kvz_context_new(mm.h, options.c_str(), &h);
    if (st != KVZ_OK) raise_status(st, kvz_last_error());
  }
  ~Context() { kvz_context_free(h); }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // Runs fn() (a C API call) with the GIL released and the context's lock held.
  template <class F>
  void run(F&& fn, Pending* p = nullptr) {
    kvz_status st;
    {
      nb::gil_scoped_release r;
      std::lock_guard lk(mu);
      st = fn();
    }
    if (st != KVZ_OK) raise_status(st, kvz_context_error(h), p);
  }
};

nb::dict model_info(const Model& m) {
  kvz_model_info i;
  m.check(kvz_model_get_info(m.h, &i));
  nb::dict d;
  d["architecture"] = i.architecture;
  d["name"] = i.name;
  d["n_layer"] = i.n_layer;
  d["n_head"] = i.n_head;
  d["n_head_kv"] = i.n_head_kv;
  d["d_head"] = i.d_head;
  d["n_embd"] = i.n_embd;
  d["n_vocab"] = i.n_vocab;
  d["n_ctx_train"] = i.n_ctx_train;
  d["threads"] = i.n_threads;
  d["fingerprint"] = i.fingerprint;
  return d;
}

std::vector<int32_t> tokenize(const Model& m, const std::string& text, bool parse_special) {
  size_t n = 0;
  m.check(kvz_tokenize(m.h, text.data(), text.size(), parse_special, nullptr, 0, &n));
  std::vector<int32_t> ids(n);
  m.check(kvz_tokenize(m.h, text.data(), text.size(), parse_special, ids.data(), n, &n));
  return ids;
}

std::string detokenize(const Model& m, const std::vector<int32_t>& ids) {
  size_t n = 0;
  m.check(kvz_detokenize(m.h, ids.data(), ids.size(), nullptr, 0, &n));
  std::string s(n, '\0');
  m.check(kvz_detokenize(m.h, ids.data(), ids.size(), s.data(), n, &n));
  return s;
}

std::vector<int32_t> apply_template(const Model& m, const std::string& q) {
  size_t n = 0;
  m.check(kvz_apply_template(m.h, q.c_str(), nullptr, 0, &n));
  std::vector<int32_t> ids(n);
  m.check(kvz_apply_template(m.h, q.c_str(), ids.data(), n, &n));
  return ids;
}

void score_heads(Model& m, std::optional<std::string> text, const std::string& path, nb::object progress) {
  Call c;
  c.progress = std::move(progress);
  kvz_status st;
  {
    nb::gil_scoped_release r;
    st = kvz_model_score_heads(m.h, text ? text->c_str() : nullptr, path.c_str(), progress_cb, &c);
  }
  if (st != KVZ_OK) raise_status(st, kvz_model_error(m.h), &c.err);
}

nb::list methods() {
  nb::list out;
  for (int i = 0; i < kvz_method_count(); ++i) {
    nb::dict d;
    d["name"] = kvz_method_name(i);
    d["description"] = kvz_method_description(i);
    d["level"] = kvz_method_default_level(i);
    nb::dict params;
    for (int j = 0; j < kvz_method_param_count(i); ++j) {
      kvz_method_param p;
      if (kvz_method_param_get(i, j, &p) != KVZ_OK) raise_status(KVZ_ERR_INTERNAL, kvz_last_error());
      nb::dict pd;
      pd["help"] = p.help;
      if (p.is_text) {
        pd["default"] = p.text_default;
      } else {
        if (p.is_integer) pd["default"] = static_cast<long long>(p.def);
        else pd["default"] = p.def;
        pd["min"] = p.min;
        pd["max"] = p.max;
      }
      params[p.name] = pd;
    }
    d["params"] = params;
    out.append(d);
  }
  return out;
}

nb::dict context_info(Context& c) {
  kvz_context_info i;
  c.run([&] { return kvz_context_get_info(c.h, &i); });
  nb::dict d;
  d["n_layer"] = i.n_layer;
  d["n_head_kv"] = i.n_head_kv;
  d["n_ctx"] = i.n_ctx;
  d["n_sys"] = i.n_sys;
  d["n_pos"] = i.n_pos;
  d["has_scores"] = static_cast<bool>(i.has_scores);
  d["pruned"] = static_cast<bool>(i.pruned);
  d["kv_bytes"] = i.kv_bytes;
  d["ratio_true"] = i.ratio_true;
  return d;
}

using Scores = nb::ndarray<nb::numpy, const float, nb::ndim<3>, nb::c_contig>;
using Kept = nb::ndarray<nb::numpy, const bool, nb::ndim<3>, nb::c_contig>;

// The scores, copied once into an array that numpy owns (the engine may replace its own
// buffer on the next scoring), read-only.
Scores context_scores(Context& c) {
  const float* data = nullptr;
  int64_t shape[3] = {0, 0, 0};
  float* copy = nullptr;
  c.run([&] {
    const kvz_status st = kvz_context_scores(c.h, &data, shape);
    if (st == KVZ_OK) {
      const size_t n = static_cast<size_t>(shape[0] * shape[1] * shape[2]);
      copy = new float[n > 0 ? n : 1];
      std::memcpy(copy, data, n * sizeof(float));
    }
    return st;
  });
  nb::capsule owner(copy, [](void* p) noexcept { delete[] static_cast<float*>(p); });
  const size_t sh[3] = {static_cast<size_t>(shape[0]), static_cast<size_t>(shape[1]), static_cast<size_t>(shape[2])};
  return Scores(copy, 3, sh, owner);
}

// The kept mask, written by the API straight into the array numpy will own.
Kept context_kept(Context& c) {
  kvz_context_info i;
  c.run([&] { return kvz_context_get_info(c.h, &i); });
  const size_t n = static_cast<size_t>(i.n_layer) * i.n_head_kv * i.n_ctx;
  bool* buf = new bool[n > 0 ? n : 1];
  nb::capsule owner(buf, [](void* p) noexcept { delete[] static_cast<bool*>(p); });
  static_assert(sizeof(bool) == sizeof(uint8_t));
  size_t got = 0;
  c.run([&] { return kvz_context_kept(c.h, reinterpret_cast<uint8_t*>(buf), n, &got); });
  if (got != n) raise_status(KVZ_ERR_INTERNAL, "kept mask size changed during the call");
  const size_t sh[3] = {static_cast<size_t>(i.n_layer), static_cast<size_t>(i.n_head_kv), static_cast<size_t>(i.n_ctx)};
  return Kept(buf, 3, sh, owner);
}

std::vector<int32_t> context_ids(Context& c) {
  size_t n = 0;
  c.run([&] { return kvz_context_ids(c.h, nullptr, 0, &n); });
  std::vector<int32_t> ids(n);
  c.run([&] { return kvz_context_ids(c.h, ids.data(), n, &n); });
  return ids;
}

void prefill(Context& c, nb::object context, nb::object progress) {
  Call call;
  call.progress = std::move(progress);
  if (nb::isinstance<nb::str>(context)) {
    const std::string text = nb::cast<std::string>(context);
    c.run([&] { return kvz_context_prefill(c.h, text.data(), text.size(), progress_cb, &call); }, &call.err);
  } else {
    const std::vector<int32_t> ids = nb::cast<std::vector<int32_t>>(context);
    c.run([&] { return kvz_context_prefill_ids(c.h, ids.data(), ids.size(), progress_cb, &call); }, &call.err);
  }
}

void score(Context& c, std::optional<std::string> method, std::optional<std::string> params,
           std::optional<std::string> question, nb::object progress) {
  Call call;
  call.progress = std::move(progress);
  if (!method || *method == "kvzip") {
    if (params && !params->empty()) {
      c.run([&] {
        return kvz_context_score_method(c.h, "kvzip", params->c_str(), question ? question->c_str() : nullptr,
                                        progress_cb, &call);
      }, &call.err);
    } else if (question) {
      c.run([&] { return kvz_context_score_method(c.h, "kvzip", nullptr, question->c_str(), progress_cb, &call); },
            &call.err);
    } else {
      c.run([&] { return kvz_context_score(c.h, progress_cb, &call); }, &call.err);
    }
    return;
  }
  c.run([&] {
    return kvz_context_score_method(c.h, method->c_str(), params ? params->c_str() : nullptr,
                                    question ? question->c_str() : nullptr, progress_cb, &call);
  }, &call.err);
}

// Composes the parts into c (kvz_context_compose). Every context involved is locked, in
// address order so two compositions over the same contexts cannot deadlock.
void compose(Context& c, const std::vector<Context*>& parts) {
  std::vector<const kvz_context*> hs;
  std::vector<Context*> all{&c};
  for (Context* p : parts) {
    if (!p) throw nb::value_error("compose: a part is None");
    hs.push_back(p->h);
    all.push_back(p);
  }
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  kvz_status st;
  {
    nb::gil_scoped_release r;
    std::vector<std::unique_lock<std::mutex>> locks;
    for (Context* x : all) locks.emplace_back(x->mu);
    st = kvz_context_compose(c.h, hs.data(), hs.size());
  }
  if (st != KVZ_OK) raise_status(st, kvz_context_error(c.h));
}

std::string generate(Context& c, nb::object query, int max_new_tokens, float temperature, int top_k, float top_p,
                     uint64_t seed, bool update_cache, nb::object on_token) {
  kvz_gen_options* o = nullptr;
  if (kvz_gen_options_new(&o) != KVZ_OK) raise_status(KVZ_ERR_NO_MEMORY, kvz_last_error());
  struct Free {
    kvz_gen_options* o;
    ~Free() { kvz_gen_options_free(o); }
  } free_o{o};
  auto set = [](kvz_status st) {
    if (st != KVZ_OK) raise_status(st, kvz_last_error());
  };
  set(kvz_gen_options_set_max_new_tokens(o, max_new_tokens));
  set(kvz_gen_options_set_temperature(o, temperature));
  set(kvz_gen_options_set_top_k(o, top_k));
  set(kvz_gen_options_set_top_p(o, top_p));
  set(kvz_gen_options_set_seed(o, seed));
  set(kvz_gen_options_set_update_cache(o, update_cache));
  Call call;
  call.on_token = std::move(on_token);
  if (nb::isinstance<nb::str>(query)) {
    const std::string q = nb::cast<std::string>(query);
    c.run([&] { return kvz_generate_text(c.h, q.c_str(), o, token_cb, &call); }, &call.err);
  } else {
    const std::vector<int32_t> ids = nb::cast<std::vector<int32_t>>(query);
    c.run([&] { return kvz_generate(c.h, ids.data(), ids.size(), o, token_cb, &call); }, &call.err);
  }
  const char* text = nullptr;
  size_t n = 0;
  c.run([&] { return kvz_context_answer(c.h, &text, &n); });
  return std::string(text, n);
}

nb::dict gen_stats(Context& c) {
  kvz_gen_stats s;
  c.run([&] { return kvz_context_gen_stats(c.h, &s); });
  nb::dict d;
  d["n_prompt"] = s.n_prompt;
  d["n_generated"] = s.n_generated;
  d["prefill_s"] = s.prefill_s;
  d["decode_s"] = s.decode_s;
  d["stopped_at_eog"] = static_cast<bool>(s.stopped_at_eog);
  return d;
}

std::vector<int32_t> answer_ids(Context& c) {
  const int32_t* ids = nullptr;
  size_t n = 0;
  c.run([&] { return kvz_context_answer_ids(c.h, &ids, &n); });
  return std::vector<int32_t>(ids, ids + n);
}

}  // namespace

NB_MODULE(_kvzip, m) {
  m.doc() = "Native half of the kvzip package: a thin layer over the C API (include/kvzip.h). Use the kvzip module.";
  g_error = PyErr_NewExceptionWithDoc("kvzip.KvzipError", "An error reported by the kvzip engine (bad file, "
                                      "another model's context, a call out of order, ...).", PyExc_RuntimeError, nullptr);
  g_cancelled = PyErr_NewExceptionWithDoc("kvzip.Cancelled", "A call stopped by Context.cancel() or a callback.",
                                          g_error, nullptr);
  m.attr("KvzipError") = nb::handle(g_error);
  m.attr("Cancelled") = nb::handle(g_cancelled);
  m.attr("API_VERSION") = KVZ_API_VERSION;
  m.def("version", [] { return std::string(kvz_version()); });
  m.def("methods", &methods, "Every registered compression method: name, description, default level, parameters.");

  nb::class_<Model>(m, "NativeModel")
      .def(nb::init<const std::string&, int>(), "path"_a, "threads"_a = 0)
      .def("info", &model_info)
      .def("tokenize", &tokenize, "text"_a, "parse_special"_a = false)
      .def("detokenize", &detokenize, "ids"_a)
      .def("apply_template", &apply_template, "question"_a)
      .def("score_heads", &score_heads, "text"_a.none(), "path"_a, "progress"_a = nb::none());

  nb::class_<Context>(m, "NativeContext")
      .def(nb::init<nb::object, const std::string&>(), "model"_a, "options"_a = "")
      .def("prefill", &prefill, "context"_a, "progress"_a = nb::none())
      .def("score", &score, "method"_a = nb::none(), "params"_a = nb::none(), "question"_a = nb::none(),
           "progress"_a = nb::none())
      .def("prune",
           [](Context& c, double ratio, std::optional<std::string> level) {
             c.run([&] { return kvz_context_prune(c.h, ratio, level ? level->c_str() : nullptr); });
           },
           "ratio"_a, "level"_a = nb::none())
      .def("prune_threshold",
           [](Context& c, double thr) { c.run([&] { return kvz_context_prune_threshold(c.h, thr); }); }, "threshold"_a)
      .def("prune_heads_file",
           [](Context& c, const std::string& path, double ratio) {
             c.run([&] { return kvz_context_prune_heads_file(c.h, path.c_str(), ratio); });
           },
           "path"_a, "ratio"_a)
      .def("save", [](Context& c, const std::string& path) { c.run([&] { return kvz_context_save(c.h, path.c_str()); }); },
           "path"_a)
      .def("compose", &compose, "parts"_a)
      .def("load", [](Context& c, const std::string& path) { c.run([&] { return kvz_context_load(c.h, path.c_str()); }); },
           "path"_a)
      .def("info", &context_info)
      .def("scores", &context_scores)
      .def("kept", &context_kept)
      .def("ids", &context_ids)
      .def("generate", &generate, "query"_a, "max_new_tokens"_a = 128, "temperature"_a = 0.0f, "top_k"_a = 40,
           "top_p"_a = 0.95f, "seed"_a = 0, "update_cache"_a = false, "on_token"_a = nb::none())
      .def("gen_stats", &gen_stats)
      .def("answer_ids", &answer_ids)
      .def("cancel", [](Context& c) { kvz_context_cancel(c.h); }, "Stops the call running on this context (any thread).");
}
