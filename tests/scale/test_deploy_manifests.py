"""The Kubernetes manifests under deploy/k8s/ and the compose file's settings, checked
without a cluster: each object against the Kubernetes API schema shipped in the official
client package (strict: unknown fields, wrong types and missing required fields fail),
plus the rules the mesh relies on (native gRPC probes, matching ports, real settings)."""

from __future__ import annotations

import importlib
from pathlib import Path

import kubernetes.client
import pydantic
import pytest
import yaml

from libs.common.settings import (
    GATEWAY_GRPC_PORT_OFFSET,
    PUBLIC_SERVICES,
    SERVICE_PORT_OFFSETS,
    VidsynthSettings,
)
from services.validator.config import ValidatorSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SETTINGS_MODULES = (
    "libs.common.settings",
    "libs.common.metrics",
    "services.gateway.config",
    "services.gateway.stream_tokens",
    "services.progress.config",
    "services.session.config",
    "services.validator.config",
    "services.cleanup.config",
    "services.stage_runner.config",
    "services.stage_runner.media.config",
)
MESH_PORT = 50051
CONTROLLER_CONFIG = "ingress-nginx-config.example.yaml"


def manifests() -> list[tuple[str, dict]]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        documents += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def model_for(document: dict) -> type[pydantic.BaseModel]:
    version = document["apiVersion"].rpartition("/")[2]
    return getattr(kubernetes.client, f"{version.capitalize()}{document['kind']}")


def known_settings() -> set[str]:
    for module in SETTINGS_MODULES:
        importlib.import_module(module)
    names: set[str] = set()
    pending = list(VidsynthSettings.__subclasses__())
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        names |= {f"VIDSYNTH_{field.upper()}" for field in cls.model_fields}
    return names


def by_kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in manifests() if doc["kind"] == kind}


@pytest.mark.parametrize(("file", "document"), manifests(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_object_matches_the_kubernetes_api_schema(file: str, document: dict) -> None:
    model = model_for(document)
    model.model_validate(document)  # raises on any unknown field, wrong type or missing field
    if document["kind"] != "Namespace" and file != CONTROLLER_CONFIG:  # that one is the controller's
        assert document["metadata"]["namespace"] == "vidsynth", file


def test_the_schema_check_catches_mistakes() -> None:
    deployment = by_kind("Deployment")["session"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    broken = {**container, "readinessProbe": {"grpc": {"service": "no port"}}}
    typo = {**container, "livenessprobe": container["livenessProbe"]}
    for bad in (broken, typo):
        with pytest.raises(pydantic.ValidationError):
            kubernetes.client.V1Container.model_validate(bad)


def test_kustomization_applies_every_manifest_but_the_examples() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    files = {p.name for p in K8S.glob("*.yaml") if not p.name.endswith(".example.yaml")} - {
        "kustomization.yaml"
    }
    assert sorted(listed) == sorted(files)


def test_mesh_services_have_native_grpc_probes_on_their_port_and_a_matching_service() -> None:
    deployments, services = by_kind("Deployment"), by_kind("Service")
    for service, offset in SERVICE_PORT_OFFSETS.items():
        name = service.replace("_", "-")
        pod = deployments[name]["spec"]["template"]
        assert (
            pod["metadata"]["labels"].items() >= deployments[name]["spec"]["selector"]["matchLabels"].items()
        )
        container = pod["spec"]["containers"][0]
        assert container["args"] == [f"services.{service}"]
        port = MESH_PORT + offset
        assert [p["containerPort"] for p in container["ports"]] == [port]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"] == {"port": port}, (name, probe)
        assert services[name]["spec"]["selector"] == deployments[name]["spec"]["selector"]["matchLabels"]
        assert [(p["port"], p["targetPort"]) for p in services[name]["spec"]["ports"]] == [(port, port)]
    # Replicas share work through Redis and the data volume.
    assert deployments["stage-runner"]["spec"]["replicas"] >= 2
    assert deployments["progress"]["spec"]["replicas"] >= 2
    data = by_kind("PersistentVolumeClaim")["vidsynth-data"]
    assert data["spec"]["accessModes"] == ["ReadWriteMany"]


def test_config_names_only_real_settings_and_points_at_the_services() -> None:
    settings = known_settings()
    config = by_kind("ConfigMap")["vidsynth-config"]["data"]
    assert set(config) <= settings, set(config) - settings
    services = by_kind("Service")
    for service, offset in SERVICE_PORT_OFFSETS.items():
        host, _, port = config[f"VIDSYNTH_{service.upper()}_ADDR"].partition(":")
        assert host in services and int(port) == MESH_PORT + offset
    assert config["VIDSYNTH_GATEWAY_ADDR"] == f"gateway:{MESH_PORT + GATEWAY_GRPC_PORT_OFFSET}"
    assert config["VIDSYNTH_REDIS_URL"].startswith("redis://redis:")
    secret = by_kind("Secret")["vidsynth-secrets"]["stringData"]
    assert set(secret) <= settings


def test_compose_file_names_only_real_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    settings = known_settings()
    for name, service in compose["services"].items():
        environment = service.get("environment") or {}
        unknown = {key for key in environment if key.startswith("VIDSYNTH_")} - settings
        assert not unknown, (name, unknown)


def service_port(services: dict[str, dict], backend: dict) -> int:
    """The Service port number an Ingress backend names (by number or by name)."""
    port = backend["service"]["port"]
    ports = services[backend["service"]["name"]]["spec"]["ports"]
    if "number" in port:
        assert port["number"] in [p["port"] for p in ports]
        return port["number"]
    return next(p["port"] for p in ports if p["name"] == port["name"])


def test_the_grpc_ingress_routes_each_public_service_and_only_those() -> None:
    ingress = by_kind("Ingress")["grpc"]
    services = by_kind("Service")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    assert ingress["spec"]["tls"], "ingress-nginx serves gRPC over TLS only"
    paths = {p["path"]: p["backend"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
    for service, full_name in PUBLIC_SERVICES.items():
        backend = paths.pop(f"/{full_name}/")
        assert backend["service"]["name"] == service.replace("_", "-")
        assert service_port(services, backend) == MESH_PORT + SERVICE_PORT_OFFSETS[service]
    gateway_ports = [
        p["containerPort"]
        for p in by_kind("Deployment")["gateway"]["spec"]["template"]["spec"]["containers"][0]["ports"]
    ]
    for name in (
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ):
        backend = paths.pop(f"/{name}/")
        assert backend["service"]["name"] == "gateway"
        assert service_port(services, backend) == MESH_PORT + GATEWAY_GRPC_PORT_OFFSET
    assert MESH_PORT + GATEWAY_GRPC_PORT_OFFSET in gateway_ports
    assert paths == {}  # nothing else, above all no internal service


def test_the_http_ingress_streams_uploads_up_to_the_upload_cap() -> None:
    annotations = by_kind("Ingress")["http"]["metadata"]["annotations"]
    validator = ValidatorSettings()
    largest = max(validator.validator_face_max_bytes, validator.validator_voice_max_bytes)
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-body-size"]) == largest + 64 * 1024
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(annotations["nginx.ingress.kubernetes.io/limit-connections"]) > 0
    controller = yaml.safe_load((K8S / CONTROLLER_CONFIG).read_text())["data"]
    assert controller["client-header-timeout"] == "20"
