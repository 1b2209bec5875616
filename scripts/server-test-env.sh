#!/usr/bin/env bash
# The Python environment of the server tests (tests/server/) and the browser tests
# (tests/web/): the official `openai` client, pytest and websocket-client (the DevTools
# protocol's transport), pinned, in a venv outside the repository. Prints the venv's python.
#   ~/.cache/kvzip/ref/venv-server   (or $KVZ_REF_DIR/venv-server)
set -euo pipefail
ref=${KVZ_REF_DIR:-$HOME/.cache/kvzip/ref}
venv="$ref/venv-server"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import openai, pytest, websocket" 2>/dev/null; then
  mkdir -p "$ref"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q "openai==3.57.0" "pytest==9.2.0" "websocket-client==1.9.2" >&2
fi
echo "$venv/bin/python"
