#!/usr/bin/env bash
# Set up (once) and run every check of the suite; .ci/run is exactly this script.
#
#   scripts/test.sh [pytest arguments...]     e.g. scripts/test.sh tests/test_cli_local.py -x
#
# Exits non-zero when the set-up, the linter or any test fails.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_venv local,test
cd "$REPO_ROOT"

# --- extra test dependencies -------------------------------------------------------
# Later issues add their set-up here (idempotent and quick when already done):
#   - mosquitto (MQTT broker for the MQTT adapter tests)
#   - Node-RED + `npm ci` in nodered_nodes/ (JavaScript tests of the Node-RED nodes)
# --- end of extra test dependencies ------------------------------------------------

log "ruff check"
"$VENV/bin/ruff" check .

log "pytest"
"$VENV/bin/python" -m pytest -p no:cacheprovider "$@"

# --- JavaScript tests (Node-RED nodes) go here once nodered_nodes/ exists ----------
