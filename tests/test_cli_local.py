"""The OSCAR commands of `oscar-bridge` against a running local runtime (real HTTP).

Each test gets its own clusters file naming the runtime as cluster `local`, and its
own service names, so the tests share one runtime (started once: it runs an S3 server)
without depending on each other's state.
"""

from __future__ import annotations

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

ECHO_SCRIPT = 'cp "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/out.bin"\necho "copied $(wc -c < "$INPUT_FILE_PATH")"\n'
MULTI_SCRIPT = (
    'mkdir -p "$TMP_OUTPUT_DIR/sub"\nprintf one > "$TMP_OUTPUT_DIR/a.txt"\n'
    'printf two > "$TMP_OUTPUT_DIR/sub/b.txt"\n'
)
FAIL_SCRIPT = 'echo "about to fail"\nexit 3\n'
LOG_SCRIPT = 'echo "job saw: $(cat "$INPUT_FILE_PATH")"\n'


@pytest.fixture
def runtime(request):
    """The session's shared local runtime (tests.support.local_runtime)."""
    return request.getfixturevalue("local_runtime")


@pytest.fixture
def cli(runtime, tmp_path, monkeypatch, capsys):
    """Run main() in-process with a clusters file that knows the runtime as `local`."""
    monkeypatch.setenv("OSCAR_BRIDGE_CLUSTERS", str(tmp_path / "clusters.yaml"))
    monkeypatch.setenv("OSCAR_BRIDGE_DATA_DIR", str(tmp_path / "data"))

    def run(*argv: str) -> tuple[int, str, str]:
        rc = main(list(argv))
        out, err = capsys.readouterr()
        return rc, out, err

    rc, _, err = run(
        "clusters",
        "add",
        "local",
        runtime.endpoint,
        "--user",
        runtime.user,
        "--password",
        runtime.password,
    )
    assert rc == 0, err
    return run


def write_fdl(
    directory: Path, name: str, script: str, cluster: str = "local", log_level: str = "CRITICAL"
) -> Path:
    (directory / f"{name}.sh").write_text(script)
    fdl = directory / f"{name}.yaml"
    fdl.write_text(
        "functions:\n  oscar:\n"
        f"  - {cluster}:\n      name: {name}\n      image: alpine:3.20\n      cpu: '0.1'\n"
        f"      memory: 64Mi\n      log_level: {log_level}\n      script: {name}.sh\n"
    )
    return fdl


def test_apply_list_get_delete(cli):
    rc, out, err = cli("apply", str(UPPERCASE_FDL))
    assert rc == 0, err
    assert "uppercase" in out and "local" in out

    rc, out, _ = cli("services", "list")
    assert rc == 0
    assert out.splitlines()[0].split()[0] == "NAME"
    assert any(line.split()[0] == "uppercase" for line in out.splitlines()[1:])

    rc, out, _ = cli("services", "get", "uppercase")
    assert rc == 0
    assert "name: uppercase" in out and "tr 'abcdefghijklmnopqrstuvwxyz'" in out

    rc, out, _ = cli("--json", "services", "get", "uppercase")
    svc = json.loads(out)
    assert svc["name"] == "uppercase" and svc["image"] == "alpine:3.20"

    rc, out, _ = cli("apply", str(UPPERCASE_FDL), "--json")
    assert json.loads(out) == [{"cluster": "local", "name": "uppercase", "action": "updated"}]

    rc, out, _ = cli("services", "delete", "uppercase")
    assert rc == 0 and "deleted" in out
    rc, out, _ = cli("services", "list", "--json")
    assert "uppercase" not in [s["name"] for s in json.loads(out)]
    rc, out, err = cli("services", "get", "uppercase")
    assert rc == 1 and out == ""
    assert err.startswith("error: ") and "uppercase" in err and len(err.splitlines()) == 1


def test_get_output_can_be_applied_back(cli, tmp_path):
    name = unique_name("roundtrip")
    assert cli("apply", str(write_fdl(tmp_path, name, LOG_SCRIPT)))[0] == 0
    rc, out, _ = cli("services", "get", name)
    edited = tmp_path / "edited.yaml"
    edited.write_text(out.replace("memory: 64Mi", "memory: 96Mi"))
    rc, out, err = cli("apply", str(edited))
    assert rc == 0, err
    assert "updated" in out
    assert json.loads(cli("services", "get", name, "--json")[1])["memory"] == "96Mi"
    cli("services", "delete", name)


def test_apply_chooses_clusters(cli, tmp_path):
    name = unique_name("elsewhere")
    fdl = write_fdl(tmp_path, name, LOG_SCRIPT, cluster="some-other-cluster")
    rc, out, err = cli("apply", str(fdl))
    assert rc == 1 and out == ""
    assert err.startswith("error: ") and "-c" in err and len(err.splitlines()) == 1
    rc, out, err = cli("apply", str(fdl), "-c", "local")
    assert rc == 0, err
    assert f"service {name} created on cluster local" in out
    assert cli("services", "delete", name)[0] == 0


def test_bad_fdl_is_one_error_line(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "functions:\n  oscar:\n  - local:\n      name: bad\n      image: alpine\n      script: missing.sh\n"
    )
    rc, out, err = cli("apply", str(bad))
    assert rc == 1 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "script" in err
    broken = tmp_path / "broken.yaml"
    broken.write_text("functions: [unclosed\n")
    rc, _, err = cli("apply", str(broken))
    assert rc == 1 and err.startswith("error: ") and "Traceback" not in err


def test_invoke_text(cli):
    assert cli("apply", str(UPPERCASE_FDL))[0] == 0
    rc, out, err = cli("invoke", "uppercase", "-i", "hello, señor")
    assert rc == 0, err
    assert out == "HELLO, SEñOR\n"
    rc, out, _ = cli("invoke", "uppercase", "-i", "json please", "--json")
    assert json.loads(out) == {
        "cluster": "local",
        "service": "uppercase",
        "kind": "text",
        "text": "JSON PLEASE",
    }


def test_invoke_binary_file_round_trip(cli, tmp_path):
    name = unique_name("echo")
    assert cli("apply", str(write_fdl(tmp_path, name, ECHO_SCRIPT)))[0] == 0
    payload = bytes(range(256)) * 64 + os.urandom(4096)
    src = tmp_path / "in.bin"
    src.write_bytes(payload)
    dest = tmp_path / "result" / "out.bin"
    rc, out, err = cli("invoke", name, "-f", str(src), "-o", str(dest))
    assert rc == 0, err
    assert dest.read_bytes() == payload
    assert out == ""

    rc, out, _ = cli("invoke", name, "-f", str(src), "--json")
    doc = json.loads(out)
    assert doc["kind"] == "file"
    import base64

    assert base64.b64decode(doc["base64"]) == payload
    cli("services", "delete", name)


def test_invoke_several_files_into_a_directory(cli, tmp_path):
    name = unique_name("multi")
    assert cli("apply", str(write_fdl(tmp_path, name, MULTI_SCRIPT)))[0] == 0
    outdir = tmp_path / "outdir"
    rc, _, err = cli("invoke", name, "-i", "x", "-o", str(outdir))
    assert rc == 0, err
    assert (outdir / "a.txt").read_bytes() == b"one"
    assert (outdir / "sub" / "b.txt").read_bytes() == b"two"
    cli("services", "delete", name)


def test_failing_script_is_exit_1(cli, tmp_path):
    name = unique_name("fail")
    assert cli("apply", str(write_fdl(tmp_path, name, FAIL_SCRIPT)))[0] == 0
    rc, out, err = cli("invoke", name, "-i", "x")
    assert rc == 1 and out == ""
    assert err.startswith("error: ") and name in err.splitlines()[0]
    assert "Traceback" not in err
    rc, _, err = cli("invoke", "no-such-service", "-i", "x")
    assert rc == 1 and err.startswith("error: ") and len(err.splitlines()) == 1
    cli("services", "delete", name)


def test_async_jobs_list_logs_delete(cli, tmp_path):
    name = unique_name("jobs")
    assert cli("apply", str(write_fdl(tmp_path, name, LOG_SCRIPT, log_level="INFO")))[0] == 0
    rc, out, err = cli("invoke", name, "-i", "first", "--async")
    assert rc == 0, err
    job1 = out.strip()
    assert job1.startswith(f"{name}-") and len(out.splitlines()) == 1
    rc, out, _ = cli("invoke", name, "-i", "second", "--async", "--json")
    job2 = json.loads(out)["job"]

    def statuses() -> dict[str, str]:
        rc, out, _ = cli("jobs", "list", name, "--json")
        return {j["job"]: j["status"] for j in json.loads(out)}

    assert wait_until(lambda: set(statuses().values()) == {"Succeeded"} and len(statuses()) == 2, timeout=60)
    rc, out, _ = cli("jobs", "list", name)
    assert out.splitlines()[0].split() == ["JOB", "STATUS", "CREATED", "STARTED", "FINISHED"]
    assert job1 in out and job2 in out

    rc, out, _ = cli("jobs", "logs", name, job1)
    assert rc == 0 and "job saw: first" in out

    rc, out, _ = cli("jobs", "delete", name, job1)
    assert rc == 0
    assert list(statuses()) == [job2]
    rc, _, err = cli("jobs", "logs", name, job1)
    assert rc == 1 and err.startswith("error: ")

    rc, _, _ = cli("jobs", "delete", name, "--succeeded")
    assert rc == 0 and statuses() == {}

    fail = unique_name("failjob")
    assert cli("apply", str(write_fdl(tmp_path, fail, FAIL_SCRIPT)))[0] == 0
    job3 = cli("invoke", fail, "-i", "x", "--async")[1].strip()
    assert wait_until(lambda: cli("jobs", "list", fail, "--json")[1].count('"Failed"') == 1, timeout=60)
    cli("jobs", "delete", fail, "--succeeded")
    assert job3 in cli("jobs", "list", fail)[1]  # a failed job survives --succeeded
    assert cli("jobs", "delete", fail, "--all")[0] == 0
    assert json.loads(cli("jobs", "list", fail, "--json")[1]) == []
    cli("services", "delete", name, fail)


def test_console_script_against_runtime(runtime, tmp_path):
    env = {
        **os.environ,
        "OSCAR_BRIDGE_CLUSTERS": str(tmp_path / "c.yaml"),
        "OSCAR_BRIDGE_DATA_DIR": str(tmp_path),
    }

    def run(*argv: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([CLI, *argv], capture_output=True, env=env, timeout=120, **kw)

    assert (
        run(
            "clusters",
            "add",
            "local",
            runtime.endpoint,
            "--user",
            runtime.user,
            "--password",
            runtime.password,
        ).returncode
        == 0
    )
    name = unique_name("subproc")
    assert run("apply", str(write_fdl(tmp_path, name, ECHO_SCRIPT))).returncode == 0
    payload = os.urandom(20000)
    (tmp_path / "p.bin").write_bytes(payload)
    res = run("invoke", name, "-f", str(tmp_path / "p.bin"))  # stdout is a pipe: raw bytes
    assert res.returncode == 0, res.stderr
    assert res.stdout == payload
    res = run("invoke", name, "-f", "-", input=payload)
    assert res.returncode == 0 and res.stdout == payload
    res = run("services", "list", "--json")
    assert name in [s["name"] for s in json.loads(res.stdout)]
    assert runtime.password.encode() not in res.stdout + res.stderr
    assert run("services", "delete", name).returncode == 0
