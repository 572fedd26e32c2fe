"""`oscar-bridge --bridge URL ...`: the same commands through a running bridge's HTTP API.

The bridge (tests.support.bridge) runs its embedded local runtime as cluster `local`;
the CLI here has no clusters file at all, only the bridge's URL and token.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import main
from tests.support.local_runtime import unique_name
from tests.support.ports import wait_until

REPO = Path(__file__).resolve().parents[1]
UPPERCASE_FDL = REPO / "flows" / "services" / "uppercase" / "uppercase.yaml"
CLI = str(Path(sys.executable).with_name("oscar-bridge"))
ECHO_SCRIPT = 'cp "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/out.bin"\n'
MULTI_SCRIPT = 'printf one > "$TMP_OUTPUT_DIR/a.txt"\nprintf two > "$TMP_OUTPUT_DIR/b.txt"\n'
LOG_SCRIPT = 'echo "job saw: $(cat "$INPUT_FILE_PATH")"\n'


@pytest.fixture
def server(request):
    return request.getfixturevalue("bridge_server")


@pytest.fixture
def cli(server, tmp_path, monkeypatch, capsys):
    """main() with --bridge; the token comes from $OSCAR_BRIDGE_TOKEN."""
    monkeypatch.setenv("OSCAR_BRIDGE_CLUSTERS", str(tmp_path / "no-such-clusters.yaml"))
    monkeypatch.setenv("OSCAR_BRIDGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OSCAR_BRIDGE_TOKEN", server.token)

    def run(*argv: str) -> tuple[int, str, str]:
        rc = main(["--bridge", server.url, *argv])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def write_fdl(directory: Path, name: str, script: str, log_level: str = "CRITICAL") -> Path:
    (directory / f"{name}.sh").write_text(script)
    fdl = directory / f"{name}.yaml"
    fdl.write_text(
        "functions:\n  oscar:\n"
        f"  - local:\n      name: {name}\n      image: alpine:3.20\n"
        f"      log_level: {log_level}\n      script: {name}.sh\n"
    )
    return fdl


def test_clusters_list_shows_local_without_secrets(cli, server):
    rc, out, err = cli("clusters", "list")
    assert rc == 0, err
    assert any(line.split()[0] == "local" for line in out.splitlines()[1:])
    rc, out, _ = cli("clusters", "list", "--json")
    clusters = json.loads(out)
    local = next(c for c in clusters if c["id"] == "local")
    assert local["default"] is True and local["auth_kind"] == "basic"
    assert server.local.password not in out
    rc, out, _ = cli("clusters", "check", "local", "--json")
    assert rc == 0 and json.loads(out)["healthy"] is True


def test_apply_invoke_and_services(cli, tmp_path):
    rc, out, err = cli("apply", str(UPPERCASE_FDL))
    assert rc == 0, err
    assert "uppercase" in out and "cluster local" in out
    rc, out, err = cli("invoke", "uppercase", "-i", "through the bridge")
    assert rc == 0, err
    assert out == "THROUGH THE BRIDGE\n"
    rc, out, _ = cli("services", "list", "--json")
    assert "uppercase" in [s["name"] for s in json.loads(out)]
    rc, out, _ = cli("services", "get", "uppercase", "--json")
    assert json.loads(out)["name"] == "uppercase"
    assert cli("services", "delete", "uppercase")[0] == 0
    rc, _, err = cli("services", "get", "uppercase")
    assert rc == 1 and err.startswith("error: ") and len(err.splitlines()) == 1


def test_binary_and_multi_file_outputs(cli, tmp_path):
    echo, multi = unique_name("becho"), unique_name("bmulti")
    assert cli("apply", str(write_fdl(tmp_path, echo, ECHO_SCRIPT)))[0] == 0
    assert cli("apply", str(write_fdl(tmp_path, multi, MULTI_SCRIPT)))[0] == 0
    payload = bytes(range(256)) * 40 + os.urandom(3000)
    (tmp_path / "in.bin").write_bytes(payload)
    rc, _, err = cli("invoke", echo, "-f", str(tmp_path / "in.bin"), "-o", str(tmp_path / "out.bin"))
    assert rc == 0, err
    assert (tmp_path / "out.bin").read_bytes() == payload
    rc, out, _ = cli("invoke", echo, "-f", str(tmp_path / "in.bin"), "--json")
    assert base64.b64decode(json.loads(out)["base64"]) == payload
    rc, _, err = cli("invoke", multi, "-i", "x", "-o", str(tmp_path / "many"))
    assert rc == 0, err
    assert (tmp_path / "many" / "a.txt").read_bytes() == b"one"
    assert (tmp_path / "many" / "b.txt").read_bytes() == b"two"
    cli("services", "delete", echo, multi)


def test_async_jobs(cli, tmp_path):
    name = unique_name("bjobs")
    assert cli("apply", str(write_fdl(tmp_path, name, LOG_SCRIPT, log_level="INFO")))[0] == 0
    rc, out, err = cli("invoke", name, "-i", "queued", "--async")
    assert rc == 0, err
    job = out.strip()
    assert job.startswith(name)

    def jobs() -> dict[str, str]:
        return {j["job"]: j["status"] for j in json.loads(cli("jobs", "list", name, "--json")[1])}

    assert wait_until(lambda: jobs().get(job) == "Succeeded", timeout=60)
    rc, out, _ = cli("jobs", "logs", name, job)
    assert rc == 0 and "job saw: queued" in out
    assert cli("jobs", "delete", name, "--succeeded")[0] == 0
    assert jobs() == {}
    cli("services", "delete", name)


def test_register_and_remove_a_cluster(cli, server):
    rt = server.local
    rc, out, err = cli("clusters", "add", "again", rt.endpoint, "--user", rt.user, "--password", rt.password)
    assert rc == 0, err
    assert rt.password not in out + err
    rc, out, _ = cli("--json", "clusters", "list")
    assert sorted(c["id"] for c in json.loads(out)) == ["again", "local"]
    assert rt.password not in out
    rc, out, _ = cli("services", "list", "-c", "again", "--json")
    assert rc == 0 and isinstance(json.loads(out), list)
    assert cli("clusters", "remove", "again")[0] == 0
    rc, _, err = cli("services", "list", "-c", "again")
    assert rc == 1 and err.startswith("error: ") and "again" in err


def test_token_sources(server, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OSCAR_BRIDGE_TOKEN", raising=False)
    # --bridge-token wins; a wrong one is a clear one-line error.
    rc = main(["--bridge", server.url, "--bridge-token", "wrong", "services", "list"])
    out, err = capsys.readouterr()
    assert rc == 1 and out == "" and err.startswith("error: ") and len(err.splitlines()) == 1
    # No token anywhere: says where it looked.
    monkeypatch.setenv("OSCAR_BRIDGE_DATA_DIR", str(tmp_path / "empty"))
    rc = main(["--bridge", server.url, "services", "list"])
    assert rc == 1 and "no bridge token" in capsys.readouterr().err
    # The token file of a bridge using the (default) data dir.
    monkeypatch.setenv("OSCAR_BRIDGE_DATA_DIR", str(server.settings.data_dir))
    rc = main(["--bridge", server.url, "services", "list", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert isinstance(json.loads(out), list)


def test_console_script_with_bridge(server, tmp_path):
    env = {**os.environ, "OSCAR_BRIDGE_TOKEN": server.token, "OSCAR_BRIDGE_DATA_DIR": str(tmp_path)}
    res = subprocess.run(
        [CLI, "--bridge", server.url, "clusters", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "local" in [c["id"] for c in json.loads(res.stdout)]
    assert server.token not in res.stdout + res.stderr
