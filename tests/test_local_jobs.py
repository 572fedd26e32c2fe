"""JobManager: async job lifecycle, paging, deletion rules and recovery after a restart.

Jobs run real /bin/sh scripts through a real Supervisor and Limiter; status changes are
observed through the on_change callback, with generous deadlines and no timing asserts.
"""

from __future__ import annotations

import base64
import re
import threading
from pathlib import Path

import pytest

from bridge.local.jobs import JobExists, JobManager, new_job_name
from bridge.local.limits import Limiter
from bridge.local.supervisor import Supervisor
from bridge.store import Store

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
WAIT_S = 120.0


class Changes:
    """on_change recorder that lets tests wait for a job to reach a status."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.seen: list[tuple[str, str, str]] = []
        self.docs: dict[tuple[str, str], dict] = {}

    def __call__(self, svc: str, job: str, doc: dict) -> None:
        with self.cond:
            self.seen.append((svc, job, doc["status"]))
            self.docs[(svc, job)] = doc
            self.cond.notify_all()

    def wait(self, svc: str, job: str, *statuses: str) -> dict:
        with self.cond:
            ok = self.cond.wait_for(
                lambda: self.docs.get((svc, job), {}).get("status") in statuses, timeout=WAIT_S
            )
            assert ok, f"{svc}/{job} never reached {statuses}; seen {self.seen}"
            return self.docs[(svc, job)]

    def statuses(self, svc: str, job: str) -> list[str]:
        with self.cond:
            return [status for s, j, status in self.seen if (s, j) == (svc, job)]


def make_service(script: str, name: str = "demo", **extra) -> dict:
    return {"name": name, "script": script, "log_level": "INFO", "token": "t" * 64, **extra}


def b64(text: str) -> bytes:
    return base64.b64encode(text.encode())


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "state.sqlite")
    yield store
    store.close()


@pytest.fixture
def parts(tmp_path: Path) -> dict:
    supervisor = Supervisor(tmp_path / "work", lambda provider, service: None, timeout_s=120, kill_grace_s=2)
    return {"supervisor": supervisor, "limiter": Limiter(4), "logs_dir": tmp_path / "logs"}


@pytest.fixture
def changes() -> Changes:
    return Changes()


@pytest.fixture
def manager(store: Store, parts: dict, changes: Changes) -> JobManager:
    manager = JobManager(store, parts["supervisor"], parts["limiter"], parts["logs_dir"], on_change=changes)
    manager.start()
    yield manager
    manager.stop()


def test_job_lifecycle(manager: JobManager, changes: Changes, parts: dict) -> None:
    job = manager.submit(make_service('echo "hello from $JOB_UUID"; cat "$INPUT_FILE_PATH"'), b64("payload"))
    assert re.fullmatch(f"demo-{UUID4}", job)
    doc = changes.wait("demo", job, "Succeeded")
    assert changes.statuses("demo", job) == ["Pending", "Running", "Succeeded"]
    assert doc["exit_code"] == 0
    for key in ("creation_time", "start_time", "finish_time"):
        assert RFC3339.match(doc[key]), doc
    assert doc["creation_time"] <= doc["start_time"] <= doc["finish_time"]
    logs = manager.logs("demo", job)
    assert f"hello from {job}" in logs and "payload" in logs
    assert "supervisor - INFO - Running script" in logs
    assert (parts["logs_dir"] / "demo" / f"{job}.log").read_text() == logs
    assert manager.get("demo", job)["status"] == "Succeeded"


def test_failing_script_marks_the_job_failed(manager: JobManager, changes: Changes) -> None:
    job = manager.submit(make_service("echo broken; exit 7"), b64("x"))
    doc = changes.wait("demo", job, "Succeeded", "Failed")
    assert doc["status"] == "Failed" and doc["exit_code"] == 7
    assert "broken" in manager.logs("demo", job)


def test_undecodable_body_fails_the_job(manager: JobManager, changes: Changes) -> None:
    job = manager.submit(make_service("echo never"), b"[1, 2]")
    assert changes.wait("demo", job, "Succeeded", "Failed")["status"] == "Failed"
    assert "CRITICAL" in manager.logs("demo", job)


def test_given_job_name_is_used_and_must_be_unique(manager: JobManager, changes: Changes) -> None:
    job = manager.submit(make_service("echo $JOB_UUID"), b64("x"), job_name="delegated-123")
    assert job == "delegated-123"
    changes.wait("demo", job, "Succeeded")
    assert "delegated-123" in manager.logs("demo", job)
    with pytest.raises(JobExists):
        manager.submit(make_service("true"), b64("x"), job_name="delegated-123")
    # the same name under another service is a different job
    assert manager.submit(make_service("true", name="other"), b64("x"), job_name="delegated-123")


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "x" * 300])
def test_unsafe_job_names_are_refused(manager: JobManager, name: str) -> None:
    with pytest.raises(ValueError):
        manager.submit(make_service("true"), b64("x"), job_name=name)


@pytest.mark.parametrize("name", ["../svc", "", "a/b"])
def test_unsafe_service_names_are_refused(manager: JobManager, name: str) -> None:
    with pytest.raises(ValueError):
        manager.submit(make_service("true", name=name), b64("x"))


def test_generated_names_follow_oscar_truncation() -> None:
    assert re.fullmatch(f"short-{UUID4}", new_job_name("short"))
    long_name = "a-service-name-of-30-chars-xyz"
    assert re.fullmatch(f"{long_name[:16]}-{UUID4}", new_job_name(long_name))
    edge = "x" * 24
    assert new_job_name(edge).startswith(edge + "-")


def test_jobs_ignore_synchronous_max_scale(manager: JobManager, changes: Changes, tmp_path: Path) -> None:
    """Two jobs of a max_scale=1 service must be able to run at the same time: each one
    waits (up to a generous bound) for the other to show up, and fails if it never does."""
    rendezvous = tmp_path / "rendezvous"
    rendezvous.mkdir()
    script = f"""
: > "{rendezvous}/$JOB_UUID"
i=0
while [ "$(ls "{rendezvous}" | wc -l)" -lt 2 ]; do
  i=$((i+1)); [ $i -gt 600 ] && exit 1
  sleep 0.1
done
"""
    service = make_service(script, synchronous={"min_scale": 0, "max_scale": 1})
    jobs = [manager.submit(service, b64("x")) for _ in range(2)]
    for job in jobs:
        assert changes.wait("demo", job, "Succeeded", "Failed")["status"] == "Succeeded"


def test_global_cap_applies_to_jobs(store: Store, parts: dict, changes: Changes, tmp_path: Path) -> None:
    active = tmp_path / "active"
    active.mkdir()
    seen = tmp_path / "seen"
    script = f"""
: > "{active}/$JOB_UUID"
ls "{active}" | wc -l >> "{seen}"
sleep 0.2
rm "{active}/$JOB_UUID"
"""
    manager = JobManager(
        store, parts["supervisor"], Limiter(1), parts["logs_dir"], on_change=changes, workers=3
    )
    manager.start()
    try:
        jobs = [manager.submit(make_service(script), b64("x")) for _ in range(3)]
        for job in jobs:
            assert changes.wait("demo", job, "Succeeded", "Failed")["status"] == "Succeeded"
    finally:
        manager.stop()
    assert max(int(v) for v in seen.read_text().split()) == 1


# -- listing ----------------------------------------------------------------------------------


def test_list_pages_newest_first(store: Store, parts: dict) -> None:
    manager = JobManager(store, parts["supervisor"], parts["limiter"], parts["logs_dir"], page_size=3)
    names = [manager.submit(make_service("true"), b64("x"), job_name=f"job-{i}") for i in range(7)]
    # not started: every job stays Pending, which keeps the listing deterministic
    jobs, token, remaining = manager.list("demo")
    assert list(jobs) == ["job-6", "job-5", "job-4"]
    assert remaining == 4 and token
    assert list(jobs["job-6"]) == ["status", "creation_time"]  # unset times are omitted
    assert jobs["job-6"]["status"] == "Pending"

    manager.submit(make_service("true"), b64("x"), job_name="job-new")  # does not shift pages
    page2, token2, remaining2 = manager.list("demo", token)
    assert list(page2) == ["job-3", "job-2", "job-1"] and remaining2 == 1
    manager.delete("demo", "job-1")  # deleting the anchor does not break the next page
    page3, token3, remaining3 = manager.list("demo", token2)
    assert list(page3) == ["job-0"] and token3 is None and remaining3 is None
    assert list(manager.list("demo")[0]) == ["job-new", *names[6:3:-1][:2]]

    assert manager.list("nobody") == ({}, None, None)
    with pytest.raises(ValueError):
        manager.list("demo", "not-a-token!")


def test_list_shows_oscar_job_info(manager: JobManager, changes: Changes) -> None:
    job = manager.submit(make_service("true"), b64("x"))
    changes.wait("demo", job, "Succeeded")
    jobs, token, remaining = manager.list("demo")
    assert list(jobs[job]) == ["status", "creation_time", "start_time", "finish_time"]
    assert token is None and remaining is None


# -- deletion ---------------------------------------------------------------------------------


def test_delete_one_job(manager: JobManager, changes: Changes, parts: dict) -> None:
    job = manager.submit(make_service("echo x"), b64("x"))
    changes.wait("demo", job, "Succeeded")
    assert manager.delete("demo", job) is True
    assert manager.get("demo", job) is None and manager.logs("demo", job) is None
    assert not (parts["logs_dir"] / "demo" / f"{job}.log").exists()
    assert manager.delete("demo", job) is False
    assert manager.delete("demo", "never-existed") is False


def test_delete_all_keeps_unfinished_and_failed_jobs_unless_all(
    manager: JobManager, changes: Changes
) -> None:
    ok = [manager.submit(make_service("true"), b64("x")) for _ in range(2)]
    bad = manager.submit(make_service("exit 1"), b64("x"))
    for job in [*ok, bad]:
        changes.wait("demo", job, "Succeeded", "Failed")
    assert manager.delete_all("demo") == 2
    assert list(manager.list("demo")[0]) == [bad]
    assert manager.delete_all("demo", all=True) == 1
    assert manager.list("demo")[0] == {}


def test_deleting_a_running_job_kills_it(manager: JobManager, changes: Changes, tmp_path: Path) -> None:
    started = tmp_path / "started"
    job = manager.submit(make_service(f'touch "{started}"; sleep 1000'), b64("x"))
    changes.wait("demo", job, "Running")
    _wait_for(started.exists)
    assert manager.delete("demo", job)
    _wait_for(lambda: manager.limiter.active == 0)  # the worker finished the invocation
    assert manager.get("demo", job) is None and manager.logs("demo", job) is None
    assert "Succeeded" not in changes.statuses("demo", job)


def test_forget_service_drops_jobs_and_logs(manager: JobManager, changes: Changes, parts: dict) -> None:
    job = manager.submit(make_service("echo x"), b64("x"))
    changes.wait("demo", job, "Succeeded")
    other = manager.submit(make_service("echo y", name="keep"), b64("x"))
    changes.wait("keep", other, "Succeeded")
    manager.forget_service("demo")
    assert manager.list("demo") == ({}, None, None)
    assert not (parts["logs_dir"] / "demo").exists()
    assert manager.get("keep", other) is not None


# -- restarts ---------------------------------------------------------------------------------


def test_restart_requeues_pending_and_fails_running_jobs(store: Store, parts: dict) -> None:
    first = JobManager(store, parts["supervisor"], parts["limiter"], parts["logs_dir"])
    pending = first.submit(
        make_service('echo "ran after restart"; cat "$INPUT_FILE_PATH"'), b64("kept input")
    )
    # a job that was Running when the previous process died
    store.put(
        "job",
        "demo/demo-crashed",
        {
            "status": "Running",
            "creation_time": "2026-01-01T10:00:00Z",
            "start_time": "2026-01-01T10:00:01Z",
            "finish_time": None,
            "exit_code": None,
        },
        parent="demo",
    )
    changes = Changes()
    second = JobManager(store, parts["supervisor"], parts["limiter"], parts["logs_dir"], on_change=changes)
    second.start()
    try:
        assert changes.wait("demo", pending, "Succeeded", "Failed")["status"] == "Succeeded"
        assert "ran after restart" in second.logs("demo", pending) and "kept input" in second.logs(
            "demo", pending
        )
        crashed = second.get("demo", "demo-crashed")
        assert crashed["status"] == "Failed" and RFC3339.match(crashed["finish_time"])
        assert "runtime restarted" in second.logs("demo", "demo-crashed")
        assert store.items("job-body") == []  # inputs are dropped once jobs finish
    finally:
        second.stop()


def test_stop_fails_running_jobs_and_keeps_pending_ones(store: Store, parts: dict, tmp_path: Path) -> None:
    started = tmp_path / "started"
    script = f'if grep -q slow "$INPUT_FILE_PATH"; then touch "{started}"; sleep 1000; fi; echo finished'
    changes = Changes()
    one = JobManager(store, parts["supervisor"], Limiter(1), parts["logs_dir"], on_change=changes, workers=1)
    one.start()
    slow = one.submit(make_service(script), b64("slow"))
    changes.wait("demo", slow, "Running")
    _wait_for(started.exists)
    queued = one.submit(make_service(script), b64("fast"))
    one.stop()
    assert one.get("demo", slow)["status"] == "Failed"
    assert "runtime stopped" in one.logs("demo", slow)
    assert one.get("demo", queued)["status"] == "Pending"

    again = Changes()
    two = JobManager(store, parts["supervisor"], Limiter(1), parts["logs_dir"], on_change=again)
    two.start()
    try:
        assert again.wait("demo", queued, "Succeeded", "Failed")["status"] == "Succeeded"
        assert "finished" in two.logs("demo", queued)
    finally:
        two.stop()


def test_failing_on_change_callback_does_not_break_jobs(store: Store, parts: dict) -> None:
    done = threading.Event()

    def callback(svc: str, job: str, doc: dict) -> None:
        if doc["status"] == "Succeeded":
            done.set()
        raise RuntimeError("subscriber bug")

    manager = JobManager(store, parts["supervisor"], parts["limiter"], parts["logs_dir"], on_change=callback)
    manager.start()
    try:
        manager.submit(make_service("true"), b64("x"))
        assert done.wait(WAIT_S)
    finally:
        manager.stop()


def _wait_for(predicate, timeout_s: float = WAIT_S) -> None:
    pause = threading.Event()
    for _ in range(int(timeout_s / 0.02)):
        if predicate():
            return
        pause.wait(0.02)
    raise AssertionError("condition never became true")
