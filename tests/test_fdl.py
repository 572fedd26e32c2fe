"""FDL loading, validation and normalisation (bridge.oscar.fdl), and the example services."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from bridge.oscar import codec
from bridge.oscar.fdl import Fdl, FdlError, ServiceEntry, load_fdl, normalise_service, parse_fdl

DATA = Path(__file__).parent / "data" / "fdl"
EXAMPLE = DATA / "example" / "fdl.yaml"
SERVICES = Path(__file__).resolve().parent.parent / "flows" / "services"
SCRIPT = "#!/bin/sh\necho hi\n"


def fdl_text(service: dict, cluster: str = "c1", **top) -> str:
    return yaml.safe_dump({"functions": {"oscar": [{cluster: service}]}, **top})


def svc(**fields) -> dict:
    return {"name": "demo", "image": "alpine", "script": SCRIPT, **fields}


def errors_of(data, **kwargs) -> list[tuple[str, str]]:
    with pytest.raises(FdlError) as info:
        parse_fdl(data, **kwargs)
    return info.value.errors


def error_at(data, location: str, **kwargs) -> str:
    """The message reported at exactly ``location`` (and fail if it is not the only one)."""
    errors = errors_of(data, **kwargs)
    assert [loc for loc, _ in errors] == [location], errors
    return errors[0][1]


# -- the reference example ------------------------------------------------------------------------


def test_reference_example_loads_and_inlines_the_script() -> None:
    fdl = load_fdl(EXAMPLE)
    assert isinstance(fdl, Fdl) and len(fdl.services) == 1
    entry = fdl.services[0]
    assert entry.cluster_id == "my-cluster"
    service = entry.service
    assert service["name"] == "grayify"
    assert service["script"] == (EXAMPLE.parent / "script.sh").read_text()
    assert service["cpu"] == "1.0" and service["memory"] == "1Gi"
    assert service["log_level"] == "CRITICAL"
    assert service["environment"] == {"variables": {"MODE": "fast"}, "secrets": {"API_KEY": "s3cr3t"}}
    assert [o["path"] for o in service["output"]] == [
        "grayify/out",
        "my-aws-bucket/results",
        "results-folder",
    ]
    assert service["output"][0]["suffix"] == [".png", ".jpg"]
    # FDL-level providers are copied into the service, as oscar-cli does
    assert service["storage_providers"]["s3"]["my_s3"]["access_key"] == "AK"
    assert set(service["storage_providers"]) == {"s3", "onedata", "webdav", "minio"}
    assert fdl.clusters["my-cluster"]["endpoint"] == "https://oscar.example.org"
    assert "clusters" not in service  # credentials are not copied into unrelated services
    assert set(fdl.storage_providers) == {"s3", "onedata", "webdav", "minio"}


def test_parse_fdl_accepts_text_bytes_and_maps() -> None:
    text = EXAMPLE.read_text()
    from_text = parse_fdl(text, base_dir=EXAMPLE.parent)
    from_bytes = parse_fdl(text.encode(), base_dir=EXAMPLE.parent)
    from_map = parse_fdl(yaml.safe_load(text), base_dir=str(EXAMPLE.parent))
    assert from_text == from_bytes == from_map == load_fdl(EXAMPLE)


def test_without_base_dir_the_script_is_content_and_nothing_is_read() -> None:
    fdl = parse_fdl(fdl_text(svc(script="/etc/passwd")))
    assert fdl.services[0].service["script"] == "/etc/passwd"


def test_a_multiline_script_value_is_content_even_with_a_base_dir(tmp_path: Path) -> None:
    fdl = parse_fdl(fdl_text(svc(script="echo a\r\necho b\r\n")), base_dir=tmp_path)
    assert fdl.services[0].service["script"] == "echo a\necho b\n"


def test_every_entry_is_kept_with_its_cluster(tmp_path: Path) -> None:
    (tmp_path / "s.sh").write_text("echo s\n")
    data = {
        "functions": {
            "oscar": [
                {"one": {"name": "a", "image": "i", "script": "s.sh"}},
                {"two": {"name": "b", "image": "i", "script": "s.sh"}},
            ]
        }
    }
    fdl = parse_fdl(data, base_dir=tmp_path)
    assert [(e.cluster_id, e.service["name"], e.service["script"]) for e in fdl.services] == [
        ("one", "a", "echo s\n"),
        ("two", "b", "echo s\n"),
    ]


# -- malformed FDLs: each problem at its exact location ----------------------------------------


def test_bad_yaml_names_the_file_and_line() -> None:
    path = DATA / "malformed" / "bad-yaml.yaml"
    with pytest.raises(FdlError) as info:
        load_fdl(path)
    ((location, message),) = info.value.errors
    assert location == str(path)
    assert message.startswith("invalid YAML (line ")


def test_missing_script_file_names_the_location_and_path() -> None:
    path = DATA / "malformed" / "missing-script.yaml"
    with pytest.raises(FdlError) as info:
        load_fdl(path)
    assert info.value.errors == [
        (
            "functions.oscar[0].local.script",
            f"script file not found: {path.resolve().parent / 'does-not-exist.sh'}",
        )
    ]


def test_all_errors_are_collected_in_one_exception() -> None:
    with pytest.raises(FdlError) as info:
        load_fdl(DATA / "malformed" / "many-errors.yaml")
    locations = [loc for loc, _ in info.value.errors]
    assert locations == [
        "functions.oscar[0].my-cluster.name",
        "functions.oscar[0].my-cluster.log_level",
        "functions.oscar[0].my-cluster.input[0].path",
        "functions.oscar[0].my-cluster.input[1].storage_provider",
        "functions.oscar[0].my-cluster.output[0].storage_provider",
        "functions.oscar[0].my-cluster.output[1].storage_provider",
        "functions.oscar[1].my-cluster.name",
        "functions.oscar[1].my-cluster.script",
        "functions.oscar[2]",
    ]
    text = str(info.value)
    assert text.splitlines()[2].startswith(
        "functions.oscar[0].my-cluster.input[0].path: must contain a folder"
    )
    assert len(text.splitlines()) == len(locations)


@pytest.mark.parametrize(
    ("data", "location", "fragment"),
    [
        ({"functions": {"oscar": {"c1": svc()}}}, "functions.oscar", "must be a list"),
        ({"functions": {}}, "functions.oscar", "missing"),
        ({"functions": ["oscar"]}, "functions", "must be a map"),
        ({"functions": {"oscar": ["c1"]}}, "functions.oscar[0]", "exactly one key"),
        ({"functions": {"oscar": [{"a": svc(), "b": svc()}]}}, "functions.oscar[0]", "got 2 keys (a, b)"),
        ({"functions": {"oscar": [{"c1": "demo"}]}}, "functions.oscar[0].c1", "must be a service map"),
        ({"functions": {"oscar": [{"c1": svc()}]}, "clusters": []}, "clusters", "must be a map"),
        (
            {"functions": {"oscar": [{"c1": svc()}]}, "storage_providers": {"ftp": {}}},
            "storage_providers.ftp",
            "unknown storage provider type",
        ),
        ("just a string", "<fdl>", "got a string"),
        ({"version": 1}, "<fdl>", "neither an FDL"),
    ],
)
def test_structure_errors(data, location: str, fragment: str) -> None:
    assert fragment in error_at(data, location)


@pytest.mark.parametrize("field", ["name", "image", "script"])
def test_required_fields(field: str) -> None:
    service = svc()
    del service[field]
    assert error_at(fdl_text(service), f"functions.oscar[0].c1.{field}") == "is required"


@pytest.mark.parametrize("name", ["Upper", "-lead", "trail-", "under_score", "a" * 40, "dot.ted", 7])
def test_bad_names(name) -> None:
    message = error_at(fdl_text(svc(name=name)), "functions.oscar[0].c1.name")
    assert "not a valid service name" in message


@pytest.mark.parametrize("name", ["a", "a" * 39, "x-1", "9lives"])
def test_good_names(name: str) -> None:
    assert parse_fdl(fdl_text(svc(name=name))).services[0].service["name"] == name


def test_numeric_cpu_and_memory_become_strings() -> None:
    text = (
        "functions:\n  oscar:\n  - c1: {name: n, image: i, script: s, cpu: 1, memory: 512, total_cpu: 0.5}\n"
    )
    service = parse_fdl(text).services[0].service
    assert (service["cpu"], service["memory"], service["total_cpu"]) == ("1", "512", "0.5")
    assert json.loads(json.dumps(service))["cpu"] == "1"


def test_bad_scalar_types_are_reported() -> None:
    errors = errors_of(fdl_text(svc(cpu=True, enable_gpu="yes", synchronous={"max_scale": -1})))
    assert errors == [
        ("functions.oscar[0].c1.cpu", "must be a string or a number, got a boolean"),
        ("functions.oscar[0].c1.enable_gpu", "must be true or false, got a string"),
        ("functions.oscar[0].c1.synchronous.max_scale", "must be a whole number >= 0, got -1"),
    ]


def test_log_level_is_upper_cased_and_checked() -> None:
    assert parse_fdl(fdl_text(svc(log_level="debug"))).services[0].service["log_level"] == "DEBUG"
    assert "must be one of" in error_at(fdl_text(svc(log_level="loud")), "functions.oscar[0].c1.log_level")


def test_environment_capital_variables_is_accepted() -> None:
    service = (
        parse_fdl(fdl_text(svc(environment={"Variables": {"PORT": 8080, "ON": True}}))).services[0].service
    )
    assert service["environment"] == {"variables": {"PORT": "8080", "ON": "true"}}
    both = svc(environment={"Variables": {}, "variables": {}})
    assert "not both" in error_at(fdl_text(both), "functions.oscar[0].c1.environment.Variables")
    assert "unknown key" in error_at(
        fdl_text(svc(environment={"vars": {}})), "functions.oscar[0].c1.environment.vars"
    )


def test_bare_minio_and_s3_paths_get_the_service_name_as_bucket() -> None:
    service = svc(
        input=[{"storage_provider": "minio", "path": "in"}],
        output=[
            {"storage_provider": "minio.default", "path": "out"},
            {"storage_provider": "s3.aws", "path": "results"},
            {"storage_provider": "onedata.od", "path": "folder"},
        ],
        storage_providers={"s3": {"aws": {}}, "onedata": {"od": {}}},
    )
    result = parse_fdl(fdl_text(service)).services[0].service
    assert [io["path"] for io in result["input"]] == ["demo/in"]
    assert [io["path"] for io in result["output"]] == ["demo/out", "demo/results", "folder"]


@pytest.mark.parametrize("path", ["mybucket/", "", "/", None])
def test_inputs_must_contain_a_folder(path) -> None:
    service = svc(input=[{"storage_provider": "minio.default", "path": path}])
    message = error_at(fdl_text(service), "functions.oscar[0].c1.input[0].path")
    assert message.startswith("must contain a folder")


@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        ("ftp", "unknown storage provider type 'ftp'"),
        ("s3", "s3 cannot trigger a service"),
        ("onedata.od", "onedata cannot trigger a service"),
        ("minio.other", "minio.other is not defined in storage_providers.minio"),
        ("minio.", "empty provider id"),
        (None, "is required"),
    ],
)
def test_bad_input_providers(ref, fragment: str) -> None:
    service = svc(
        input=[{"storage_provider": ref, "path": "b/in"}], storage_providers={"onedata": {"od": {}}}
    )
    assert fragment in error_at(fdl_text(service), "functions.oscar[0].c1.input[0].storage_provider")


def test_webdav_and_rucio_inputs_are_allowed() -> None:
    service = svc(
        input=[
            {"storage_provider": "webdav.dcache", "path": "data"},
            {"storage_provider": "rucio", "path": "s"},
        ],
        storage_providers={"webdav": {"dcache": {"hostname": "h"}}},
    )
    result = parse_fdl(fdl_text(service)).services[0].service
    assert [io["path"] for io in result["input"]] == ["data", "s"]  # no bucket rewrite outside minio/s3


def test_fdl_level_provider_satisfies_a_reference_and_service_level_wins() -> None:
    top = {"storage_providers": {"minio": {"other": {"endpoint": "https://fdl"}}}}
    own = {"minio": {"other": {"endpoint": "https://own"}}, "s3": {"x": {}}}
    service = svc(input=[{"storage_provider": "minio.other", "path": "b/in"}], storage_providers=own)
    result = parse_fdl(fdl_text(service, **top)).services[0].service
    assert result["storage_providers"] == {"minio": {"other": {"endpoint": "https://own"}}, "s3": {"x": {}}}
    without_own = svc(input=[{"storage_provider": "minio.other", "path": "b/in"}])
    result = parse_fdl(fdl_text(without_own, **top)).services[0].service
    assert result["storage_providers"]["minio"]["other"]["endpoint"] == "https://fdl"


def test_clusters_named_by_federation_members_are_copied() -> None:
    clusters = {"peer": {"endpoint": "https://peer"}, "other": {"endpoint": "https://other"}}
    service = svc(federation={"members": [{"type": "oscar", "cluster_id": "peer", "service_name": "demo"}]})
    result = parse_fdl(fdl_text(service, clusters=clusters)).services[0].service
    assert result["clusters"] == {"peer": {"endpoint": "https://peer"}}


def test_suffix_and_prefix_become_lists() -> None:
    service = svc(output=[{"storage_provider": "minio", "path": "b/out", "suffix": ".png", "prefix": ["x"]}])
    out = parse_fdl(fdl_text(service)).services[0].service["output"][0]
    assert out["suffix"] == [".png"] and out["prefix"] == ["x"]
    bad = svc(output=[{"storage_provider": "minio", "path": "b/out", "suffix": [1]}])
    assert error_at(fdl_text(bad), "functions.oscar[0].c1.output[0].suffix") == "must be a list of strings"


# -- OSCAR's service JSON shape ---------------------------------------------------------------------


def oscar_get_response() -> dict:
    """What GET /system/services/<name> returns for a service (server fields included)."""
    return {
        "name": "grayify",
        "cluster_id": "my-cluster",
        "memory": "1Gi",
        "cpu": "1.0",
        "log_level": "CRITICAL",
        "image": "ghcr.io/grycap/imagemagick",
        "alpine": False,
        "token": "ab" * 32,
        "input": [{"storage_provider": "minio.default", "path": "grayify/in"}],
        "output": [{"storage_provider": "minio.default", "path": "grayify/out"}],
        "script": '#!/bin/bash\r\nconvert "$INPUT_FILE_PATH" x\r\n',
        "environment": {"variables": {"MODE": "fast"}},
        "storage_providers": {
            "minio": {
                "default": {
                    "endpoint": "https://minio.example.org",
                    "verify": True,
                    "access_key": "hidden",
                    "secret_key": "hidden",
                    "region": "us-east-1",
                }
            }
        },
        "owner": "cluster_admin",
        "namespace": "oscar-svc",
        "visibility": "private",
        "bucket_list": ["grayify"],
        "volume_status": {"enabled": False},
        "mount": {"storage_provider": "", "path": ""},
        "annotations": None,
        "image_pull_secrets": None,
        "future_field": {"kept": True},
    }


def test_service_json_from_get_can_be_applied() -> None:
    fdl = parse_fdl(json.dumps(oscar_get_response()))
    assert fdl.services == [ServiceEntry(None, fdl.services[0].service)]
    service = fdl.services[0].service
    for dropped in (
        "token",
        "owner",
        "namespace",
        "bucket_list",
        "volume_status",
        "storage_providers",
        "mount",
    ):
        assert dropped not in service
    assert service["script"] == '#!/bin/bash\nconvert "$INPUT_FILE_PATH" x\n'
    assert service["future_field"] == {"kept": True}
    assert service["cluster_id"] == "my-cluster"
    # idempotent: applying the normalised definition again changes nothing
    assert normalise_service(service) == service


def test_fdl_and_service_json_describe_the_same_service() -> None:
    from_fdl = load_fdl(EXAMPLE).services[0].service
    echoed = {**from_fdl, "token": "t", "owner": "o", "volume_status": {"enabled": False}}
    echoed["storage_providers"] = {
        **from_fdl["storage_providers"],
        "minio": {
            **from_fdl["storage_providers"]["minio"],
            "default": {"access_key": "hidden", "secret_key": "hidden"},
        },
    }
    assert parse_fdl(json.dumps(echoed)).services[0].service == from_fdl


def test_a_list_of_services_reports_each_by_index() -> None:
    good = oscar_get_response()
    bad = {**good, "name": "Bad"}
    del bad["image"]
    assert errors_of([good, bad]) == [
        (
            "[1].name",
            "'Bad' is not a valid service name: 1-39 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit",
        ),
        ("[1].image", "is required"),
    ]
    assert [e.service["name"] for e in parse_fdl([good, good]).services] == ["grayify", "grayify"]


def test_a_real_minio_default_is_kept() -> None:
    real = {"minio": {"default": {"endpoint": "http://x", "access_key": "A", "secret_key": "B"}}}
    service = normalise_service(svc(storage_providers=real))
    assert service["storage_providers"] == real


def test_normalise_service_is_pure() -> None:
    original = oscar_get_response()
    snapshot = json.loads(json.dumps(original))
    normalise_service(original, "x")
    assert original == snapshot
    with pytest.raises(FdlError) as info:
        normalise_service("nope", "body")  # type: ignore[arg-type]
    assert info.value.errors == [("body", "must be a service map, got a string")]


def test_normalise_service_inline_script_reads_relative_to_base_dir(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text("echo ok\n")
    result = normalise_service(svc(script="run.sh"), "s", base_dir=tmp_path, inline_script=True)
    assert result["script"] == "echo ok\n"
    with pytest.raises(FdlError) as info:
        normalise_service(svc(script="gone.sh"), "s", base_dir=tmp_path, inline_script=True)
    assert info.value.errors == [("s.script", f"script file not found: {tmp_path / 'gone.sh'}")]


def test_fdl_error_is_a_value_error_listing_every_problem() -> None:
    error = FdlError([("a.b", "first"), ("", "second")])
    assert isinstance(error, ValueError)
    assert str(error) == "a.b: first\nsecond"


# -- the example services in flows/services ----------------------------------------------------------


def load_example(name: str) -> dict:
    fdl = load_fdl(SERVICES / name / f"{name}.yaml")
    assert [e.cluster_id for e in fdl.services] == ["local"]
    service = fdl.services[0].service
    assert service["name"] == name
    return service


def run_script(service: dict, tmp_path: Path, body: bytes, name: str = "event-file-1") -> tuple[str, dict]:
    """Run the service's script the way OSCAR's supervisor does: /bin/sh, temp dirs, env."""
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    out_dir.mkdir()
    (in_dir / name).write_bytes(codec.decode_event_body(body))
    (tmp_path / "script.sh").write_text(service["script"])
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "INPUT_FILE_PATH": str(in_dir / name),
        "TMP_INPUT_DIR": str(in_dir),
        "TMP_OUTPUT_DIR": str(out_dir),
        **service.get("environment", {}).get("variables", {}),
    }
    proc = subprocess.run(
        ["/bin/sh", str(tmp_path / "script.sh")], env=env, capture_output=True, check=False, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    files = {str(p.relative_to(out_dir)): p.read_bytes() for p in out_dir.rglob("*") if p.is_file()}
    return proc.stdout.decode("utf-8"), files


def test_uppercase_example(tmp_path: Path) -> None:
    service = load_example("uppercase")
    assert service["log_level"] == "CRITICAL"
    body, _ = codec.encode_input("hello, señor 42\n")
    output, files = run_script(service, tmp_path, body)
    assert output == "HELLO, SEñOR 42\n" and files == {}


def test_compress_example_writes_one_binary_file(tmp_path: Path) -> None:
    service = load_example("compress")
    payload = bytes(range(256)) * 8
    output, files = run_script(service, tmp_path, base64.b64encode(payload), name="data.bin")
    assert list(files) == ["data.bin.gz"] and gzip.decompress(files["data.bin.gz"]) == payload
    text, kind = codec.encode_output(files)
    decoded = codec.decode_output(text + "\n", hint=kind)
    assert decoded.kind == "file" and gzip.decompress(decoded.data) == payload


def test_wordcount_example_is_storage_triggered(tmp_path: Path) -> None:
    service = load_example("wordcount")
    assert service["input"] == [{"storage_provider": "minio.default", "path": "wordcount/in"}]
    assert service["output"][0]["path"] == "wordcount/out"
    output, files = run_script(
        service, tmp_path, base64.b64encode(b"one two\nthree  four\tfive\n"), "notes.txt"
    )
    assert files == {"notes.txt.count": b"5\n"}
    assert "notes.txt: 5 words" in output


@pytest.mark.parametrize(
    ("name", "data", "check"),
    [
        ("uppercase", "ñandú rocks", lambda out: out.kind == "text" and out.text == "ñANDú ROCKS"),
        (
            "compress",
            b"\x00\x01" * 500,
            lambda out: out.kind == "file" and gzip.decompress(out.data) == b"\x00\x01" * 500,
        ),
    ],
)
def test_sync_examples_run_on_the_local_supervisor(tmp_path: Path, name: str, data, check) -> None:
    from bridge.local.supervisor import Supervisor

    supervisor = Supervisor(tmp_path / "work", lambda provider, service: None, timeout_s=60)
    body, _ = codec.encode_input(data)
    result = supervisor.run(load_example(name), body)
    assert result.succeeded, result.logs
    out = codec.decode_output(result.response, hint=result.output_kind)
    assert out.logs == []  # log_level CRITICAL: a clean body
    assert check(out), out


def test_mount_is_checked_like_an_io_entry() -> None:
    bad = svc(mount={"storage_provider": "nfs", "path": "b/data"})
    assert "unknown storage provider type" in error_at(
        fdl_text(bad), "functions.oscar[0].c1.mount.storage_provider"
    )
    good = normalise_service(svc(mount={"storage_provider": "minio", "path": "data"}))
    assert good["mount"] == {"storage_provider": "minio", "path": "demo/data"}


def test_fdl_without_base_dir_rejects_a_script_path() -> None:
    """Received over the network, an FDL naming its script file cannot be inlined."""
    text = "functions:\n  oscar:\n  - local:\n      name: up\n      image: alpine\n      script: script.sh\n"
    with pytest.raises(FdlError) as info:
        parse_fdl(text)
    (location, message), *_ = info.value.errors
    assert location == "functions.oscar[0].local.script"
    assert "script.sh" in message and "inline" in message


def test_fdl_without_base_dir_accepts_inline_script_text() -> None:
    text = "functions:\n  oscar:\n  - local:\n      name: up\n      image: alpine\n      script: echo hi\n"
    assert parse_fdl(text).services[0].service["script"] == "echo hi"
