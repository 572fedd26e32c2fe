"""One typed settings object for every long-running part of the suite.

Values come, in increasing priority, from the defaults below, a YAML settings file
and `OSCAR_BRIDGE_<FIELD>` environment variables; command-line flags are applied last
by the CLI through `Settings.with_overrides`. Keeping one object (rather than reading
os.environ all over the code) means a test can build the exact configuration it wants
and the running service can report it without surprises.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from platformdirs import user_data_dir

ENV_PREFIX = "OSCAR_BRIDGE_"


class SettingsError(ValueError):
    """A settings file or variable that cannot be used; the message names the field."""


def default_data_dir() -> Path:
    """The per-user data directory (e.g. ~/.local/share/oscar-bridge)."""
    return Path(user_data_dir("oscar-bridge", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Configuration of `oscar-bridge serve` and `oscar-bridge local`."""

    data_dir: Path = field(default_factory=default_data_dir)
    # Bridge HTTP service.
    host: str = "127.0.0.1"
    port: int = 8780
    max_body_bytes: int = 100 * 1024 * 1024
    threads: int = 16
    log_level: str = "INFO"
    # Embedded local runtime (started by `serve` when no cluster is configured).
    local_host: str = "127.0.0.1"
    local_port: int = 0  # 0 = pick a free port
    local_user: str = "oscar"
    local_password: str = ""  # "" = generate one on first start and keep it in the data dir
    local_s3_port: int = 0
    local_max_concurrency: int = 4
    local_timeout_s: float = 300.0
    # How often background watchers poll upstream job lists and buckets.
    poll_interval_s: float = 0.5

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Settings:
        """Build settings from an optional YAML file and the environment."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        file_path = path or env.get(ENV_PREFIX + "CONFIG")
        if file_path:
            p = Path(file_path)
            try:
                loaded = yaml.safe_load(p.read_text()) or {}
            except OSError as exc:
                raise SettingsError(f"settings file {p}: {exc.strerror}") from exc
            except yaml.YAMLError as exc:
                raise SettingsError(f"settings file {p}: invalid YAML: {exc}") from exc
            if not isinstance(loaded, dict):
                raise SettingsError(f"settings file {p}: must be a mapping of field: value")
            values.update({str(k).replace("-", "_"): v for k, v in loaded.items()})
        for f in fields(cls):
            key = ENV_PREFIX + f.name.upper()
            if key in env:
                values[f.name] = env[key]
        return cls().with_overrides(**values)

    def with_overrides(self, **values: Any) -> Settings:
        """Return a copy with the given fields replaced (None means 'keep'), converting types."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for name, value in values.items():
            if value is None:
                continue
            if name not in known:
                raise SettingsError(f"{name}: unknown setting")
            changes[name] = _convert(name, getattr(self, name), value)
        return dataclasses.replace(self, **changes)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _convert(name: str, current: Any, value: Any) -> Any:
    try:
        if isinstance(current, Path):
            return Path(value).expanduser()
        if isinstance(current, bool):
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if isinstance(current, int):
            return int(value)
        if isinstance(current, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{name}: expected {type(current).__name__}, got {value!r}") from exc
