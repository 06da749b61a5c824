"""The deployment: every Kubernetes manifest is valid YAML on its own and valid against the Kubernetes schemas
(kubernetes-validate, offline), the KEDA and Prometheus-Operator resources carry the fields their CRDs need,
the invariants the deployment guide promises hold, the Grafana dashboard only plots metrics the service
exports, and the images' entry points run from the installed package as the Dockerfile and manifests call them."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dockerfile
import httpx
import kubernetes_validate
import pytest
import yaml

from acecoder_reward.sandbox_worker.queue_keys import QueueKeys
from acecoder_reward.service.metrics import Metrics
from loadtest.queue_processes import RedisServer
from tests.conftest import REPO, free_port

K8S = REPO / "deploy" / "kubernetes"
K8S_VERSION = "1.30.0"
CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor"}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend((path.name, d) for d in yaml.safe_load_all(path.read_text()) if d is not None)
    return docs


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [d for _, d in _documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


def _pod(deployment: str) -> dict[str, Any]:
    spec: dict[str, Any] = _one("Deployment", deployment)["spec"]["template"]["spec"]
    return spec


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


@pytest.mark.parametrize(("source", "doc"), [(s, d) for s, d in _documents() if d["kind"] not in
                                              CRD_KINDS | {"Kustomization"}],
                         ids=lambda v: v if isinstance(v, str) else f"{v['kind']}/{v['metadata']['name']}")
def test_manifest_is_valid_against_the_kubernetes_schema(source: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_schema_check_can_fail() -> None:
    deployment = json.loads(json.dumps(_one("Deployment", "acecoder-worker")))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_keda_scaled_object_follows_the_queue() -> None:
    scaled = _one("ScaledObject", "acecoder-worker")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "acecoder-worker"
    assert set(scaled["spec"]) <= {"scaleTargetRef", "minReplicaCount", "maxReplicaCount", "pollingInterval",
                                   "cooldownPeriod", "triggers", "advanced", "fallback", "idleReplicaCount"}
    (trigger,) = scaled["spec"]["triggers"]
    prefix = _one("ConfigMap", "acecoder-settings")["data"]["ACECODER_QUEUE_PREFIX"]
    meta = trigger["metadata"]
    assert trigger["type"] == "redis-streams"
    assert meta["stream"] == QueueKeys(prefix).jobs
    # KEDA's redis-streams parameters; a consumerGroup would switch it from XLEN to the pending-entries count.
    assert set(meta) <= {"address", "host", "port", "stream", "streamLength", "databaseIndex", "enableTLS",
                         "unsafeSsl"}
    assert int(meta["streamLength"]) > 0 and meta["address"].startswith("acecoder-redis.")
    auth = _one("TriggerAuthentication", trigger["authenticationRef"]["name"])
    (ref,) = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "password" and ref["key"] in _one("Secret", ref["name"])["stringData"]


def test_service_monitor_scrapes_the_metrics_ports() -> None:
    monitor = _one("ServiceMonitor", "acecoder-reward")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics" and set(endpoint) <= {"port", "path", "interval", "scheme"}
    selected = [d for _, d in _documents() if d["kind"] == "Service"
                and monitor["spec"]["selector"]["matchLabels"].items() <= d["metadata"]["labels"].items()
                and any(p["name"] == endpoint["port"] for p in d["spec"]["ports"])]
    assert {s["metadata"]["name"] for s in selected} == {"acecoder-gateway", "acecoder-vllm"}


def test_every_container_has_probes_and_resources() -> None:
    for _, doc in _documents():
        if doc["kind"] != "Deployment":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            where = f"{doc['metadata']['name']}/{container['name']}"
            assert "livenessProbe" in container, where
            assert "readinessProbe" in container or "startupProbe" in container, where
            assert {"requests", "limits"} <= set(container["resources"]), where


def test_workers_are_hardened() -> None:
    pod = _pod("acecoder-worker")
    assert pod["automountServiceAccountToken"] is False
    assert _one("ServiceAccount", pod["serviceAccountName"])["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "SYS_ADMIN" in container["securityContext"]["capabilities"]["add"]
    scratch = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}["/tmp"]
    assert "emptyDir" in {v["name"]: v for v in pod["volumes"]}[scratch]
    assert container["livenessProbe"]["exec"]["command"] == ["acecoder-reward", "worker-health"]


def test_worker_grace_period_exceeds_the_drain() -> None:
    drain = float(_one("ConfigMap", "acecoder-settings")["data"]["ACECODER_WORKER_DRAIN_S"])
    assert _pod("acecoder-worker")["terminationGracePeriodSeconds"] >= drain + 10


def test_network_policy_lets_workers_reach_redis_only() -> None:
    policy = _one("NetworkPolicy", "acecoder-worker")["spec"]
    worker_labels = _one("Deployment", "acecoder-worker")["spec"]["template"]["metadata"]["labels"]
    redis_labels = _one("Deployment", "acecoder-redis")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= worker_labels.items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"} and policy["ingress"] == []
    to_redis, to_dns = policy["egress"]
    assert to_redis["to"][0]["podSelector"]["matchLabels"].items() <= redis_labels.items()
    assert to_redis["ports"] == [{"protocol": "TCP", "port": 6379}]
    assert {p["port"] for p in to_dns["ports"]} == {53}


def test_vllm_gets_a_gpu_a_model_cache_and_a_long_startup() -> None:
    pod = _pod("acecoder-vllm")
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30 * 60  # a 32B download and load
    assert any("persistentVolumeClaim" in v for v in pod["volumes"])
    assert "--runner" in container["args"] and "pooling" in container["args"]


def test_gateway_is_non_root_autoscaled_and_budgeted() -> None:
    pod = _pod("acecoder-gateway")
    assert pod["securityContext"]["runAsNonRoot"] is True
    uid = re.search(r"useradd --uid (\d+)", (REPO / "Dockerfile").read_text())
    assert uid is not None and pod["securityContext"]["runAsUser"] == int(uid.group(1))  # a user the image has
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert _one("HorizontalPodAutoscaler", "acecoder-gateway")["spec"]["scaleTargetRef"]["name"] == "acecoder-gateway"
    for name in ("acecoder-gateway", "acecoder-worker", "acecoder-vllm"):
        selector = _one("PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"]
        assert selector.items() <= _one("Deployment", name)["spec"]["template"]["metadata"]["labels"].items()


def test_grafana_dashboard_plots_exported_metrics() -> None:
    dashboard = json.loads((REPO / "deploy" / "grafana" / "acecoder-reward.json").read_text())
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    exported = {m.name + suffix for m in Metrics().registry.collect() for suffix in suffixes.get(m.type, [""])}
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"\b(acecoder_[a-z_]+)", target["expr"])}
    assert used and used <= exported, used - exported
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("requests", "latency", "batch", "queue time", "outcomes", "kills", "depth", "reclaims",
                  "dead letters"):
        assert topic in titles, topic


def test_vllm_image_adds_the_plugin_to_the_official_server() -> None:
    commands = dockerfile.parse_file(str(REPO / "Dockerfile.vllm"))
    assert commands[0].cmd == "FROM" and commands[0].value[0].startswith("vllm/vllm-openai:v")
    workdir, steps = "", []
    for c in commands:
        workdir = c.value[0] if c.cmd == "WORKDIR" else workdir
        if c.cmd == "RUN":
            steps += [("install", workdir)] if "pip install --no-cache-dir --no-deps ." in c.value[0] else []
            steps += [("check", workdir)] if "import acecoder_reward.models.vllm_plugin" in c.value[0] else []
    # The plugin installs, then its import check runs from /, away from the copied sources (so it imports the
    # installed package).
    assert [s for s, _ in steps] == ["install", "check"] and steps[1][1] == "/"


# --- the image's entry points, as the Dockerfile and manifests call them ------------------------------------------


def _image_command(container_args: list[str]) -> list[str]:
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", (REPO / "Dockerfile").read_text(),
                                      re.MULTILINE).group(1))  # type: ignore[union-attr]
    return [str(Path(sys.executable).parent / entrypoint[0]), *entrypoint[1:], *container_args]


def test_entry_points_run_as_the_image_calls_them(tmp_path: Path) -> None:
    cmd = re.search(r"^CMD (\[.*\])$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    assert cmd is not None and json.loads(cmd.group(1)) == _pod("acecoder-gateway")["containers"][0]["args"]
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ACECODER_REDIS_URL": redis.url,
           "ACECODER_PORT": str(port), "ACECODER_WORKER_HEARTBEAT_S": "0.25", "ACECODER_WORKER_HEARTBEAT_TTL_S": "2"}
    worker_args = _pod("acecoder-worker")["containers"][0]["args"]
    gateway = subprocess.Popen(_image_command(["serve"]), env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    worker = subprocess.Popen(_image_command(worker_args), env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        probe = _pod("acecoder-worker")["containers"][0]["livenessProbe"]["exec"]["command"]
        deadline = time.monotonic() + 60
        while subprocess.run(_image_command(probe[1:]), env=env, capture_output=True, check=False).returncode:
            assert time.monotonic() < deadline and worker.poll() is None, "worker never healthy"
            time.sleep(0.5)
        while True:  # healthy, and it has seen the worker's heartbeat (until then a request is a 503)
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                if health.status_code == 200 and health.json().get("workers", 0) >= 1:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and gateway.poll() is None, "gateway never healthy"
            time.sleep(0.3)
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/rewards", timeout=60,
                            json={"items": [{"response": "def f():\n    return 1", "tests": ["assert f() == 1"]}]})
        assert answer.status_code == 200 and answer.json()["rewards"] == [1.0]
        worker.send_signal(signal.SIGTERM)  # what the kubelet sends: drain, hand back, exit 0
        assert worker.wait(45) == 0
    finally:
        for proc in (gateway, worker):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        redis.stop()
