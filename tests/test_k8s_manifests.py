"""Check the Kubernetes manifests in deploy/k8s/ against the API schemas and the app.

The schemas come with the kubernetes-validate package, so no cluster is needed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app

ROOT = Path(__file__).resolve().parent.parent
MANIFEST_DIR = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "Dockerfile"

# Kubernetes minor version whose API schemas the manifests are checked against.
# The newest API used, autoscaling/v2, is GA since 1.23.
KUBERNETES_VERSION = "1.30"

LIVENESS_PATH = "/health/live"
READINESS_PATH = "/health/ready"
ENV_PREFIX = "WAVECLS_"

Manifest = dict[str, Any]


def load_documents() -> list[tuple[str, Manifest]]:
    """Return (id, document) for every YAML document under MANIFEST_DIR."""
    documents = []
    for path in sorted(MANIFEST_DIR.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is None:
                continue
            name = document.get("metadata", {}).get("name", "?")
            documents.append((f"{path.name}:{document.get('kind')}/{name}", document))
    return documents


DOCUMENTS = load_documents()


def find_one(kind: str) -> Manifest:
    """Return the only document of ``kind``."""
    matches = [document for _, document in DOCUMENTS if document["kind"] == kind]
    assert len(matches) == 1, (
        f"expected one {kind} in {MANIFEST_DIR}, found {len(matches)}"
    )
    return matches[0]


def containers() -> Iterator[Manifest]:
    """Yield each container of the Deployment's pod template."""
    yield from find_one("Deployment")["spec"]["template"]["spec"]["containers"]


def app_container() -> Manifest:
    """Return the Deployment's container named wavecls."""
    matches = [c for c in containers() if c["name"] == "wavecls"]
    assert len(matches) == 1, "expected one container named wavecls in the Deployment"
    return matches[0]


def dockerfile_uid() -> int:
    """Return the numeric uid of the Dockerfile's last USER instruction."""
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert users, f"{DOCKERFILE} has no USER instruction"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), f"USER {users[-1]} in {DOCKERFILE} is not a numeric uid"
    return int(uid)


def test_manifest_dir_has_expected_kinds() -> None:
    kinds = sorted(document["kind"] for _, document in DOCUMENTS)
    assert kinds == [
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
    ]


@pytest.mark.parametrize(
    "document", [document for _, document in DOCUMENTS], ids=[i for i, _ in DOCUMENTS]
)
def test_manifest_valid_against_schema(document: Manifest) -> None:
    # strict=True also rejects fields the schema does not define, such as typos.
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_schema_check_rejects_unknown_field() -> None:
    broken = yaml.safe_load(yaml.safe_dump(find_one("Service")))
    broken["spec"]["targetPrt"] = 8000
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_probes_use_health_routes() -> None:
    container = app_container()
    assert container["startupProbe"]["httpGet"]["path"] == LIVENESS_PATH
    assert container["livenessProbe"]["httpGet"]["path"] == LIVENESS_PATH
    assert container["readinessProbe"]["httpGet"]["path"] == READINESS_PATH


def test_health_routes_served_by_app() -> None:
    paths = create_app(Settings()).openapi()["paths"]
    assert "get" in paths.get(LIVENESS_PATH, {}), sorted(paths)
    assert "get" in paths.get(READINESS_PATH, {}), sorted(paths)


def test_probes_before_model_loads() -> None:
    # Without `with`, TestClient skips the lifespan and no model is loaded, which
    # is the app's state before the model loads and once shutdown starts.
    # Liveness must not depend on the model, and readiness must fail.
    client = TestClient(create_app(Settings()))
    live = client.get(LIVENESS_PATH)
    ready = client.get(READINESS_PATH)
    assert live.status_code == 200, live.text
    assert ready.status_code == 503, ready.text


def test_probes_target_app_port() -> None:
    container = app_container()
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert ports.get("http") == int(env["WAVECLS_PORT"])
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "http", probe


def test_env_names_are_settings_fields() -> None:
    fields = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    for item in app_container()["env"]:
        assert item["name"] in fields, f"{item['name']} is not a Settings field"


def test_env_binds_all_interfaces() -> None:
    env = {item["name"]: item.get("value") for item in app_container()["env"]}
    assert env["WAVECLS_HOST"] == "0.0.0.0"


def test_containers_set_requests_and_limits() -> None:
    # A CPU-utilisation HPA can only compute utilisation against a CPU request.
    for container in containers():
        resources = container["resources"]
        assert "cpu" in resources["requests"], container["name"]
        assert "memory" in resources["requests"], container["name"]
        assert "cpu" in resources["limits"], container["name"]
        assert "memory" in resources["limits"], container["name"]


def test_pod_runs_as_dockerfile_user() -> None:
    pod_security = find_one("Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == dockerfile_uid()


def test_container_filesystem_read_only() -> None:
    security = app_container()["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_service_selects_deployment_pods() -> None:
    service = find_one("Service")
    pod_labels = find_one("Deployment")["spec"]["template"]["metadata"]["labels"]
    for key, value in service["spec"]["selector"].items():
        assert pod_labels.get(key) == value, key

    port_names = {port["name"] for port in app_container()["ports"]}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in port_names, port


def test_pdb_selects_deployment_pods() -> None:
    selector = find_one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    pod_labels = find_one("Deployment")["spec"]["template"]["metadata"]["labels"]
    for key, value in selector.items():
        assert pod_labels.get(key) == value, key


def test_hpa_targets_deployment() -> None:
    hpa = find_one("HorizontalPodAutoscaler")
    deployment = find_one("Deployment")
    target = hpa["spec"]["scaleTargetRef"]
    assert target["kind"] == "Deployment"
    assert target["apiVersion"] == deployment["apiVersion"]
    assert target["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2
    assert [metric["resource"]["name"] for metric in hpa["spec"]["metrics"]] == ["cpu"]


def test_deployment_leaves_replicas_to_hpa() -> None:
    # kubectl apply would reset the HPA's replica count to a value set here.
    assert "replicas" not in find_one("Deployment")["spec"]
