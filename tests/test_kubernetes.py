"""cron/kubernetes-cronjob.yaml: valid against the Kubernetes schemas, a command line katapult-etl takes,
and a configuration file katapult-etl reads."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from etl.cli import build_parser
from etl.configfile import load

MANIFEST = Path(__file__).resolve().parent.parent / "cron" / "kubernetes-cronjob.yaml"
# The oldest Kubernetes whose schemas have podFailurePolicy and a CronJob's timeZone as stable, and the newest.
KUBERNETES_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())


def documents() -> dict[str, dict]:
    return {document["kind"]: document for document in yaml.safe_load_all(MANIFEST.read_text()) if document}


def container() -> dict:
    return documents()["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("kind", ["ConfigMap", "CronJob"])
def test_the_manifest_is_valid_kubernetes(kind, version):
    kubernetes_validate.validate(documents()[kind], version, strict=True)


def test_it_runs_every_scope_hourly_one_at_a_time():
    spec = documents()["CronJob"]["spec"]
    job = spec["jobTemplate"]["spec"]

    assert (spec["schedule"], spec["concurrencyPolicy"]) == ("17 * * * *", "Forbid")
    assert container()["command"] + container()["args"] == [
        "katapult-etl",
        "sync",
        "--all",
        "--json",
        "--if-locked",
        "skip",
    ]
    assert job["podFailurePolicy"]["rules"][0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "katapult-etl", "operator": "In", "values": [2]},
    }
    assert job["template"]["spec"]["restartPolicy"] == "Never"


def test_every_option_it_uses_exists():
    args = build_parser().parse_args(container()["args"])  # an unknown option exits 2 here

    assert (args.all, args.json, args.if_locked) == (True, True, "skip")


def test_its_configuration_file_is_one_katapult_etl_reads(tmp_path):
    config_map = documents()["ConfigMap"]
    env = {variable["name"]: variable.get("value") for variable in container()["env"]}
    mounts = {mount["name"]: mount["mountPath"] for mount in container()["volumeMounts"]}
    ((name, text),) = config_map["data"].items()
    path = tmp_path / name
    path.write_text(text)

    config = load(path)  # which refuses a token written into it

    assert env["KATAPULT_ETL_CONFIG"] == f"{mounts['config']}/{name}"
    assert [scope.name for scope in config.scopes] == ["public", "acme", "beta"]
    token_files = [scope.token_file for scope in config.scopes if scope.token_file]
    assert token_files and all(path.parent == Path(mounts["tokens"]) for path in token_files)
