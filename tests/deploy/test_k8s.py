"""deploy/k8s: every built-in resource passes kubernetes-validate (strict); the custom resources (ServiceMonitor,
CloudNativePG Cluster and Pooler) pass the subset schemas in crd_schemas.py; the pieces fit together."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.crd_schemas import SCHEMAS
from tests.support.gateway import ROOT, run_lsd

K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"  # the oldest minor release still supported upstream when this was written


def _documents() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, doc)
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def _validate(doc: dict[str, Any]) -> None:
    schema = SCHEMAS.get((doc["apiVersion"], doc["kind"]))
    if schema is not None:
        jsonschema.validate(doc, schema)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def _kind(kind: str, name: str | None = None) -> dict[str, Any]:
    (doc,) = [
        d for _, d in _documents() if d["kind"] == kind and d["metadata"]["name"] == (name or d["metadata"]["name"])
    ]
    return doc


@pytest.mark.parametrize("doc", [d for _, d in _documents()], ids=[f"{p.name}:{d['kind']}" for p, d in _documents()])
def test_manifest_is_valid(doc: dict[str, Any]) -> None:
    _validate(doc)


def test_every_kind_is_shipped() -> None:
    kinds = {d["kind"] for _, d in _documents()}
    assert kinds >= {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "Secret",
        "Job",
        "ServiceMonitor",
        "Cluster",
    }


def test_validation_rejects_mistakes() -> None:
    deployment = copy.deepcopy(_kind("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(deployment)
    monitor = copy.deepcopy(_kind("ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        _validate(monitor)
    cluster = copy.deepcopy(_kind("Cluster"))
    cluster["spec"]["instances"] = "three"
    with pytest.raises(jsonschema.ValidationError):
        _validate(cluster)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"}
    images = {i["name"] for i in kustomization["images"]}
    for _, doc in _documents():
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []):
            assert container["image"] in images


def _lsd_config() -> dict[str, Any]:
    return tomllib.loads(_kind("ConfigMap")["data"]["lsd.toml"])


def test_the_configmap_passes_lsd_config_check(tmp_path: Path) -> None:
    path = tmp_path / "lsd.toml"
    path.write_text(_kind("ConfigMap")["data"]["lsd.toml"])
    result = run_lsd("config", "check", str(path))
    assert result.returncode == 0, result.stderr


def test_the_deployment_outlasts_the_drain_and_probes_the_gateway() -> None:
    pod = _kind("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    gateway = _lsd_config()["gateway"]
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    drain = pre_stop + gateway["graceful_timeout_s"] + gateway["observability"]["shutdown_flush_timeout_s"]
    assert pod["terminationGracePeriodSeconds"] > drain
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/status"  # no restarts during a database outage
    assert container["args"][0] == "serve"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/etc/lsd" in mounts and gateway["observability"]["spool_dir"].startswith("/var/lib/lsd")


def test_urls_secret_and_selectors_fit() -> None:
    secret = _kind("Secret", "lsd-database")["stringData"]
    assert {"LSD_DATABASE_URL", "LSD_SESSION_DATABASE_URL", "LSD_READ_DATABASE_URL"} <= set(secret)
    assert "pooler" in secret["LSD_DATABASE_URL"]  # transaction pooling...
    assert _lsd_config()["gateway"]["database"]["prepared_statements"] is False  # ...so nothing is prepared
    assert "pooler" not in secret["LSD_SESSION_DATABASE_URL"]  # advisory locks need a real session
    labels = _kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget", "ServiceMonitor"):
        spec = _kind(kind)["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert selector.items() <= labels.items(), kind
    assert _kind("Job")["spec"]["template"]["spec"]["containers"][0]["args"][0] == "migrate"
    assert _kind("HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 2
