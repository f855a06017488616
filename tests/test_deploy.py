"""The deployment files parse and agree with each other and with the code."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def manifests() -> list[dict]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_kubernetes_manifests_kinds_and_references():
    docs = manifests()
    by_kind = {d["kind"]: d for d in docs}
    assert set(by_kind) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                            "ConfigMap", "Secret"}
    deployment = by_kind["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert by_kind["Service"]["spec"]["selector"].items() <= labels.items()
    assert by_kind["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = by_kind["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].endswith("scoring-service:0.1.0")
    refs = {next(iter(e.values()))["name"] for e in container["envFrom"]}
    assert refs == {by_kind["ConfigMap"]["metadata"]["name"], by_kind["Secret"]["metadata"]["name"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # every SCORING_ variable the manifests set is a real setting
    from scoring_service.config import Config

    names = set(by_kind["ConfigMap"]["data"]) | set(by_kind["Secret"]["stringData"])
    assert {n[len("SCORING_"):] for n in names if n not in ("SCORING_WORKERS",)} <= set(dir(Config))


def test_compose_services_and_references():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"mongo1", "mongo2", "mongo3", "mongo-init", "app1", "app2", "nginx"} <= set(services)
    for name, service in services.items():
        depends = service.get("depends_on", [])
        for dependency in depends if isinstance(depends, list) else depends.keys():
            assert dependency in services, (name, dependency)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(".") or source in compose["volumes"], (name, volume)
            if source.startswith("."):
                assert (DEPLOY / source).exists()
    url = services["app1"]["environment"]["SCORING_DATABASE_URL"]
    assert all(f"mongo{i}:27017" in url for i in (1, 2, 3)) and "replicaSet=rs0" in url
    assert "--replSet" in services["mongo1"]["command"] and "rs0" in services["mongo1"]["command"]
    assert services["app1"]["build"]["dockerfile"] == "deploy/Dockerfile"
    upstreams = re.findall(r"server (\w+):8000", (DEPLOY / "nginx.conf").read_text())
    assert upstreams == ["app1", "app2"]


def test_dockerfile_copies_what_exists_and_runs_gunicorn_as_non_root():
    text = (DEPLOY / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (ROOT / source).exists(), source
    assert re.search(r"^USER scoring$", text, re.M)
    assert '"gunicorn", "-c"' in text
    assert "EXPOSE 8000" in text and "SCORING_PORT=8000" in text


def test_gunicorn_config_is_importable_and_builds_the_app(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    monkeypatch.setenv("SCORING_WORKERS", "3")
    config = runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))
    assert config["workers"] == 3 and config["worker_class"] == "sync"
    assert config["bind"].endswith(":8000") and config["timeout"] >= 30
    assert callable(config["child_exit"])
    assert (tmp_path / "metrics").is_dir()
    module, call = config["wsgi_app"].split(":")
    assert module == "scoring_service" and call == "create_app()"


def test_scaling_notes_exist_with_a_capacity_estimate():
    text = (DEPLOY / "SCALING.md").read_text()
    for topic in ("replica set", "shard", "capacity"):
        assert topic in text.lower()
