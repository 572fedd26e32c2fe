"""`oscar-bridge clusters ...` and the CLI's failure contract, without any server.

The clusters file holds credentials, so these tests check what a user relies on: mode
0600, secrets never printed (table, --json, errors, subprocess output), and that bad
command lines exit 2 while failed operations exit 1, each with one `error:` line.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bridge.cli import main

SECRET = "pa55-w0rd-never-shown"
CLI = str(Path(sys.executable).with_name("oscar-bridge"))


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An isolated clusters file and data dir (never the user's)."""
    cfg = tmp_path / "conf" / "clusters.yaml"
    monkeypatch.setenv("OSCAR_BRIDGE_CLUSTERS", str(cfg))
    monkeypatch.setenv("OSCAR_BRIDGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("OSCAR_BRIDGE_TOKEN", raising=False)
    return cfg


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_add_list_remove_keeps_secrets_private(env, capsys):
    rc, out, err = run(
        capsys,
        "clusters",
        "add",
        "one",
        "https://oscar.example.org/",
        "--user",
        "oscar",
        "--password",
        SECRET,
    )
    assert rc == 0, err
    assert "one" in out and SECRET not in out + err
    rc, out, err = run(
        capsys,
        "clusters",
        "add",
        "two",
        "http://127.0.0.1:9",
        "--oidc-refresh-token",
        "rt-" + SECRET,
        "--token-endpoint",
        "https://idp.example.org/token",
        "--client-id",
        "cli",
        "--insecure",
        "--default",
    )
    assert rc == 0, err

    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    stored = yaml.safe_load(env.read_text())
    assert stored["default"] == "two"
    assert stored["clusters"]["one"]["password"] == SECRET  # kept, for later calls
    assert stored["clusters"]["one"]["endpoint"] == "https://oscar.example.org"
    assert stored["clusters"]["two"]["verify"] is False
    assert stored["clusters"]["two"]["client_id"] == "cli"

    rc, out, err = run(capsys, "clusters", "list")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "ENDPOINT", "AUTH"]
    assert any(line.startswith("one ") and "basic" in line for line in lines)
    assert SECRET not in out + err

    rc, out, _ = run(capsys, "--json", "clusters", "list")
    data = json.loads(out)
    assert [c["id"] for c in data] == ["one", "two"]
    assert data[0]["password"] == "***" and data[1]["refresh_token"] == "***"
    assert [c["default"] for c in data] == [False, True]
    assert SECRET not in out

    rc, out, _ = run(capsys, "clusters", "remove", "two")
    assert rc == 0 and "two" in out
    stored = yaml.safe_load(env.read_text())
    assert list(stored["clusters"]) == ["one"] and stored["default"] == "one"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600


def test_first_cluster_becomes_default_and_replacing_keeps_one_entry(env, capsys):
    assert run(capsys, "clusters", "add", "a", "http://127.0.0.1:9", "--oidc-token", "tok")[0] == 0
    assert run(capsys, "clusters", "add", "b", "http://127.0.0.1:9", "--oidc-token", "tok")[0] == 0
    assert run(capsys, "clusters", "add", "a", "http://127.0.0.2:9", "--oidc-token", "tok2")[0] == 0
    stored = yaml.safe_load(env.read_text())
    assert stored["default"] == "a"
    assert sorted(stored["clusters"]) == ["a", "b"]
    assert stored["clusters"]["a"]["endpoint"] == "http://127.0.0.2:9"


def test_password_from_stdin(env, capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(SECRET + "\n"))
    rc, out, err = run(capsys, "clusters", "add", "p", "http://127.0.0.1:9", "--user", "u", "--password", "-")
    assert rc == 0, err
    assert yaml.safe_load(env.read_text())["clusters"]["p"]["password"] == SECRET
    assert SECRET not in out + err


def test_config_option_overrides_env(env, tmp_path, capsys):
    other = tmp_path / "elsewhere.yaml"
    rc, _, err = run(
        capsys, "--config", str(other), "clusters", "add", "x", "http://127.0.0.1:9", "--oidc-token", "t"
    )
    assert rc == 0, err
    assert other.exists() and not env.exists()
    rc, out, _ = run(capsys, "clusters", "list", "--config", str(other), "--json")
    assert [c["id"] for c in json.loads(out)] == ["x"]


@pytest.mark.parametrize(
    "argv",
    [
        ["clusters", "add", "x", "http://h"],  # no credentials
        ["clusters", "add", "x", "http://h", "--user", "u", "--password", "p", "--oidc-token", "t"],
        ["clusters", "add", "x", "http://h", "--oidc-refresh-token", "r"],  # no token endpoint
        ["clusters", "add", "x", "http://h", "--oidc-token", "t", "--password", "p"],
        ["nonsense"],
        [],
        ["invoke", "svc"],  # neither -i nor -f
        ["invoke", "svc", "-i", "a", "-f", "b"],
        ["invoke", "svc", "-i", "a", "--async", "-o", "out"],
        ["jobs", "delete", "svc"],
        ["jobs", "delete", "svc", "job", "--all"],
        ["local", "--port", "notanumber"],
    ],
)
def test_bad_usage_exits_2(env, capsys, argv):
    rc, out, err = run(capsys, *argv)
    assert rc == 2
    assert "error" in err and "Traceback" not in err
    assert out == ""


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["services", "list"], "no cluster configured"),
        (["services", "list", "-c", "nope"], "unknown cluster 'nope'"),
        (["clusters", "remove", "nope"], "unknown cluster 'nope'"),
        (["clusters", "add", "x", "not-a-url", "--oidc-token", "t"], "endpoint"),
        (["clusters", "add", "bad id!", "http://h", "--oidc-token", "t"], "id"),
        (["apply", "/definitely/missing.yaml"], "cannot read the file"),
    ],
)
def test_failures_exit_1_with_one_error_line(env, capsys, argv, expected):
    rc, out, err = run(capsys, *argv)
    assert rc == 1
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
    assert out == ""


def test_unreadable_clusters_file_is_a_clear_error(env, capsys):
    env.parent.mkdir(parents=True)
    env.write_text("clusters: [not, a, map]\n")
    rc, _, err = run(capsys, "clusters", "list")
    assert rc == 1 and err.startswith("error: clusters file") and len(err.splitlines()) == 1


def test_unreachable_cluster_is_one_line_exit_1(env, capsys):
    from tests.support.ports import free_port

    port = free_port()
    assert (
        run(
            capsys, "clusters", "add", "down", f"http://127.0.0.1:{port}", "--user", "u", "--password", SECRET
        )[0]
        == 0
    )
    rc, out, err = run(capsys, "services", "list")
    assert rc == 1 and out == ""
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert SECRET not in err


def test_console_script_subprocess(env, tmp_path):
    """The installed `oscar-bridge` entry point: same behaviour, real exit codes."""
    environ = {**os.environ, "OSCAR_BRIDGE_CLUSTERS": str(env)}
    add = subprocess.run(
        [CLI, "clusters", "add", "s", "http://127.0.0.1:9", "--user", "u", "--password", "-"],
        input=SECRET + "\n",
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )
    assert add.returncode == 0, add.stderr
    listed = subprocess.run(
        [CLI, "clusters", "list", "--json"], capture_output=True, text=True, env=environ, timeout=60
    )
    assert listed.returncode == 0
    assert json.loads(listed.stdout)[0]["password"] == "***"
    assert SECRET not in listed.stdout + listed.stderr + add.stdout + add.stderr
    bad = subprocess.run([CLI, "services", "get"], capture_output=True, text=True, env=environ, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    missing = subprocess.run(
        [CLI, "invoke", "svc", "-f", str(tmp_path / "nope.bin")],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: ") and "nope.bin" in missing.stderr
    assert len(missing.stderr.splitlines()) == 1


def test_token_command_prints_token_last(tmp_path, capsys):
    rc, out, _ = run(capsys, "token", "--data", str(tmp_path / "d"))
    assert rc == 0
    token = out.split()[-1]
    assert (tmp_path / "d" / "token").read_text().strip() == token
    rc, out2, _ = run(capsys, "token", "--data", str(tmp_path / "d"))
    assert out2.split()[-1] == token
