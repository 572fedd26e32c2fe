"""The bridge's bearer token: one random secret in the data dir, readable by its owner only.

A token file (rather than a password in the settings file) means a first start needs no
configuration yet is never open: `serve` creates it and prints it once, and
`oscar-bridge token` shows it again to whoever can read the data dir.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

TOKEN_FILE = "token"
_TOKEN_BYTES = 32


def token_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / TOKEN_FILE


def load_or_create_token(data_dir: str | os.PathLike[str]) -> tuple[str, bool]:
    """The token and whether it was created now. The file is created atomically with
    mode 0600 (O_EXCL: two processes starting at once end up with the same token), and
    an existing file's permissions are tightened if someone loosened them."""
    path = token_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            text = None
        if text:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
            return text, False
        if text == "":  # an empty or truncated file is useless: replace it
            path.unlink(missing_ok=True)
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue  # another process won the race: read its token
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
        return token, True
    raise RuntimeError(f"cannot create the bridge token file {path}")


def token_command_output(data_dir: str | os.PathLike[str]) -> str:
    """What `oscar-bridge token` prints; its last word is the token (scripts use that)."""
    token, created = load_or_create_token(data_dir)
    note = "created a new bridge token" if created else "bridge token"
    return f"{note} ({token_path(data_dir)}): {token}"
