/* kvzip.h: the C API of kvzip.cpp.
 *
 * Load a model, prefill a long context once, score its KV pairs (KVzip or any registered
 * method), prune the cache to a kept ratio, then answer any number of questions from the
 * smaller cache; save the compressed context to a file and load it in another process.
 *
 *   kvz_model* m;   kvz_model_load("model.gguf", 0, &m);
 *   kvz_context* c; kvz_context_new(m, NULL, &c);
 *   kvz_context_prefill(c, text, strlen(text), NULL, NULL);
 *   kvz_context_score(c, NULL, NULL);                 KVzip scores of every context pair
 *   kvz_context_prune(c, 0.3, "pair");                keep 30% of the context's pairs
 *   kvz_generate_text(c, "Who wrote the letter?", NULL, NULL, NULL);
 *   const char* answer; size_t n; kvz_context_answer(c, &answer, &n);
 *   kvz_context_free(c); kvz_model_free(m);
 *
 * Errors. Every function that can fail returns a kvz_status. On failure the message is kept
 * twice: per handle (kvz_model_error, kvz_context_error; until the next failing call on that
 * handle) and per thread (kvz_last_error; for constructors that could not make a handle and
 * for NULL handles). No C++ exception crosses this API. A broken internal invariant (a bug,
 * not bad input) aborts the process with a message, as the command-line tool does.
 *
 * Threads. A kvz_model is immutable after loading and may be used by any number of threads
 * and contexts at once. A kvz_context is used by one thread at a time; each has its own
 * worker threads, so two contexts of one model run side by side. kvz_context_cancel may be
 * called from any thread.
 *
 * Strings are UTF-8. Pointers returned by the API stay valid as documented at each function.
 */
#ifndef KVZIP_H
#define KVZIP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KVZ_API_VERSION 1

typedef enum kvz_status {
  KVZ_OK = 0,
  KVZ_ERR_ARGUMENT = 1,  /* a NULL handle or pointer, a value out of range, an unknown name */
  KVZ_ERR_STATE = 2,     /* not now: e.g. prune before scoring, generate before prefill */
  KVZ_ERR_ENGINE = 3,    /* the engine refused: unreadable or corrupt file, another model's
                            context, a context longer than the model's limit, ... */
  KVZ_ERR_CANCELLED = 4, /* a callback returned non-zero, or kvz_context_cancel was called */
  KVZ_ERR_NO_MEMORY = 5,
  KVZ_ERR_INTERNAL = 6   /* an unexpected exception inside the library */
} kvz_status;

typedef struct kvz_model kvz_model;
typedef struct kvz_context kvz_context;
typedef struct kvz_gen_options kvz_gen_options;

/* Progress of a long call: done of total units (tokens). Return non-zero to cancel it. */
typedef int (*kvz_progress_fn)(void* user, int64_t done, int64_t total);
/* One generated token: its id and the new text that is now safe to show (complete UTF-8;
 * may be empty while a character is incomplete; the end-of-turn token has no text).
 * Return non-zero to cancel the generation. */
typedef int (*kvz_token_fn)(void* user, int32_t token, const char* piece, size_t piece_len);

const char* kvz_version(void);
const char* kvz_status_name(kvz_status s); /* "KVZ_OK", "KVZ_ERR_ARGUMENT", ... */
/* The message of the last failing call on this thread ("" if none). Valid until the next
 * failing call on this thread. */
const char* kvz_last_error(void);

/* ---- models ------------------------------------------------------------------------- */

/* Loads a GGUF file or a Hugging Face folder (config.json, tokenizer.json, safetensors).
 * n_threads: worker threads of each context made from this model (<= 0: every core). */
kvz_status kvz_model_load(const char* path, int n_threads, kvz_model** out);
void kvz_model_free(kvz_model* m); /* NULL is fine; free its contexts first */
const char* kvz_model_error(const kvz_model* m);

typedef struct kvz_model_info {
  int n_layer, n_head, n_head_kv, d_head, n_embd, n_vocab;
  int64_t n_ctx_train;
  int n_threads;
  uint64_t fingerprint; /* what saved contexts are checked against */
  const char* architecture; /* valid while the model lives */
  const char* name;
} kvz_model_info;
kvz_status kvz_model_get_info(const kvz_model* m, kvz_model_info* out);

/* Buffer convention: up to `cap` items are written to `out` and *n_out receives the full
 * count, so a call with cap 0 asks for the size (out may then be NULL). */
kvz_status kvz_tokenize(const kvz_model* m, const char* text, size_t len, int parse_special, int32_t* out,
                        size_t cap, size_t* n_out);
kvz_status kvz_detokenize(const kvz_model* m, const int32_t* ids, size_t n, char* out, size_t cap, size_t* n_out);
/* The ids a question is fed as after a context (the model's KVzip query template:
 * "\n\n" + question, then the turn's closing and the assistant's opening). */
kvz_status kvz_apply_template(const kvz_model* m, const char* question, int32_t* out, size_t cap, size_t* n_out);

/* Context-independent head scores (the `head` level with saved scores): scores a sample
 * text with KVzip and writes max-over-tokens head scores to `path` (the file format of
 * `kvzip score-heads`). text NULL: the engine's demo document. */
kvz_status kvz_model_score_heads(kvz_model* m, const char* text, const char* path, kvz_progress_fn progress,
                                 void* user);

/* ---- compression methods ------------------------------------------------------------ */

int kvz_method_count(void);
/* Method i in display order; NULL when i is out of range. Strings are static. */
const char* kvz_method_name(int i);
const char* kvz_method_description(int i);
const char* kvz_method_default_level(int i); /* "pair", "pair-uniform", "head", "adakv" */
int kvz_method_param_count(int i);
typedef struct kvz_method_param {
  const char* name;
  const char* help;
  int is_text;       /* 1: a text value (text_default); 0: a number in [min, max] */
  int is_integer;
  double def, min, max;
  const char* text_default;
} kvz_method_param;
kvz_status kvz_method_param_get(int i, int j, kvz_method_param* out);

/* ---- contexts ----------------------------------------------------------------------- */

/* Context options as "key=value" pairs separated by commas, NULL or "" for the defaults:
 *   kv_type=f16|q8_0      storage of the cache rows (default f16)
 *   n_ctx=N               position limit (default: the model's training context)
 *   retain_full=0|1       keep an unpruned copy so prune/score may run again (costs memory)
 *   threads=N             worker threads of this context (default: the model's)
 *   chunk=N               KVzip scoring chunk in tokens (default 2000) */
kvz_status kvz_context_new(kvz_model* m, const char* options, kvz_context** out);
void kvz_context_free(kvz_context* c); /* NULL is fine */
const char* kvz_context_error(const kvz_context* c);
/* Asks the call running on c (prefill, scoring, generation) to stop at its next check
 * (between prefill batches, scoring chunks and tokens); it returns KVZ_ERR_CANCELLED.
 * Thread-safe; a call that starts later is not affected. */
void kvz_context_cancel(kvz_context* c);

/* Prefills the context text (replacing any previous one). A prefill that fails or is
 * cancelled leaves the context empty. */
kvz_status kvz_context_prefill(kvz_context* c, const char* text, size_t len, kvz_progress_fn progress, void* user);
kvz_status kvz_context_prefill_ids(kvz_context* c, const int32_t* ids, size_t n, kvz_progress_fn progress,
                                   void* user);
/* KVzip scores of every context pair (the reconstruction pass). */
kvz_status kvz_context_score(kvz_context* c, kvz_progress_fn progress, void* user);
/* Scores with any registered method. params: "key=value,..." (NULL: defaults); question
 * NULL: query-agnostic, else query-aware (the press sees the question after the context). */
kvz_status kvz_context_score_method(kvz_context* c, const char* method, const char* params, const char* question,
                                    kvz_progress_fn progress, void* user);
/* Evicts all but the best `ratio` of the context's pairs, ratio in (0, 1]. level: "pair"
 * (one global budget, heads keep different counts), "pair-uniform", "head", "adakv";
 * NULL: the scoring method's own default. Evicted memory is freed. Without retain_full a
 * context is pruned once. */
kvz_status kvz_context_prune(kvz_context* c, double ratio, const char* level);
/* Keeps exactly the context pairs whose score is >= threshold (pair level). */
kvz_status kvz_context_prune_threshold(kvz_context* c, double threshold);
/* The head level with context-independent head scores from a file of kvz_model_score_heads
 * or `kvzip score-heads`; needs no scoring pass. */
kvz_status kvz_context_prune_heads_file(kvz_context* c, const char* path, double ratio);

/* Saves the context (its current, possibly pruned cache, ids and scores) in the engine's
 * context file format; load restores one saved for the same model (another model's file,
 * a corrupt file: KVZ_ERR_ENGINE, and the context is unchanged). */
kvz_status kvz_context_save(const kvz_context* c, const char* path);
kvz_status kvz_context_load(kvz_context* c, const char* path);
/* Composes n ready contexts of c's model, prefilled after the same system prompt and holding
 * their document only (no kept turns), into c: [system prompt | parts[0] | parts[1] | ...],
 * each document's rows moved to where it now sits and its keys re-rotated (docs/composition.md).
 * The rows take c's kv_type. The parts are read, not changed; c may be one of them. A part of
 * another model, an empty one, or one made after another system prompt: KVZ_ERR_ARGUMENT /
 * KVZ_ERR_STATE / KVZ_ERR_ENGINE, and c is unchanged. */
kvz_status kvz_context_compose(kvz_context* c, const kvz_context* const* parts, size_t n);

typedef struct kvz_context_info {
  int n_layer, n_head_kv;
  int64_t n_ctx;      /* context tokens (system prompt excluded); 0 when empty */
  int64_t n_sys;      /* system prompt tokens before them */
  int64_t n_pos;      /* next position */
  int has_scores;
  int pruned;
  size_t kv_bytes;    /* bytes of the retained K and V rows */
  double ratio_true;  /* kept / total pairs of the context in the prunable layers, as realised */
} kvz_context_info;
kvz_status kvz_context_get_info(const kvz_context* c, kvz_context_info* out);

/* Scores [n_layer][n_head_kv][n_ctx] float32, higher = keep. The pointer stays valid until
 * the next call that prefills, scores or loads c. KVZ_ERR_STATE without scores. */
kvz_status kvz_context_scores(const kvz_context* c, const float** data, int64_t shape[3]);
/* Kept mask [n_layer][n_head_kv][n_ctx], 1 = the pair is in the cache, from the cache
 * itself (so also after loading a file). cap in bytes; *n_out the full size. Layers with a
 * sliding window (Gemma 3's local layers) show the rows of their current window. */
kvz_status kvz_context_kept(const kvz_context* c, uint8_t* out, size_t cap, size_t* n_out);
/* The context's token ids (system prompt excluded); buffer convention as above. */
kvz_status kvz_context_ids(const kvz_context* c, int32_t* out, size_t cap, size_t* n_out);

/* ---- generation --------------------------------------------------------------------- */

/* Defaults: 128 new tokens, greedy (temperature 0), top_k 40, top_p 0.95 (when sampling),
 * seed 0, update_cache 0 (the context is restored exactly after the answer), stop at the
 * end of the turn. */
kvz_status kvz_gen_options_new(kvz_gen_options** out);
void kvz_gen_options_free(kvz_gen_options* o);
kvz_status kvz_gen_options_set_max_new_tokens(kvz_gen_options* o, int n);
kvz_status kvz_gen_options_set_temperature(kvz_gen_options* o, float t);
kvz_status kvz_gen_options_set_top_k(kvz_gen_options* o, int k);
kvz_status kvz_gen_options_set_top_p(kvz_gen_options* o, float p);
kvz_status kvz_gen_options_set_seed(kvz_gen_options* o, uint64_t seed);
/* 1: keep the turn (query + answer) in the cache, so the next question follows it. */
kvz_status kvz_gen_options_set_update_cache(kvz_gen_options* o, int on);
/* Polled between tokens: when *flag becomes non-zero the generation stops with
 * KVZ_ERR_CANCELLED (NULL: none). The flag is the caller's; it must outlive the call. */
kvz_status kvz_gen_options_set_cancel_flag(kvz_gen_options* o, const volatile int* flag);

/* Feeds `ids` after the context and generates (options NULL: the defaults). on_token may be
 * NULL. A cancelled or failed generation leaves the context as it was, update_cache or
 * not; the text produced so far is still readable with kvz_context_answer. */
kvz_status kvz_generate(kvz_context* c, const int32_t* ids, size_t n, const kvz_gen_options* o, kvz_token_fn on_token,
                        void* user);
/* kvz_apply_template(question) then kvz_generate: what `kvzip ask` does for a question. */
kvz_status kvz_generate_text(kvz_context* c, const char* question, const kvz_gen_options* o, kvz_token_fn on_token,
                             void* user);

typedef struct kvz_gen_stats {
  int64_t n_prompt, n_generated; /* n_generated counts the end-of-turn token when one came */
  double prefill_s, decode_s;    /* wall time of the query's prefill and of the fed-back tokens */
  int stopped_at_eog;
} kvz_gen_stats;
/* The last generation's answer (decoded, without the end-of-turn token) and its ids;
 * valid until the next generation on c. */
kvz_status kvz_context_answer(const kvz_context* c, const char** text, size_t* len);
kvz_status kvz_context_answer_ids(const kvz_context* c, const int32_t** ids, size_t* n);
kvz_status kvz_context_gen_stats(const kvz_context* c, kvz_gen_stats* out);

#ifdef __cplusplus
}
#endif

#endif /* KVZIP_H */
