#!/usr/bin/env bash
# setup.sh — install the Debian/Ubuntu packages needed to build and test kvzip.cpp.
#
# Idempotent: packages already installed (per `dpkg -s`) are skipped, and when
# everything is present apt is not touched at all, so repeat runs take well
# under a second. Runs apt-get as root, or through sudo when not root.
#
# Usage: scripts/setup.sh            install what is missing
#        scripts/setup.sh --check    only report what is missing (exit 1 if any)
#        scripts/setup.sh --fuzz     also clang, libFuzzer and the sanitizer runtimes
#                                    (scripts/fuzz.sh); combines with --check
set -euo pipefail

PROG="setup.sh"
PACKAGES=(
    g++ cmake make pkg-config
    python3 python3-pip python3-venv python3-dev
    python3-matplotlib  # the plots of `kvzip report` (scripts/plot-report.py)
    libgtest-dev libgmock-dev
    nlohmann-json3-dev libfmt-dev libcli11-dev
    libpcre2-dev libzstd-dev libxxhash-dev
    libcpp-httplib-dev
    libhiredis-dev redis-server nginx
    chromium fonts-dejavu-core
    ca-certificates
)
# scripts/fuzz.sh: clang 14 with libFuzzer and the ASan/UBSan runtimes (libclang-rt-14-dev),
# llvm for llvm-symbolizer (symbolized sanitizer reports).
FUZZ_PACKAGES=(clang libclang-rt-14-dev llvm)

log() { printf '%s: %s\n' "$PROG" "$*"; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

CHECK_ONLY=0
for arg in "$@"; do
    case "$arg" in
        --check) CHECK_ONLY=1 ;;
        --fuzz) PACKAGES+=("${FUZZ_PACKAGES[@]}") ;;
        -h|--help) sed -n '2,11{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown option: $arg (see --help)" ;;
    esac
done

command -v dpkg >/dev/null 2>&1 || die "dpkg not found: this script supports Debian/Ubuntu only"

is_installed() {
    local st
    st="$(dpkg -s "$1" 2>/dev/null)" || return 1
    grep -qx 'Status: install ok installed' <<<"$st"
}

MISSING=()
for p in "${PACKAGES[@]}"; do
    is_installed "$p" || MISSING+=("$p")
done

if ((${#MISSING[@]} == 0)); then
    log "all ${#PACKAGES[@]} build dependencies are installed"
    exit 0
fi
log "missing: ${MISSING[*]}"
((CHECK_ONLY)) && exit 1

if [[ "$(id -u)" == 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
    log "not root: using sudo"
else
    die "not root and sudo is not available; run as root: apt-get install -y ${MISSING[*]}"
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-y -q --no-install-recommends -o Dpkg::Use-Pty=0)

# Refresh the package lists once when they are absent or when a package is not
# known to apt yet (fresh containers ship without lists); otherwise install directly.
need_update=0
if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
    need_update=1
else
    for p in "${MISSING[@]}"; do
        if ! apt-cache show "$p" >/dev/null 2>&1; then need_update=1; break; fi
    done
fi
if ((need_update)); then
    log "apt-get update"
    "${SUDO[@]}" apt-get update -q -o Dpkg::Use-Pty=0 >/dev/null || die "apt-get update failed"
fi

APT_LOG="$(mktemp "${TMPDIR:-/tmp}/kvz-setup-apt.XXXXXX")"
log "installing ${#MISSING[@]} package(s): ${MISSING[*]}"
if ! "${SUDO[@]}" apt-get install "${APT_OPTS[@]}" "${MISSING[@]}" >"$APT_LOG" 2>&1; then
    if ((need_update == 0)); then
        # stale lists (404 on a package file): refresh once and retry
        log "install failed; refreshing package lists and retrying"
        "${SUDO[@]}" apt-get update -q -o Dpkg::Use-Pty=0 >/dev/null || die "apt-get update failed"
        "${SUDO[@]}" apt-get install "${APT_OPTS[@]}" "${MISSING[@]}" >"$APT_LOG" 2>&1 \
            || { tail -n 20 "$APT_LOG" >&2; die "apt-get install failed (full log: $APT_LOG)"; }
    else
        tail -n 20 "$APT_LOG" >&2
        die "apt-get install failed (full log: $APT_LOG)"
    fi
fi

STILL=()
for p in "${MISSING[@]}"; do is_installed "$p" || STILL+=("$p"); done
((${#STILL[@]} == 0)) || die "still not installed after apt-get: ${STILL[*]}"
rm -f -- "$APT_LOG"
log "done: all ${#PACKAGES[@]} build dependencies are installed"
