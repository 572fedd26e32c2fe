# Shared by scripts/serve.sh and scripts/test.sh (sourced, not run).
#
# ensure_venv EXTRAS: make sure .venv exists and holds `pip install -e ".[EXTRAS]"`.
# The install is skipped when pyproject.toml has not changed since the last one for the
# same extras (a stamp file in .venv records its hash), so a second run starts at once.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
PYTHON="${PYTHON:-python3}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

check_python() {
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: install Python >= 3.11"
    "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
        || die "Python >= 3.11 is required ($("$PYTHON" --version 2>&1) found)"
}

# Debian/Ubuntu ship venv's pip bootstrap as a separate package (python3-venv).
install_venv_support() {
    local pkg
    pkg="python3-venv"
    command -v apt-get >/dev/null 2>&1 || return 1
    if [ "$(id -u)" = 0 ]; then
        log "installing $pkg (needed by python3 -m venv)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null \
            || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null; }
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        log "installing $pkg with sudo (needed by python3 -m venv)"
        sudo -n apt-get update -q >/dev/null
        sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null
    else
        return 1
    fi
}

ensure_venv() {
    local extras="$1" stamp hash
    check_python
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        log "creating $VENV"
        rm -rf "$VENV"
        if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
            rm -rf "$VENV"
            install_venv_support || die "python3 -m venv failed: install the python3-venv package"
            "$PYTHON" -m venv "$VENV"
        fi
    fi
    stamp="$VENV/.oscar-bridge-installed-${extras//,/-}"
    hash="$(cd "$REPO_ROOT" && "$VENV/bin/python" -c \
        'import hashlib,sys; print(hashlib.sha256(open("pyproject.toml","rb").read()).hexdigest())')"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ] && [ -x "$VENV/bin/oscar-bridge" ]; then
        return 0
    fi
    log "installing oscar-bridge[$extras] into $VENV (first run: a few minutes)"
    (cd "$REPO_ROOT" && "$VENV/bin/python" -m pip install --disable-pip-version-check -q -e ".[$extras]")
    printf '%s\n' "$hash" > "$stamp"
}
