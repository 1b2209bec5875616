/* The C API from C11 (ctest capi_c): the KVzip workflow on the default model, answers
 * compared with `kvzip ask` on the same inputs, save/load (also read back by the CLI),
 * cancellation, and the error codes and messages of bad calls.
 * argv[1]: the kvzip binary. Exits 77 (skip) without the default model. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvzip.h"

static int n_failed = 0, n_passed = 0;

#define CHECK(cond, ...)                                              \
  do {                                                                \
    if (cond) {                                                       \
      ++n_passed;                                                     \
    } else {                                                          \
      ++n_failed;                                                     \
      fprintf(stderr, "FAILED %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                   \
      fputc('\n', stderr);                                            \
    }                                                                 \
  } while (0)

/* A call that must succeed; on failure the test cannot go on. */
#define MUST(call, err)                                                                            \
  do {                                                                                             \
    kvz_status st_ = (call);                                                                       \
    if (st_ != KVZ_OK) {                                                                           \
      fprintf(stderr, "FATAL %s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #call, kvz_status_name(st_), \
              (err));                                                                              \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

static const char* kContext =
    "This is my basic profile. My name is Kim and I live in Seoul. My major is computer science. "
    "I work at a small robotics company called Tidewater Labs, where I build control software for "
    "warehouse arms. My sister Mina is a doctor in Busan. On weekends I play the cello in a community "
    "orchestra, and my favourite composer is Dvorak. I have a grey cat named Pebble who is seven years "
    "old. Last year I ran the Seoul marathon in four hours and twelve minutes. I am learning Spanish "
    "because I plan to move to Valencia in two years.";
static const char* kQuestion = "What is my name?";
static const char* kQuestion2 = "What is the name of my cat?";
enum { kMaxNew = 64 };

/* The CLI prints answers on one line: newlines become spaces. */
static void one_line(char* s) {
  for (; *s; ++s)
    if (*s == '\n' || *s == '\r') *s = ' ';
}

/* Runs `cmd` and returns the text after `marker` up to the CLI's "   [" tail (or the end of
 * the line) on the first line containing marker; NULL if absent. Caller frees. */
static char* cli_answer(const char* cmd, const char* marker) {
  FILE* p = popen(cmd, "r");
  if (!p) return NULL;
  char* line = NULL;
  size_t cap = 0;
  char* found = NULL;
  while (getline(&line, &cap, p) >= 0) {
    char* at = strstr(line, marker);
    if (!at || found) continue;
    at += strlen(marker);
    size_t n = strcspn(at, "\n");
    at[n] = '\0';
    char* tail = strstr(at, "   [");
    char* last = NULL;
    while (tail) {
      last = tail;
      tail = strstr(tail + 1, "   [");
    }
    if (last && strchr(last, ']')) *last = '\0';
    /* answer_from_saved prints "answer: X   (N ms/token)" */
    char* timing = strstr(at, "   (");
    if (timing && strstr(timing, "ms/token)")) *timing = '\0';
    found = strdup(at);
  }
  free(line);
  int rc = pclose(p);
  if (rc != 0) {
    fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    free(found);
    return NULL;
  }
  return found;
}

typedef struct {
  char text[4096];
  size_t len;
  int n_tokens;
  int cancel_at; /* cancel when this many tokens were seen (0: never) */
} Collect;

static int on_token(void* user, int32_t token, const char* piece, size_t n) {
  Collect* c = (Collect*)user;
  (void)token;
  if (c->len + n < sizeof c->text) {
    memcpy(c->text + c->len, piece, n);
    c->len += n;
    c->text[c->len] = '\0';
  }
  ++c->n_tokens;
  return c->cancel_at > 0 && c->n_tokens >= c->cancel_at;
}

static int cancel_prefill(void* user, int64_t done, int64_t total) {
  (void)user;
  (void)total;
  return done > 0;
}

static char* answer_copy(const kvz_context* c) {
  const char* a;
  size_t n;
  MUST(kvz_context_answer(c, &a, &n), kvz_context_error(c));
  char* s = malloc(n + 1);
  memcpy(s, a, n);
  s[n] = '\0';
  return s;
}

static uint8_t* kept_copy(const kvz_context* c, size_t* n) {
  MUST(kvz_context_kept(c, NULL, 0, n), kvz_context_error(c));
  uint8_t* k = malloc(*n ? *n : 1);
  size_t n2;
  MUST(kvz_context_kept(c, k, *n, &n2), kvz_context_error(c));
  return k;
}

static void test_errors_without_model(void) {
  kvz_model* m = (kvz_model*)1;
  kvz_status st = kvz_model_load("/nonexistent/model.gguf", 2, &m);
  CHECK(st == KVZ_ERR_ENGINE, "bad path gave %s", kvz_status_name(st));
  CHECK(m == NULL, "out must be NULL after a failed load");
  CHECK(strstr(kvz_last_error(), "/nonexistent/model.gguf") != NULL, "message names the path: '%s'", kvz_last_error());
  st = kvz_model_load(NULL, 2, &m);
  CHECK(st == KVZ_ERR_ARGUMENT && strstr(kvz_last_error(), "path") != NULL, "NULL path: %s '%s'", kvz_status_name(st),
        kvz_last_error());
  st = kvz_model_load("x", 2, NULL);
  CHECK(st == KVZ_ERR_ARGUMENT, "NULL out: %s", kvz_status_name(st));
  kvz_context* c = (kvz_context*)1;
  st = kvz_context_new(NULL, NULL, &c);
  CHECK(st == KVZ_ERR_ARGUMENT && strstr(kvz_last_error(), "model is NULL") != NULL, "NULL model: %s '%s'",
        kvz_status_name(st), kvz_last_error());
  st = kvz_context_prune(NULL, 0.3, "pair");
  CHECK(st == KVZ_ERR_ARGUMENT && strstr(kvz_last_error(), "context is NULL") != NULL, "NULL context: '%s'",
        kvz_last_error());
  st = kvz_generate_text(NULL, "q", NULL, NULL, NULL);
  CHECK(st == KVZ_ERR_ARGUMENT, "NULL context in generate: %s", kvz_status_name(st));
  CHECK(strcmp(kvz_context_error(NULL), "context is NULL") == 0, "kvz_context_error(NULL)");
  kvz_model_free(NULL);
  kvz_context_free(NULL);
  kvz_gen_options_free(NULL);
  kvz_gen_options* o;
  MUST(kvz_gen_options_new(&o), kvz_last_error());
  CHECK(kvz_gen_options_set_temperature(o, -1.0f) == KVZ_ERR_ARGUMENT, "negative temperature");
  CHECK(kvz_gen_options_set_max_new_tokens(o, 0) == KVZ_ERR_ARGUMENT, "max_new_tokens 0");
  CHECK(kvz_gen_options_set_top_p(o, 0.0f) == KVZ_ERR_ARGUMENT && strstr(kvz_last_error(), "top_p"), "top_p 0: '%s'",
        kvz_last_error());
  kvz_gen_options_free(o);
  CHECK(strcmp(kvz_status_name(KVZ_ERR_CANCELLED), "KVZ_ERR_CANCELLED") == 0, "status names");
}

static void test_methods(void) {
  const int n = kvz_method_count();
  CHECK(n >= 5, "only %d methods", n);
  int have_kvzip = 0, have_snapkv = 0;
  for (int i = 0; i < n; ++i) {
    have_kvzip |= strcmp(kvz_method_name(i), "kvzip") == 0;
    if (strcmp(kvz_method_name(i), "snapkv") == 0) {
      have_snapkv = 1;
      CHECK(kvz_method_param_count(i) >= 1, "snapkv has parameters");
      kvz_method_param p;
      MUST(kvz_method_param_get(i, 0, &p), kvz_last_error());
      CHECK(p.name && *p.name && p.min <= p.def && p.def <= p.max, "snapkv param 0: %s", p.name);
      CHECK(kvz_method_param_get(i, 99, &p) == KVZ_ERR_ARGUMENT, "param index out of range");
    }
  }
  CHECK(have_kvzip && have_snapkv, "kvzip and snapkv are listed");
  CHECK(kvz_method_name(n) == NULL && kvz_method_name(-1) == NULL, "out-of-range method index is NULL");
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_capi KVZIP_CLI\n");
    return 2;
  }
  const char* cli = argv[1];
  char model_path[4096];
  const char* env_model = getenv("KVZ_TEST_MODEL");
  const char* home = getenv("HOME");
  if (env_model)
    snprintf(model_path, sizeof model_path, "%s", env_model);
  else
    snprintf(model_path, sizeof model_path, "%s/.cache/kvzip/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf",
             home ? home : ".");

  test_errors_without_model();
  test_methods();
  if (access(model_path, R_OK) != 0) {
    printf("no model at %s (scripts/pull-model.sh smollm2-135m): skipping the model tests\n", model_path);
    return n_failed ? 1 : 77;
  }

  char dir[] = "/tmp/kvz-capi-XXXXXX";
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  char ctx_file[4200], save_file[4200], bad_file[4200], cmd[16384];
  snprintf(ctx_file, sizeof ctx_file, "%s/context.txt", dir);
  snprintf(save_file, sizeof save_file, "%s/ctx.kvz", dir);
  snprintf(bad_file, sizeof bad_file, "%s/bad.kvz", dir);
  FILE* f = fopen(ctx_file, "wb");
  fputs(kContext, f);
  fclose(f);
  f = fopen(bad_file, "wb");
  fputs("KVZCTX1\0 this is not a context file", f);
  fclose(f);

  kvz_model* m;
  MUST(kvz_model_load(model_path, 2, &m), kvz_last_error());
  kvz_model_info mi;
  MUST(kvz_model_get_info(m, &mi), kvz_model_error(m));
  CHECK(mi.n_layer > 0 && mi.n_head_kv > 0 && mi.n_vocab > 0 && strcmp(mi.architecture, "llama") == 0, "model info");

  /* Tokenizer round trip and the query template. */
  size_t n_ids;
  MUST(kvz_tokenize(m, "Hello world", 11, 0, NULL, 0, &n_ids), kvz_model_error(m));
  int32_t ids[64];
  MUST(kvz_tokenize(m, "Hello world", 11, 0, ids, 64, &n_ids), kvz_model_error(m));
  char text[256];
  size_t n_text;
  MUST(kvz_detokenize(m, ids, n_ids, text, sizeof text - 1, &n_text), kvz_model_error(m));
  text[n_text] = '\0';
  CHECK(strcmp(text, "Hello world") == 0, "detokenize(tokenize(x)) = '%s'", text);
  int32_t bad_id = mi.n_vocab;
  CHECK(kvz_detokenize(m, &bad_id, 1, text, sizeof text, &n_text) == KVZ_ERR_ARGUMENT, "id outside the vocabulary");
  size_t n_q;
  MUST(kvz_apply_template(m, kQuestion, NULL, 0, &n_q), kvz_model_error(m));
  CHECK(n_q > 4, "template ids: %zu", n_q);

  /* Context options and state errors. */
  kvz_context* c;
  CHECK(kvz_context_new(m, "kv_type=f32", &c) == KVZ_ERR_ARGUMENT && strstr(kvz_last_error(), "kv_type"),
        "bad kv_type: '%s'", kvz_last_error());
  CHECK(kvz_context_new(m, "colour=blue", &c) == KVZ_ERR_ARGUMENT && strstr(kvz_last_error(), "colour"),
        "unknown option: '%s'", kvz_last_error());
  MUST(kvz_context_new(m, NULL, &c), kvz_last_error());
  kvz_status st = kvz_generate_text(c, kQuestion, NULL, NULL, NULL);
  CHECK(st == KVZ_ERR_STATE && strstr(kvz_context_error(c), "prefill") != NULL, "generate before prefill: %s '%s'",
        kvz_status_name(st), kvz_context_error(c));
  st = kvz_context_prefill(c, kContext, strlen(kContext), cancel_prefill, NULL);
  /* The context is shorter than one prefill batch: the callback first runs after it. */
  CHECK(st == KVZ_ERR_CANCELLED, "prefill cancelled by its progress callback: %s", kvz_status_name(st));
  CHECK(kvz_generate_text(c, kQuestion, NULL, NULL, NULL) == KVZ_ERR_STATE, "a cancelled prefill leaves it empty");

  MUST(kvz_context_prefill(c, kContext, strlen(kContext), NULL, NULL), kvz_context_error(c));
  kvz_context_info full;
  MUST(kvz_context_get_info(c, &full), kvz_context_error(c));
  CHECK(full.n_ctx > 100 && full.ratio_true == 1.0 && !full.pruned && !full.has_scores, "prefilled: n_ctx %lld",
        (long long)full.n_ctx);
  st = kvz_context_prune(c, 0.3, "pair");
  CHECK(st == KVZ_ERR_STATE && strstr(kvz_context_error(c), "score") != NULL, "prune before score: '%s'",
        kvz_context_error(c));
  MUST(kvz_context_score(c, NULL, NULL), kvz_context_error(c));
  const double bad_ratios[] = {0.0, -0.1, 1.5, NAN};
  for (int i = 0; i < 4; ++i) {
    st = kvz_context_prune(c, bad_ratios[i], "pair");
    CHECK(st == KVZ_ERR_ARGUMENT && strstr(kvz_context_error(c), "ratio") != NULL, "ratio %g: %s '%s'", bad_ratios[i],
          kvz_status_name(st), kvz_context_error(c));
  }
  st = kvz_context_prune(c, 0.3, "diagonal");
  CHECK(st == KVZ_ERR_ARGUMENT && strstr(kvz_context_error(c), "diagonal") != NULL, "bad level: '%s'",
        kvz_context_error(c));
  st = kvz_context_score_method(c, "no-such-method", NULL, NULL, NULL, NULL);
  CHECK(st == KVZ_ERR_ARGUMENT && strstr(kvz_context_error(c), "no-such-method") != NULL, "bad method: '%s'",
        kvz_context_error(c));

  /* Scores and the compressed cache. */
  const float* scores;
  int64_t shape[3];
  MUST(kvz_context_scores(c, &scores, shape), kvz_context_error(c));
  CHECK(shape[0] == mi.n_layer && shape[1] == mi.n_head_kv && shape[2] == full.n_ctx, "scores shape");
  int finite = 1;
  for (int64_t i = 0; i < shape[0] * shape[1] * shape[2]; ++i) finite &= isfinite(scores[i]) != 0;
  CHECK(finite, "scores are finite");
  MUST(kvz_context_prune(c, 0.3, "pair"), kvz_context_error(c));
  kvz_context_info pr;
  MUST(kvz_context_get_info(c, &pr), kvz_context_error(c));
  CHECK(pr.pruned && fabs(pr.ratio_true - 0.3) < 0.01, "ratio_true %.4f", pr.ratio_true);
  CHECK(pr.kv_bytes < full.kv_bytes / 2, "kv bytes %zu -> %zu", full.kv_bytes, pr.kv_bytes);
  size_t n_kept;
  uint8_t* kept = kept_copy(c, &n_kept);
  CHECK(n_kept == (size_t)(shape[0] * shape[1] * shape[2]), "kept mask size %zu", n_kept);
  size_t ones = 0;
  for (size_t i = 0; i < n_kept; ++i) ones += kept[i];
  CHECK(fabs((double)ones / (double)n_kept - pr.ratio_true) < 1e-9, "mask agrees with ratio_true");
  /* The kept pairs are the best-scored ones (pair level: one global top-k). */
  float min_kept = INFINITY, max_dropped = -INFINITY;
  for (size_t i = 0; i < n_kept; ++i) {
    if (kept[i] && scores[i] < min_kept) min_kept = scores[i];
    if (!kept[i] && scores[i] > max_dropped) max_dropped = scores[i];
  }
  CHECK(min_kept >= max_dropped, "kept scores >= evicted scores (%g vs %g)", min_kept, max_dropped);
  CHECK(kvz_context_prune(c, 0.5, "pair") != KVZ_OK, "a context without retain_full prunes once");

  /* The answer, streamed, against `kvzip ask` on the same inputs. */
  kvz_gen_options* o;
  MUST(kvz_gen_options_new(&o), kvz_last_error());
  MUST(kvz_gen_options_set_max_new_tokens(o, kMaxNew), kvz_last_error());
  Collect col = {0};
  MUST(kvz_generate_text(c, kQuestion, o, on_token, &col), kvz_context_error(c));
  char* answer = answer_copy(c);
  CHECK(strlen(answer) > 0 && strcmp(col.text, answer) == 0, "streamed pieces '%s' vs answer '%s'", col.text, answer);
  kvz_gen_stats gs;
  MUST(kvz_context_gen_stats(c, &gs), kvz_context_error(c));
  CHECK(gs.n_generated == col.n_tokens && gs.n_prompt == (int64_t)n_q, "stats: %lld tokens", (long long)gs.n_generated);
  kvz_context_info after;
  MUST(kvz_context_get_info(c, &after), kvz_context_error(c));
  CHECK(after.n_pos == pr.n_pos && after.kv_bytes == pr.kv_bytes, "update_cache=0 restores the context");
  /* The same ids through kvz_generate give the same answer. */
  int32_t* qids = malloc(n_q * sizeof *qids);
  MUST(kvz_apply_template(m, kQuestion, qids, n_q, &n_q), kvz_model_error(m));
  MUST(kvz_generate(c, qids, n_q, o, NULL, NULL), kvz_context_error(c));
  char* answer_ids_path = answer_copy(c);
  CHECK(strcmp(answer_ids_path, answer) == 0, "kvz_generate(template ids) == kvz_generate_text");

  snprintf(cmd, sizeof cmd, "'%s' ask -m '%s' --context '%s' -q '%s' --ratio 0.3 --level pair -n %d -t 2 2>/dev/null",
           cli, model_path, ctx_file, kQuestion, kMaxNew);
  char* cli_text = cli_answer(cmd, "compressed (30%): ");
  char* mine = strdup(answer);
  one_line(mine);
  CHECK(cli_text && strcmp(cli_text, mine) == 0, "C API '%s' vs kvzip ask '%s'", mine, cli_text ? cli_text : "(none)");
  printf("answer (30%% kept): %s\n", mine);

  /* Cancellation: by the callback and by the flag; the context is unchanged either way. */
  Collect stop3 = {0};
  stop3.cancel_at = 3;
  MUST(kvz_gen_options_set_update_cache(o, 1), kvz_last_error());
  st = kvz_generate_text(c, kQuestion2, o, on_token, &stop3);
  CHECK(st == KVZ_ERR_CANCELLED && stop3.n_tokens == 3, "callback cancel: %s after %d tokens", kvz_status_name(st),
        stop3.n_tokens);
  MUST(kvz_context_get_info(c, &after), kvz_context_error(c));
  CHECK(after.n_pos == pr.n_pos, "a cancelled update_cache=1 generation leaves the context as it was");
  volatile int flag = 1;
  MUST(kvz_gen_options_set_cancel_flag(o, &flag), kvz_last_error());
  st = kvz_generate_text(c, kQuestion2, o, NULL, NULL);
  CHECK(st == KVZ_ERR_CANCELLED, "cancel flag: %s", kvz_status_name(st));
  MUST(kvz_gen_options_set_cancel_flag(o, NULL), kvz_last_error());
  MUST(kvz_gen_options_set_update_cache(o, 0), kvz_last_error());
  MUST(kvz_generate_text(c, kQuestion, o, NULL, NULL), kvz_context_error(c));
  char* again = answer_copy(c);
  CHECK(strcmp(again, answer) == 0, "the same answer after cancellations: '%s'", again);

  /* Save, load into a new context, and the CLI reads the same file. */
  MUST(kvz_context_save(c, save_file), kvz_context_error(c));
  kvz_context* c2;
  MUST(kvz_context_new(m, NULL, &c2), kvz_last_error());
  st = kvz_context_load(c2, "/nonexistent/ctx.kvz");
  CHECK(st == KVZ_ERR_ENGINE && strstr(kvz_context_error(c2), "/nonexistent/ctx.kvz"), "load bad path: '%s'",
        kvz_context_error(c2));
  st = kvz_context_load(c2, bad_file);
  CHECK(st == KVZ_ERR_ENGINE && strlen(kvz_context_error(c2)) > 0, "load a corrupt file: %s '%s'", kvz_status_name(st),
        kvz_context_error(c2));
  MUST(kvz_context_load(c2, save_file), kvz_context_error(c2));
  kvz_context_info li;
  MUST(kvz_context_get_info(c2, &li), kvz_context_error(c2));
  CHECK(li.n_ctx == pr.n_ctx && li.kv_bytes == pr.kv_bytes && li.pruned && li.has_scores &&
            fabs(li.ratio_true - pr.ratio_true) < 1e-12,
        "loaded info: n_ctx %lld kv %zu", (long long)li.n_ctx, li.kv_bytes);
  size_t n_kept2;
  uint8_t* kept2 = kept_copy(c2, &n_kept2);
  CHECK(n_kept2 == n_kept && memcmp(kept, kept2, n_kept) == 0, "loaded kept mask is the saved one");
  MUST(kvz_generate_text(c2, kQuestion, o, NULL, NULL), kvz_context_error(c2));
  char* loaded_answer = answer_copy(c2);
  CHECK(strcmp(loaded_answer, answer) == 0, "loaded answer '%s' vs '%s'", loaded_answer, answer);
  st = kvz_context_load(c2, bad_file);
  MUST(kvz_context_get_info(c2, &li), kvz_context_error(c2));
  CHECK(st == KVZ_ERR_ENGINE && li.n_ctx == pr.n_ctx && li.kv_bytes == pr.kv_bytes, "a failed load changes nothing");
  snprintf(cmd, sizeof cmd, "'%s' ask -m '%s' --load '%s' -q '%s' -n %d -t 2 2>/dev/null", cli, model_path, save_file,
           kQuestion, kMaxNew);
  char* cli_loaded = cli_answer(cmd, "  answer: ");
  CHECK(cli_loaded && strcmp(cli_loaded, mine) == 0, "kvzip ask --load of the C API's file: '%s'",
        cli_loaded ? cli_loaded : "(none)");

  /* update_cache=1 keeps the turn. */
  MUST(kvz_gen_options_set_update_cache(o, 1), kvz_last_error());
  MUST(kvz_gen_options_set_max_new_tokens(o, 8), kvz_last_error());
  MUST(kvz_generate_text(c2, kQuestion2, o, NULL, NULL), kvz_context_error(c2));
  kvz_context_info grown;
  MUST(kvz_context_get_info(c2, &grown), kvz_context_error(c2));
  CHECK(grown.n_pos > li.n_pos && grown.kv_bytes > li.kv_bytes && grown.n_ctx == li.n_ctx,
        "update_cache=1 grows the cache: n_pos %lld -> %lld", (long long)li.n_pos, (long long)grown.n_pos);

  /* Another method, and the threshold. */
  kvz_context* c3;
  MUST(kvz_context_new(m, "retain_full=1", &c3), kvz_last_error());
  MUST(kvz_context_prefill(c3, kContext, strlen(kContext), NULL, NULL), kvz_context_error(c3));
  MUST(kvz_context_score_method(c3, "snapkv", "window=16", NULL, NULL, NULL), kvz_context_error(c3));
  MUST(kvz_context_prune(c3, 0.3, NULL), kvz_context_error(c3));
  kvz_context_info si;
  MUST(kvz_context_get_info(c3, &si), kvz_context_error(c3));
  CHECK(si.pruned && fabs(si.ratio_true - 0.3) < 0.02, "snapkv ratio_true %.3f", si.ratio_true);
  CHECK(kvz_context_score_method(c3, "snapkv", "window=-3", NULL, NULL, NULL) == KVZ_ERR_ARGUMENT &&
            strstr(kvz_context_error(c3), "window"),
        "bad method parameter: '%s'", kvz_context_error(c3));
  MUST(kvz_context_score(c3, NULL, NULL), kvz_context_error(c3)); /* retain_full: scores the full cache again */
  MUST(kvz_context_scores(c3, &scores, shape), kvz_context_error(c3));
  const float thr = scores[shape[2] / 2];
  size_t above = 0;
  for (int64_t i = 0; i < shape[0] * shape[1] * shape[2]; ++i) above += scores[i] >= thr;
  MUST(kvz_context_prune_threshold(c3, thr), kvz_context_error(c3));
  uint8_t* kept3 = kept_copy(c3, &n_kept);
  size_t agree = 0;
  for (size_t i = 0; i < n_kept; ++i) agree += kept3[i] == (scores[i] >= thr);
  CHECK(agree == n_kept && above > 0, "threshold keeps exactly the scores >= %g (%zu of %zu agree)", thr, agree, n_kept);
  /* Composition: c alone answers as c; c then c3 holds both documents; a context with kept
   * turns (c2) and a NULL part are refused, and the target is left as it was. */
  kvz_gen_options* o1;
  MUST(kvz_gen_options_new(&o1), kvz_last_error());
  MUST(kvz_gen_options_set_max_new_tokens(o1, kMaxNew), kvz_last_error());
  kvz_context* cc;
  MUST(kvz_context_new(m, NULL, &cc), kvz_last_error());
  const kvz_context* alone[] = {c};
  MUST(kvz_context_compose(cc, alone, 1), kvz_context_error(cc));
  MUST(kvz_generate_text(cc, kQuestion, o1, NULL, NULL), kvz_context_error(cc));
  char* composed_answer = answer_copy(cc);
  CHECK(strcmp(composed_answer, answer) == 0, "one context composed alone answers as itself: '%s'", composed_answer);
  const kvz_context* both[] = {c, c3};
  MUST(kvz_context_compose(cc, both, 2), kvz_context_error(cc));
  kvz_context_info ci;
  MUST(kvz_context_get_info(cc, &ci), kvz_context_error(cc));
  CHECK(ci.n_ctx == pr.n_ctx + si.n_ctx && ci.n_pos == pr.n_pos + si.n_ctx && ci.pruned,
        "composed: n_ctx %lld, n_pos %lld", (long long)ci.n_ctx, (long long)ci.n_pos);
  MUST(kvz_generate_text(cc, kQuestion, o1, NULL, NULL), kvz_context_error(cc));
  const kvz_context* with_turns[] = {c, c2};
  st = kvz_context_compose(cc, with_turns, 2);
  CHECK(st == KVZ_ERR_ENGINE && strstr(kvz_context_error(cc), "parts[1]") && strstr(kvz_context_error(cc), "conversation"),
        "a context with kept turns: %s '%s'", kvz_status_name(st), kvz_context_error(cc));
  const kvz_context* with_null[] = {c, NULL};
  CHECK(kvz_context_compose(cc, with_null, 2) == KVZ_ERR_ARGUMENT && strstr(kvz_context_error(cc), "parts[1]"),
        "a NULL part: '%s'", kvz_context_error(cc));
  CHECK(kvz_context_compose(cc, both, 0) == KVZ_ERR_ARGUMENT, "no parts");
  kvz_context_info ci2;
  MUST(kvz_context_get_info(cc, &ci2), kvz_context_error(cc));
  CHECK(ci2.n_ctx == ci.n_ctx && ci2.kv_bytes == ci.kv_bytes, "a refused composition changes nothing");
  free(composed_answer);
  kvz_context_free(cc);
  kvz_gen_options_free(o1);

  MUST(kvz_generate_text(c3, kQuestion, o, NULL, NULL), kvz_context_error(c3));

  free(kept);
  free(kept2);
  free(kept3);
  free(qids);
  free(answer);
  free(answer_ids_path);
  free(again);
  free(mine);
  free(cli_text);
  free(cli_loaded);
  free(loaded_answer);
  kvz_gen_options_free(o);
  kvz_context_free(c);
  kvz_context_free(c2);
  kvz_context_free(c3);
  kvz_model_free(m);
  unlink(ctx_file);
  unlink(save_file);
  unlink(bad_file);
  rmdir(dir);
  printf("%d passed, %d failed\n", n_passed, n_failed);
  return n_failed ? 1 : 0;
}
