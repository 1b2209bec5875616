#!/usr/bin/env python3
"""Golden tokenizer + chat-template fixtures for tests/unit/test_tokenizer.cpp and
tests/unit/test_chat_template.cpp.

Reference: Hugging Face `tokenizers` (Rust) built from the GGUF vocabulary with the
pre-tokenizer/model settings of the model's original tokenizer.json, cross-checked against
transformers' own GGUF conversion (AutoTokenizer.from_pretrained(dir, gguf_file=...)).
Chat strings: the GGUF's tokenizer.chat_template rendered by jinja2 with transformers'
settings (trim_blocks, lstrip_blocks).

Run with the reference venv (transformers 4.57.6, tokenizers 0.22.2, gguf 0.17.1,
sentencepiece 0.2.3, jinja2 3.1.6; no torch):
  /root/.cache/kvzip/ref/venv-hf/bin/python tests/golden/gen/gen_tokenizer_fixture.py
Models: scripts/pull-model.sh smollm2-135m (and gemma3-270m), or KVZ_MODELS_DIR.
The corpus is generated deterministically (random.Random(20250101)); no network.
"""

import json
import os
import random
import sys
from pathlib import Path

import gguf
import jinja2
import tokenizers
import transformers
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

ROOT = Path(__file__).resolve().parents[3]
OUT = ROOT / "tests" / "golden" / "data"
MODELS = Path(os.environ.get("KVZ_MODELS_DIR", "/root/.cache/kvzip/models"))
SEED = 20250101


# --------------------------------------------------------------------------- corpus
def corpus():
    s = [
        "", " ", "  ", "\t", "\n", "\r\n", "a", "A", "Hello", "Hello world", " Hello world",
        "Hello, world!", "hello   world", "Hello\tworld", "Hello\n\nworld", "  leading", "trailing  ",
        "   multiple   spaces   inside   ", "\t\ttabs\tand\ttabs", "line1\nline2\r\nline3\rline4",
        "\n\n\n", " \n \n ", "\t \t \n", "x \n\ny", "end with newline\n", "end with spaces   ",
        # contractions and quotes
        "I'm sure they'll say it's fine, don't you think? We've seen it, I'd say.",
        "DON'T SHOUT, IT'S RUDE", "'s 't 're 've 'm 'll 'd", "rock 'n' roll", "o'clock O'Neil",
        "He said \"yes\" and 'no'", "`backticks` and ``double``", "it’s a curly apostrophe",
        # digits
        "0", "7", "42", "123", "1234", "12345", "3.14159", "1,000,000", "2024-01-01",
        "1234567890123456789012345678901234567890", "phone: +1 (555) 123-4567", "v1.2.3-rc4",
        "x1y2z3", "abc123def", " 9 8 7 ", "①②③ ½ ¼ Ⅻ ٣٤٥ ४५६", "0x1F 0b1010 1e-9 -42",
        # accents / European
        "Café naïve résumé façade Ångström", "Ünïcödé ßtraße", "Ελληνικά γράμματα", "Привет, мир!",
        "Українська мова", "Zażółć gęślą jaźń", "Dziękuję", "São Paulo", "ﬁ ligature ﬀ",
        "e\u0301 combining acute", "A\u030a vs \u00c5", "Ǆ ǅ ǆ titlecase",
        # CJK and other scripts
        "你好，世界！", "这是一个测试。", "日本語のテキストとカタカナ", "ひらがな", "한국어 텍스트입니다",
        "中文English混合", "東京タワー 2024年", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया",
        "ภาษาไทย", "Tiếng Việt có dấu", "ქართული", "Հայերեն", "አማርኛ", "ᚠᚢᚦᚨᚱᚲ",
        # emoji
        "😀", "👍🏽", "🇺🇸🇫🇷", "👨‍👩‍👧‍👦", "❤️", "I ❤️ NY 🗽", "emoji😀in😀text", "🙂🙃🙂🙃",
        "☃ ★ ✓ ✗ ∑ ∫ √ ∞ ≠ ≤", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕄𝕒𝕥𝕙", "🀄 🃏 🎴",
        # code
        "def foo(x):\n    return x ** 2\n", "int main() {\n\treturn 0;\n}\n",
        "for (int i = 0; i < n; ++i) { a[i] += b[i]; }", "if x == y and not z: pass",
        "#include <stdio.h>\n", "    indented four\n        indented eight",
        "console.log(`${a} + ${b}`);", "SELECT * FROM users WHERE id = 42;", "<div class=\"x\">hi</div>",
        "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}", "$ ls -la | grep foo > out.txt 2>&1",
        "x=1;y=2;z=x+y", "a->b::c", "λx. x + 1", "/* comment */ // comment", "__init__ self.__dict__",
        "fn main() -> Result<(), Box<dyn Error>> {}", "https://example.com/path?q=1&r=2#frag",
        "user@example.com", "C:\\Windows\\System32", "~/.bashrc", "!!! ??? ... --- (parens) [brackets]",
        "====", "----------", "********", "______", "....", "    ", "\t\t\t\t",
        # whitespace oddities (U+0085 NEL, NBSP, ideographic space, line/paragraph separators)
        "a\u00a0b", "a\u3000b", "a\u2028b\u2029c", "a\u0085b", "a\u200bb zero width",
        "x\u2003y\u2009z", " \u00a0 ", "\u000b\u000c", "tab\tnbsp\u00a0end",
        # special-token text
        "<|im_start|>user\nhi<|im_end|>", "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        "<|endoftext|>", "text<|endoftext|>more", "<|im_start|><|im_end|>", "<|im_start", "im_start|>",
        "<|im_start|x", "<|endoftext|><|endoftext|>", " <|im_end|> ", "<file_sep>path/to/file.py",
        "<repo_name>kvzip<filename>main.cpp", "<gh_stars>100", "<jupyter_code>print(1)<jupyter_output>1",
        "<issue_start>bug<issue_comment>fixed<issue_closed>", "<empty_output>", "<reponame>x",
        "< |im_start| >", "<|IM_START|>",
        # mixed
        "The quick brown fox jumps over the lazy dog.", "Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
        "Mixed: English, Français, Deutsch, 中文, 日本語, 한국어, العربية, русский 🎉",
        "Price: $19.99 (€17.50) ¥2000 £15", "50% off!!! Buy now →→→", "α+β=γ; ∀x∈ℝ: x²≥0",
        "Ω ≈ ç √ ∫ ˜ µ ≤ ≥ ÷", "ＡＢＣ全角", "ｶﾀｶﾅ半角", "a" * 100, "ab" * 60, " " * 50, "\n" * 20,
        "9" * 60, "😀" * 10, "Supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
        "HTTPServerErrorCode", "camelCaseIdentifier snake_case_identifier kebab-case-identifier",
        "ALLCAPS lower MiXeD", "I", "a.b.c.d", "...", "--", "-", "'", "''", "\"", "'s", " 's", "n't",
        "Mr. Smith's 3rd car's wheel", "she'S HE'LL", "café's", "2's 3'd",
    ]
    # Bytes missing from SmolLM2's byte alphabet (0x04, U+40000 -> F1 80 80 80): HF drops them.
    s += ["a\x04b", "ctrl\x01\x02\x03chars", "\U00040000 rare plane"]
    rng = random.Random(SEED)
    pools = [
        "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " \t\n",
        ".,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`", "éèêëàâäôöûüçñåø", "你好世界中文字", "こんにちは",
        "привет", "😀🎉👍🏽❤️", "αβγδ",
    ]
    for _ in range(90):
        n = rng.randint(1, 60)
        chars = []
        for _ in range(n):
            pool = rng.choice(pools)
            chars.append(rng.choice(pool))
        s.append("".join(chars))
    words = ["the", "model", "token", "cache", "press", "KV", "zip", "attention", "  ", "\n", "2024",
             "don't", "it's", "<|im_end|>", "naïve", "東京", "🙂", "x=1", "\t", "...", "Hello"]
    for _ in range(30):
        s.append(" ".join(rng.choice(words) for _ in range(rng.randint(2, 25))))
    out, seen = [], set()
    for x in s:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


# --------------------------------------------------------------------------- helpers
def bytes_to_unicode():
    """GPT-2 byte-level alphabet (openai/gpt-2 encoder.py)."""
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def read_gguf(path):
    r = gguf.GGUFReader(str(path))
    f = {k: v.contents() for k, v in r.fields.items() if k.startswith("tokenizer.")}
    return f


def jinja_render(template, messages, add_generation_prompt, **extra):
    # transformers.utils.chat_template_utils._compile_jinja_template settings.
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)

    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt, **extra)


CONVERSATIONS = [
    [{"role": "user", "content": "Hi!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi, how can I help?"},
     {"role": "user", "content": "Tell me a joke."}],
    [{"role": "system", "content": "  Be nice.\n"}, {"role": "user", "content": "  padded content \n\n"},
     {"role": "assistant", "content": "\tok\t"}, {"role": "user", "content": "multi\nline\n\ncontent"}],
    [{"role": "user", "content": "Ünïcödé 中文 😀 <|im_end|> text"}],
    [{"role": "user", "content": ""}],
    [],
]


def chat_cases(template, bos_token=None):
    cases = []
    for conv in CONVERSATIONS:
        for agp in (False, True):
            try:
                text = jinja_render(template, conv, agp, bos_token=bos_token)
                cases.append({"messages": conv, "add_generation_prompt": agp, "expected": text})
            except jinja2.exceptions.TemplateError as e:
                cases.append({"messages": conv, "add_generation_prompt": agp, "error": str(e)})
    return cases


# Meta-Llama-3-8B-Instruct tokenizer_config.json chat_template (no GGUF of it here).
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def transformers_gguf_tokenizer(path):
    """AutoTokenizer.from_pretrained(dir, gguf_file=name). transformers refuses GGUF without
    torch although reading metadata (return_tensors=False) never touches it; lift that check."""
    import transformers.modeling_gguf_pytorch_utils as mgu

    mgu.is_torch_available = lambda: True
    return transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


# --------------------------------------------------------------------------- SmolLM2
def smollm2_reference(f):
    """SmolLM2's tokenizer.json, rebuilt from the GGUF vocabulary: BPE (unk_token null,
    byte_fallback false, ignore_merges false), no normalizer, pre_tokenizer
    Sequence[Digits(individual_digits=true), ByteLevel(add_prefix_space=false,
    trim_offsets=true, use_regex=true)], the 17 control tokens as special added tokens."""
    tokens = list(f["tokenizer.ggml.tokens"])
    types = list(f["tokenizer.ggml.token_type"])
    merges = [tuple(m.split(" ", 1)) for m in f["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges, unk_token=None,
                               fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t, ty in zip(tokens, types) if ty == 3])
    return tok


def gen_smollm2():
    path = MODELS / "smollm2-135m" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        print(f"skip smollm2: {path} missing (scripts/pull-model.sh smollm2-135m)")
        return
    f = read_gguf(path)
    ref = smollm2_reference(f)
    tokens, types = list(f["tokenizer.ggml.tokens"]), list(f["tokenizer.ggml.token_type"])
    u2b = {c: b for b, c in bytes_to_unicode().items()}

    def token_bytes(text, ty):
        return text.encode("utf-8") if ty == 3 else bytes(u2b[c] for c in text)

    conv = transformers_gguf_tokenizer(path)
    texts = corpus()
    cases, diffs = [], []
    for t in texts:
        ids = ref.encode(t, add_special_tokens=False).ids
        cids = conv(t, add_special_tokens=False)["input_ids"]
        if ids != cids:
            diffs.append({"text": t, "reference": ids, "transformers_gguf": cids})
        case = {"text": t, "ids": ids}
        dec = b"".join(token_bytes(tokens[i], types[i]) for i in ids)
        if dec != t.encode("utf-8"):
            case["decoded_hex"] = dec.hex()  # bytes absent from the vocab were dropped
        cases.append(case)
    fixture = {
        "generator": "tests/golden/gen/gen_tokenizer_fixture.py",
        "versions": {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__,
                     "gguf": "0.17.1", "jinja2": jinja2.__version__},
        "model_file": path.name, "seed": SEED,
        "reference": "tokenizers BPE rebuilt from the GGUF vocab with SmolLM2 tokenizer.json settings "
                     "(Digits(individual_digits) + ByteLevel regex, unk_token null)",
        "transformers_gguf_conversion_mismatches": len(diffs),
        "cases": cases,
    }
    (OUT / "tokenizer_smollm2.json").write_text(json.dumps(fixture, ensure_ascii=False, indent=0) + "\n")
    print(f"smollm2: {len(cases)} strings, {len(diffs)} differ from transformers' GGUF conversion")
    for d in diffs[:8]:
        print("  ", repr(d["text"]), d["reference"], d["transformers_gguf"])


def gen_chat():
    """chat_templates.json: each family's template rendered by jinja2 for CONVERSATIONS,
    with SmolLM2 ids for the rendered strings."""
    fams = {}
    smol = MODELS / "smollm2-135m" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if smol.exists():
        f = read_gguf(smol)
        ref = smollm2_reference(f)
        cases = chat_cases(f["tokenizer.chat_template"])
        for c in cases:
            if "expected" in c:
                c["ids"] = ref.encode(c["expected"], add_special_tokens=False).ids
        fams["smollm2"] = {"template": f["tokenizer.chat_template"], "bos_token": None, "cases": cases}
    qwen = sorted((MODELS / "qwen2.5-coder-0.5b").glob("*.gguf")) if (MODELS / "qwen2.5-coder-0.5b").exists() else []
    if qwen:
        t = read_gguf(qwen[0])["tokenizer.chat_template"]
        fams["qwen25"] = {"template": t, "bos_token": None, "cases": chat_cases(t)}
    fams["llama3"] = {"template": LLAMA3_TEMPLATE, "bos_token": "<|begin_of_text|>",
                      "cases": chat_cases(LLAMA3_TEMPLATE, "<|begin_of_text|>")}
    gemma = gemma3_template() or GEMMA3_TEMPLATE
    fams["gemma3"] = {"template": gemma, "bos_token": "<bos>", "cases": chat_cases(gemma, "<bos>")}
    chat = {"generator": "tests/golden/gen/gen_tokenizer_fixture.py",
            "versions": {"jinja2": jinja2.__version__, "tokenizers": tokenizers.__version__},
            "families": fams}
    (OUT / "chat_templates.json").write_text(json.dumps(chat, ensure_ascii=False, indent=1) + "\n")
    print("chat:", ", ".join(f"{k} ({len(v['cases'])} cases)" for k, v in fams.items()))


def gemma3_path():
    d = MODELS / "gemma3-270m"
    files = sorted(d.glob("*.gguf")) if d.exists() else []
    return files[0] if files else None


# google/gemma-3-*-it tokenizer_config.json chat_template (the GGUF carries none).
GEMMA3_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""


def gemma3_template():
    p = gemma3_path()
    if not p:
        return None
    return read_gguf(p).get("tokenizer.chat_template") or GEMMA3_TEMPLATE


def spm_merges(tokens, scores, types):
    """Merge list for a score-ordered SentencePiece BPE vocab, built the way HF derives a
    tokenizer.json from tokenizer.model (SentencePieceExtractor): every split of a normal
    piece into two pieces, ordered by the piece's score (best first), then ids."""
    index = {t: i for i, t in enumerate(tokens)}
    out = []
    for i, t in enumerate(tokens):
        if types[i] != 1 or len(t) < 2:
            continue
        for k in range(1, len(t)):
            l, r = index.get(t[:k]), index.get(t[k:])
            if l is not None and r is not None and types[l] in (1, 4) and types[r] in (1, 4):
                out.append((-scores[i], i, l, r, t[:k], t[k:]))
    out.sort()
    return [(m[4], m[5]) for m in out]


def gemma3_reference(f):
    """Gemma 3's tokenizer.json shape rebuilt from the GGUF: BPE with byte_fallback and
    unk <unk>, normalizer Replace(' ', '▁'), no pre-tokenizer, control tokens as special
    added tokens and user-defined tokens (whitespace runs, html tags) as non-special added
    tokens matched on the raw text."""
    from tokenizers import normalizers

    tokens = list(f["tokenizer.ggml.tokens"])
    types = list(f["tokenizer.ggml.token_type"])
    scores = list(f["tokenizer.ggml.scores"])
    merges = spm_merges(tokens, scores, types)
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges, unk_token="<unk>",
                               fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t, ty in zip(tokens, types) if ty == 3])
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t, ty in zip(tokens, types) if ty == 4])
    return tok


def gemma3_sentencepiece(f):
    """The same vocabulary as a sentencepiece BPE ModelProto (identity normalization,
    no dummy prefix, whitespace escaped, byte fallback): an independent second opinion."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    m = pb.ModelProto()
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.unk_id = f["tokenizer.ggml.unknown_token_id"]
    m.trainer_spec.bos_id = f["tokenizer.ggml.bos_token_id"]
    m.trainer_spec.eos_id = f["tokenizer.ggml.eos_token_id"]
    m.trainer_spec.pad_id = f["tokenizer.ggml.padding_token_id"]
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = False
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    type_map = {1: pb.ModelProto.SentencePiece.NORMAL, 2: pb.ModelProto.SentencePiece.UNKNOWN,
                3: pb.ModelProto.SentencePiece.CONTROL, 4: pb.ModelProto.SentencePiece.USER_DEFINED,
                5: pb.ModelProto.SentencePiece.UNUSED, 6: pb.ModelProto.SentencePiece.BYTE}
    for t, s, ty in zip(f["tokenizer.ggml.tokens"], f["tokenizer.ggml.scores"], f["tokenizer.ggml.token_type"]):
        p = m.pieces.add()
        p.piece, p.score, p.type = t, s, type_map[int(ty)]
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(m.SerializeToString())
    return sp


def gen_gemma3():
    path = gemma3_path()
    if not path:
        print("skip gemma3: no GGUF in", MODELS / "gemma3-270m")
        return
    f = read_gguf(path)
    tokens, types = list(f["tokenizer.ggml.tokens"]), list(f["tokenizer.ggml.token_type"])
    ref = gemma3_reference(f)
    sp = gemma3_sentencepiece(f)
    conv = transformers_gguf_tokenizer(path)
    byte_tok = {i: int(t[3:5], 16) for i, t in enumerate(tokens) if types[i] == 6}

    def token_bytes(i):
        if i in byte_tok:
            return bytes([byte_tok[i]])
        return tokens[i].replace("▁", " ").encode("utf-8")

    cases, d_conv, d_sp = [], [], []
    specials = [t for t, ty in zip(tokens, types) if ty in (3, 4)]
    for t in corpus() + ["<start_of_turn>user\nhi<end_of_turn>\n", "<bos><unused0>", "<b>bold</b>\n\n  x",
                         "\t\tindent", "[multimodal]<start_of_image>", "<0x41> literal"]:
        ids = ref.encode(t, add_special_tokens=False).ids
        if conv(t, add_special_tokens=False)["input_ids"] != ids:
            d_conv.append(t)
        # sentencepiece sees no added tokens: compare only where none occur in the text.
        if not any(s in t for s in specials) and sp.encode(t) != ids:
            d_sp.append(t)
        case = {"text": t, "ids": ids}
        dec = b"".join(token_bytes(i) for i in ids)
        if dec != t.encode("utf-8"):
            case["decoded_hex"] = dec.hex()
        cases.append(case)
    fixture = {
        "generator": "tests/golden/gen/gen_tokenizer_fixture.py",
        "versions": {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__,
                     "gguf": "0.17.1", "sentencepiece": __import__("sentencepiece").__version__},
        "model_file": path.name, "seed": SEED,
        "reference": "tokenizers BPE (byte_fallback) with merges derived from the GGUF scores, "
                     "Replace(' ', U+2581) normalizer, control/user-defined tokens as added tokens",
        "transformers_gguf_conversion_mismatches": len(d_conv),
        "sentencepiece_mismatches": len(d_sp),
        "cases": cases,
    }
    (OUT / "tokenizer_gemma3.json").write_text(json.dumps(fixture, ensure_ascii=False, indent=0) + "\n")
    print(f"gemma3: {len(cases)} strings, {len(d_conv)} differ from transformers' GGUF conversion, "
          f"{len(d_sp)} from sentencepiece")
    for t in d_conv[:6]:
        print("   conv:", repr(t), ref.encode(t, add_special_tokens=False).ids[:12], conv(t, add_special_tokens=False)["input_ids"][:12])
    for t in d_sp[:6]:
        print("   spm:", repr(t), ref.encode(t, add_special_tokens=False).ids[:12], sp.encode(t)[:12])


# --------------------------------------------------------------------------- Qwen2.5
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def qwen2_reference(f):
    """Qwen2.5's tokenizer.json shape rebuilt from the GGUF: BPE (no unk), NFC normalizer,
    Split(qwen2 regex, Isolated) + ByteLevel(use_regex=false), control tokens as special
    added tokens and user-defined ones (<tool_call>) as non-special; the [PAD...] filler
    tokens the GGUF appends are not tokens of the original."""
    from tokenizers import Regex, normalizers

    tokens = list(f["tokenizer.ggml.tokens"])
    types = list(f["tokenizer.ggml.token_type"])
    merges = [tuple(m.split(" ", 1)) for m in f["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges, unk_token=None,
                               fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t, ty in zip(tokens, types) if ty == 3])
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t, ty in zip(tokens, types) if ty == 4])
    return tok


def gen_qwen25():
    d = MODELS / "qwen2.5-coder-0.5b"
    files = sorted(d.glob("*.gguf")) if d.exists() else []
    if not files:
        print("skip qwen2.5: no GGUF in", d)
        return
    path = files[0]
    f = read_gguf(path)
    tokens, types = list(f["tokenizer.ggml.tokens"]), list(f["tokenizer.ggml.token_type"])
    u2b = {c: b for b, c in bytes_to_unicode().items()}
    ref = qwen2_reference(f)
    conv = transformers_gguf_tokenizer(path)
    texts = corpus() + ["<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>", "<tool_call>{}</tool_call>",
                        "<|repo_name|>kvzip<|file_sep|>main.cpp"]
    cases, d_conv = [], []
    for t in texts:
        ids = ref.encode(t, add_special_tokens=False).ids
        if conv(t, add_special_tokens=False)["input_ids"] != ids:
            d_conv.append(t)
        case = {"text": t, "ids": ids}
        dec = b"".join(tokens[i].encode() if types[i] in (3, 4) else bytes(u2b[c] for c in tokens[i]) for i in ids)
        if dec != t.encode("utf-8"):
            case["decoded_hex"] = dec.hex()  # NFC changed the text
        cases.append(case)
    fixture = {
        "generator": "tests/golden/gen/gen_tokenizer_fixture.py",
        "versions": {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__, "gguf": "0.17.1"},
        "model_file": path.name, "seed": SEED,
        "reference": "tokenizers BPE rebuilt from the GGUF vocab with Qwen2 tokenizer.json settings "
                     "(NFC, Split(qwen2 regex) + ByteLevel, added tokens from token types 3/4)",
        "transformers_gguf_conversion_mismatches": len(d_conv),
        "cases": cases,
    }
    (OUT / "tokenizer_qwen25.json").write_text(json.dumps(fixture, ensure_ascii=False, indent=0) + "\n")
    print(f"qwen2.5: {len(cases)} strings, {len(d_conv)} differ from transformers' GGUF conversion")
    for t in d_conv[:6]:
        print("   conv:", repr(t), ref.encode(t, add_special_tokens=False).ids[:12], conv(t, add_special_tokens=False)["input_ids"][:12])


# --------------------------------------------------------------------------- pre-tokenizers
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def gen_pretokenize():
    """Piece boundaries of each pre-tokenizer (HF pre_tokenize_str, pieces mapped back from
    the byte-level alphabet to raw UTF-8). No model needed."""
    from tokenizers import Regex

    bl = lambda r: pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=r)
    pres = {
        "gpt2": bl(True),
        "smollm": pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), bl(True)]),
        "llama3": pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_REGEX), "isolated"), bl(False)]),
        "qwen2": pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_REGEX), "isolated"), bl(False)]),
    }
    u2b = {c: b for b, c in bytes_to_unicode().items()}
    out = {"generator": "tests/golden/gen/gen_tokenizer_fixture.py", "tokenizers": tokenizers.__version__,
           "texts": corpus(), "pieces": {}}
    for name, pt in pres.items():
        out["pieces"][name] = [[bytes(u2b[c] for c in p).decode("utf-8") for p, _ in pt.pre_tokenize_str(t)]
                               for t in out["texts"]]
    (OUT / "pretokenize.json").write_text(json.dumps(out, ensure_ascii=False, indent=0) + "\n")
    print(f"pretokenize: {len(out['texts'])} texts x {len(pres)} pre-tokenizers")


# --------------------------------------------------------------------------- NFC tables
def gen_nfc_table():
    """Writes src/tokenizer/unicode_nfc_data.cpp (Qwen's NFC normalizer) from Python's
    unicodedata: combining classes, one-level canonical decompositions, and the primary
    composites (pairs that NFC recomposes; composition exclusions are left out)."""
    import unicodedata as ud

    ccc_ranges = []
    for c in range(0x110000):
        k = ud.combining(chr(c))
        if not k:
            continue
        if ccc_ranges and ccc_ranges[-1][1] == c - 1 and ccc_ranges[-1][2] == k:
            ccc_ranges[-1][1] = c
        else:
            ccc_ranges.append([c, c, k])
    decomp, compose = [], []
    for c in range(0x110000):
        d = ud.decomposition(chr(c))
        if not d or d.startswith("<"):
            continue
        parts = [int(x, 16) for x in d.split()]
        decomp.append((c, parts[0], parts[1] if len(parts) > 1 else 0))
        if len(parts) == 2 and ud.normalize("NFC", chr(parts[0]) + chr(parts[1])) == chr(c):
            compose.append((parts[0], parts[1], c))
    compose.sort()
    lines = [
        "// Generated by tests/golden/gen/gen_tokenizer_fixture.py nfc-table from Python "
        f"unicodedata (Unicode {ud.unidata_version}). Do not edit.",
        '#include "tokenizer/unicode_nfc_data.h"', "", "namespace kvz::nfc_data {", "",
        f"const CccRange kCcc[] = {{",
    ]
    def rows(items, per=6):
        return ["    " + " ".join(items[i:i + per]) for i in range(0, len(items), per)]

    lines += rows([f"{{0x{a:X}, 0x{b:X}, {k}}}," for a, b, k in ccc_ranges])
    lines += ["};", f"const size_t kCccCount = {len(ccc_ranges)};", "", "const Decomp kDecomp[] = {"]
    lines += rows([f"{{0x{c:X}, 0x{a:X}, 0x{b:X}}}," for c, a, b in decomp])
    lines += ["};", f"const size_t kDecompCount = {len(decomp)};", "", "const Compose kCompose[] = {"]
    lines += rows([f"{{0x{a:X}, 0x{b:X}, 0x{c:X}}}," for a, b, c in compose])
    lines += ["};", f"const size_t kComposeCount = {len(compose)};", "", "}  // namespace kvz::nfc_data", ""]
    (ROOT / "src" / "tokenizer" / "unicode_nfc_data.cpp").write_text("\n".join(lines))
    print(f"nfc: {len(ccc_ranges)} ccc ranges, {len(decomp)} decompositions, {len(compose)} compositions")


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    which = sys.argv[1:] or ["pretokenize", "chat", "smollm2", "gemma3", "qwen25"]
    if "pretokenize" in which:
        gen_pretokenize()
    if "chat" in which:
        gen_chat()
    if "smollm2" in which:
        gen_smollm2()
    if "gemma3" in which:
        gen_gemma3()
    if "qwen25" in which:
        gen_qwen25()
    if "nfc-table" in which:  # not part of the default run: regenerates a source file
        gen_nfc_table()
