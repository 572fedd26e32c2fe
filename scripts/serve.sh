#!/usr/bin/env bash
# The suite's main job: set up (once) and run the bridge service on the embedded default.
#
#   scripts/serve.sh [--host H] [--port N] [--data DIR] [--config FILE]
#
# Creates .venv if missing, installs oscar-bridge with the local runtime's S3 server
# (skipped when pyproject.toml is unchanged), then replaces itself with
# `oscar-bridge serve "$@"`, which starts the local OSCAR-compatible runtime when no
# cluster is registered and prints the bridge URL and token.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_venv local
cd "$REPO_ROOT"
exec "$VENV/bin/oscar-bridge" serve "$@"
