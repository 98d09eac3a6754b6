"""The deployment files: Kubernetes manifests against the API schemas, the compose files and Dockerfiles checked
statically (no image is built here), every TRIAGE_* name resolved to a real setting, and `triage migrate`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from server.cli import app
from server.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_FILES = sorted((DEPLOY / "k8s").glob("*.yaml"))
COMPOSE_FILES = [DEPLOY / "compose.yaml", DEPLOY / "compose.gpu.yaml"]
# The oldest Kubernetes we document and the newest the validator knows.
K8S_VERSIONS = ["1.30.0", "1.37.0"]


def setting_error(env_name: str) -> str | None:
    """None when TRIAGE_A__B names a field of Settings (nested sections through `__`), else why not."""
    if not env_name.startswith("TRIAGE_"):
        return f"{env_name}: not a TRIAGE_ name"
    parts = env_name[len("TRIAGE_") :].lower().split("__")
    model: type[BaseModel] = Settings
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return f"{env_name}: {'.'.join(parts[: i + 1])} is not a setting"
        annotation = field.annotation
        if i < len(parts) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return f"{env_name}: {'.'.join(parts[: i + 1])} has no sub-settings"
            model = annotation
    return None


def test_setting_checker_catches_misspellings() -> None:
    assert setting_error("TRIAGE_STORAGE__DATA_KEY") is None
    assert setting_error("TRIAGE_DATABASE_MIGRATE_ON_START") is None
    assert setting_error("TRIAGE_STORAGE__DATAKEY") is not None
    assert setting_error("TRIAGE_DATABASE_URL__X") is not None
    assert setting_error("TRIAGE_CACHES__BACKEND") is not None


@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_k8s_manifest_valid(path: Path, version: str) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError naming the field


def _k8s_docs() -> list[dict[str, Any]]:
    return [d for p in K8S_FILES for d in yaml.safe_load_all(p.read_text()) if d]


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    pod = spec.get("template", spec.get("jobTemplate", {}).get("spec", {}).get("template", {})).get("spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def test_k8s_shape() -> None:
    docs = _k8s_docs()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for needed in [
        ("Deployment", "triage-api"),
        ("Service", "triage-api"),
        ("HorizontalPodAutoscaler", "triage-api"),
        ("Deployment", "triage-vllm"),
        ("Service", "triage-vllm"),
        ("Job", "triage-migrate"),
        ("ConfigMap", "triage"),
        ("Secret", "triage"),
        ("Secret", "triage-data-key"),
    ]:
        assert needed in kinds, needed
    external = {
        d["metadata"]["name"] for d in docs if d["kind"] == "Service" and d["spec"].get("type") == "ExternalName"
    }
    assert external == {"triage-postgres", "triage-redis"}

    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    vllm = _containers(by_name[("Deployment", "triage-vllm")])[0]
    assert vllm["resources"]["requests"]["nvidia.com/gpu"] == vllm["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert vllm["readinessProbe"]["httpGet"]["path"] == "/health"
    assert vllm["livenessProbe"]["httpGet"]["path"] == "/health"
    hpa = by_name[("HorizontalPodAutoscaler", "triage-api")]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"

    settings_yaml = yaml.safe_load(by_name[("ConfigMap", "triage")]["data"]["triage.yaml"])
    settings = Settings(**settings_yaml)  # the ConfigMap is a valid settings file (extra keys forbidden)
    assert settings.database_migrate_on_start is False

    # Every referenced ConfigMap, Secret (and key), PVC and command exists.
    secrets = {d["metadata"]["name"]: set(d["stringData"]) for d in docs if d["kind"] == "Secret"}
    config_maps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    pvcs = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    commands = _cli_commands()
    for doc in docs:
        for c in _containers(doc):
            for env in c.get("env", []):
                if env["name"].startswith("TRIAGE_"):
                    assert setting_error(env["name"]) is None, setting_error(env["name"])
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]], ref
            cmd = c.get("command", [])
            if cmd[:1] == ["triage"]:
                assert cmd[1] in commands, cmd
        spec = doc.get("spec", {})
        pod = spec.get("template", spec.get("jobTemplate", {}).get("spec", {}).get("template", {})).get("spec", {})
        for vol in pod.get("volumes", []):
            if "configMap" in vol:
                assert vol["configMap"]["name"] in config_maps
            if "secret" in vol:
                assert vol["secret"]["secretName"] in secrets
            if "persistentVolumeClaim" in vol:
                assert vol["persistentVolumeClaim"]["claimName"] in pvcs


def _cli_commands() -> set[str]:
    names = set()
    for info in app.registered_commands:
        names.add(info.name or (info.callback.__name__.replace("_", "-") if info.callback else ""))
    names |= {g.name for g in app.registered_groups if g.name}
    return names


def _compose(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file(path: Path) -> None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        env = {"TRIAGE_DATA_KEY": "x", "PATH": "/usr/bin:/bin"}
        done = subprocess.run([docker, "compose", "-f", str(path), "config", "-q"], capture_output=True, env=env)
        assert done.returncode == 0, done.stderr.decode()
    data = _compose(path)
    services: dict[str, Any] = data["services"]
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        deps = svc.get("depends_on", {})
        for dep in deps:
            assert dep in services, f"{name} depends on unknown {dep}"
        if name != "migrate":
            assert "healthcheck" in svc and svc["healthcheck"]["test"], f"{name}: no healthcheck"
        for port in svc.get("ports", []):
            assert re.fullmatch(r"(127\.0\.0\.1:)?\d+:\d+", str(port)), f"{name}: port {port}"
        for vol in svc.get("volumes", []):
            source = str(vol).split(":")[0]
            if source.startswith("."):
                assert (path.parent / source).resolve().is_file(), f"{name}: {source} missing"
            else:
                assert source in data.get("volumes", {}), f"{name}: volume {source} not declared"
        for env_name in svc.get("environment", {}):
            if env_name.startswith("TRIAGE_"):
                assert setting_error(env_name) is None, setting_error(env_name)
        for secret in svc.get("secrets", []):
            assert secret in data["secrets"]
        if "build" in svc:
            assert (path.parent / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve().is_file()
        command = svc.get("command", [])
        if command[:1] == ["triage"]:
            assert command[1] in _cli_commands()

    # Migrations once, before every API replica, which must not migrate themselves.
    assert "triage migrate" in " ".join(services["migrate"]["command"])
    assert services["migrate"]["restart"] == "no"
    api = services["api"]
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert api["environment"]["TRIAGE_DATABASE_MIGRATE_ON_START"] == "false"
    assert "/ready" in " ".join(api["healthcheck"]["test"])
    assert {"postgres", "redis"} <= set(services)


def test_gpu_compose_scale_out() -> None:
    data = _compose(DEPLOY / "compose.gpu.yaml")
    services = data["services"]
    vllm = [n for n in services if n.startswith("vllm-")]
    assert len(vllm) >= 2
    devices = []
    for name in vllm:
        svc = services[name]
        dev = svc["deploy"]["resources"]["reservations"]["devices"][0]
        assert dev["capabilities"] == ["gpu"]
        devices += dev["device_ids"]
        assert "/health" in " ".join(svc["healthcheck"]["test"])
    assert len(set(devices)) == len(devices), "two vLLM replicas on one GPU"
    urls = yaml.safe_load(services["api"]["environment"]["TRIAGE_VLLM__URLS"])
    assert urls == [f"http://{n}:8001" for n in vllm]
    assert {"nginx", "prometheus", "grafana"} <= set(services)
    lb = (DEPLOY / "nginx" / "lb.conf").read_text()
    assert "server api:8000" in lb
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert prom["rule_files"] == ["/etc/prometheus/alerts.yml"]
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert jobs["triage"]["dns_sd_configs"][0]["names"] == ["api"]
    assert sorted(jobs["vllm"]["static_configs"][0]["targets"]) == sorted(f"{n}:8001" for n in vllm)


def _dockerfile(name: str) -> list[tuple[str, str]]:
    text = (ROOT / name).read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfile(name: str) -> None:
    instructions = _dockerfile(name)
    bases = [arg.split()[0] for op, arg in instructions if op == "FROM"]
    assert bases
    for base in bases:
        image, _, tag = base.partition(":")
        assert tag and tag != "latest", f"{base}: base image not pinned by tag"
    assert any(op == "HEALTHCHECK" for op, _ in instructions)
    runs = " ".join(arg for op, arg in instructions if op == "RUN")
    assert "triage setup" in runs
    assert "download.pytorch.org/whl/cpu torch==2.13.0" in runs  # the CPU wheel, never CUDA


def test_cpu_image() -> None:
    instructions = _dockerfile("Dockerfile")
    users = [arg for op, arg in instructions if op == "USER"]
    assert users and not users[-1].startswith(("root", "0"))
    assert [op for op, _ in instructions].index("USER") < [op for op, _ in instructions].index("CMD")
    assert any(op == "HEALTHCHECK" and "/ready" in arg for op, arg in instructions)
    assert ("EXPOSE", "8000") in instructions
    cmd = yaml.safe_load(next(arg for op, arg in instructions if op == "CMD"))
    assert cmd[0] == "triage" and cmd[1] in _cli_commands() and "0.0.0.0" in cmd
    env = " ".join(arg for op, arg in instructions if op == "ENV")
    assert "TRIAGE_AUTH__REQUIRED=true" in env
    for name in re.findall(r"(TRIAGE_[A-Z_]+)=", env):
        assert setting_error(name) is None, setting_error(name)


def test_gpu_image() -> None:
    instructions = _dockerfile("Dockerfile.gpu")
    bases = [arg.split()[0] for op, arg in instructions if op == "FROM"]
    assert bases[-1].startswith("vllm/vllm-openai:v")
    runs = " ".join(arg for op, arg in instructions if op == "RUN")
    assert "triage vllm-args" in runs
    assert any(op == "HEALTHCHECK" and "/health" in arg for op, arg in instructions)


def test_migrate_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "t.db"
    monkeypatch.setenv("TRIAGE_DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.setenv("TRIAGE_STORAGE__DATA_KEY_FILE", str(tmp_path / "no.key"))
    result = CliRunner().invoke(app, ["migrate"])
    assert result.exit_code == 0, result.output
    import sqlite3

    head = sorted(p.name for p in (ROOT / "server" / "store" / "migrations" / "versions").glob("0*.py"))[-1][:4]
    assert sqlite3.connect(db).execute("select version_num from alembic_version").fetchone() == (head,)
    assert not (tmp_path / "no.key").exists()  # migrations need no data key and create none

    monkeypatch.setenv("TRIAGE_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/x")
    result = CliRunner().invoke(app, ["migrate"])
    assert result.exit_code == 1 and "migration failed" in result.output
