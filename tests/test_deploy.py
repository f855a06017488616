"""The deployment files parse and agree with each other and with the code."""

from __future__ import annotations

import json
import os
import re
import runpy
import signal
import shutil
import subprocess
from pathlib import Path

import pytest
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
    by_kind = {d["kind"]: d for d in docs if d["metadata"]["name"] == "scoring-service"}
    assert set(by_kind) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                            "ConfigMap", "Secret"}
    assert sorted(d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap") == [
        "scoring-service", "scoring-service-nginx"]
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
    assert "127.0.0.1:8000/healthz" in " ".join(container["livenessProbe"]["exec"]["command"])
    # every SCORING_ variable the manifests set is a real setting
    from scoring_service.config import Config

    names = set(by_kind["ConfigMap"]["data"]) | set(by_kind["Secret"]["stringData"])
    assert {n[len("SCORING_"):] for n in names if n not in ("SCORING_WORKERS", "SCORING_THREADS")} <= set(dir(Config))


def nginx_sidecar_config() -> str:
    return next(d for d in manifests() if d["metadata"]["name"] == "scoring-service-nginx")["data"]["default.conf"]


def test_kubernetes_pods_put_a_buffering_proxy_in_front_of_the_app():
    docs = manifests()
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    service = next(d for d in docs if d["kind"] == "Service")
    pod = deployment["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    app, nginx = containers["app"], containers["nginx"]
    assert "nginx" in nginx["image"]
    # the Service, the readiness probe and the scraper reach the pod through nginx only
    nginx_port = next(p for p in nginx["ports"] if p["name"] == "http")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert all(p["name"] != "http" for p in app["ports"])
    assert app["readinessProbe"]["httpGet"]["port"] == "http"
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(
        nginx_port["containerPort"])
    # the app listens on the pod's loopback only, so nobody can skip the proxy (and spoof X-Forwarded-For)
    assert {"name": "SCORING_HOST", "value": "127.0.0.1"} in app["env"]
    app_port = app["ports"][0]["containerPort"]
    # nginx's configuration comes from the ConfigMap and points at the app
    mount = next(m for m in nginx["volumeMounts"] if m["mountPath"].startswith("/etc/nginx/"))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == "scoring-service-nginx"
    conf = nginx_sidecar_config()
    assert re.search(rf"^\s*listen {nginx_port['containerPort']};", conf, re.M)
    assert re.findall(r"server (\S+);", conf) == [f"127.0.0.1:{app_port}"]
    assert "proxy_pass http://app;" in conf
    # it buffers: whole heads within a time limit, whole bodies before the app sees them
    assert re.search(r"client_header_timeout \d+s;", conf) and re.search(r"client_body_timeout \d+s;", conf)
    assert "proxy_request_buffering on;" in conf and "client_max_body_size 2m;" in conf
    # exactly one trusted hop: nginx appends the address it saw, the app believes that one
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in conf
    configmap = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "scoring-service")
    assert configmap["data"]["SCORING_TRUSTED_PROXIES"] == "1"


def test_nginx_configurations_are_valid(tmp_path):
    """``nginx -t`` on the sidecar's and the compose balancer's configuration, where nginx is installed."""
    nginx = shutil.which("nginx")
    if nginx is None:
        pytest.skip("nginx is not installed")
    compose_conf = (DEPLOY / "nginx.conf").read_text()
    for name, conf in (("sidecar", nginx_sidecar_config()),
                       ("compose", re.sub(r"server app\d:8000", "server 127.0.0.1:8000", compose_conf))):
        (tmp_path / f"{name}.conf").write_text(conf)
        main = tmp_path / f"{name}-main.conf"
        temp_paths = " ".join(f"{kind}_temp_path {tmp_path}/{kind};"
                              for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        main.write_text(f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log; events {{}}\n"
                        f"http {{ access_log off; {temp_paths} include {tmp_path}/{name}.conf; }}\n")
        result = subprocess.run([nginx, "-t", "-q", "-c", str(main), "-p", str(tmp_path), "-e",
                                 str(tmp_path / "error.log")], capture_output=True, text=True)
        assert result.returncode == 0, (name, result.stderr)


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
    # the apps publish no port: every request comes through nginx, the one hop they trust
    for name in ("app1", "app2"):
        assert "ports" not in services[name]
    assert services["app1"]["environment"]["SCORING_TRUSTED_PROXIES"] == "1"
    conf = (DEPLOY / "nginx.conf").read_text()
    assert "client_header_timeout" in conf and "proxy_request_buffering on;" in conf
    # rate limit counts shared by both app servers
    assert services["app1"]["environment"]["SCORING_RATELIMIT_STORAGE_URI"].startswith("mongodb://mongo1:27017")


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
    assert config["workers"] == 3 and config["worker_class"] == "gthread" and config["threads"] >= 4
    assert callable(config["post_worker_init"])
    assert config["bind"].endswith(":8000") and config["timeout"] >= 30
    assert callable(config["child_exit"])
    assert (tmp_path / "metrics").is_dir()
    module, call = config["wsgi_app"].split(":")
    assert module == "scoring_service" and call == "create_app()"


def test_scaling_notes_exist_with_a_capacity_estimate():
    text = (DEPLOY / "SCALING.md").read_text()
    for topic in ("replica set", "shard", "capacity"):
        assert topic in text.lower()


def nginx_configs() -> dict[str, str]:
    return {"sidecar": nginx_sidecar_config(), "compose": (DEPLOY / "nginx.conf").read_text()}


def test_nginx_drops_idle_upstream_connections_before_gunicorn_does(monkeypatch):
    """Before: nginx kept idle connections to the app for its default 60 s while gunicorn closes them after
    its keepalive (5 s), so nginx could send a request on a connection the app was closing (a 502 for a POST,
    which the sidecar does not retry)."""
    from scoring_service.ops.server import gunicorn_settings

    for name in ("SCORING_SECRET_KEY", "SCORING_DATABASE_URL", "SCORING_METRICS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    app_keepalive = gunicorn_settings()["keepalive"]
    for name, conf in nginx_configs().items():
        upstream = re.search(r"upstream \w+ \{(.*?)\}", conf, re.S).group(1)
        timeout = re.search(r"keepalive_timeout (\d+)s;", upstream)
        assert timeout and int(timeout.group(1)) < app_keepalive, name


def test_nginx_answers_its_own_refusals_with_the_json_error_body():
    """Before: a body over client_max_body_size, a request line over nginx's buffers or the app being down
    got nginx's HTML page, while the README promises JSON errors (the service's own 413 is JSON)."""
    for name, conf in nginx_configs().items():
        pages = {int(at): (int(code), body) for at, code, body
                 in re.findall(r"location = /\.errors/(\d{3}) \{ return (\d{3}) '(.*?)\\n'; \}", conf)}
        codes = {int(c) for line in re.findall(r"error_page ([\d ]+) /\.errors/", conf) for c in line.split()}
        assert {400, 413, 414, 502, 504} <= codes, name
        for code in codes - {494}:  # nginx's "headers too large", answered as 400
            returned, body = pages[code]
            assert returned == code and json.loads(body)["code"] == code, (name, code)
        assert re.search(r"location \^~ /\.errors/ \{\s*internal;\s*default_type application/json;", conf), name


def test_nginx_refusals_are_json_through_a_running_nginx(tmp_path):
    """The sidecar and compose configurations in a real nginx (where installed), in front of no app: an
    oversized body, a request line over nginx's buffers, the app down and (compose) /metrics answer JSON."""
    nginx = shutil.which("nginx")
    if nginx is None:
        pytest.skip("nginx is not installed")
    import socket
    import urllib.error
    import urllib.request

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    dead = free_port()  # nothing listens there: the app is down
    for name, conf in nginx_configs().items():
        port = free_port()
        conf = re.sub(r"server (app\d|127\.0\.0\.1):8000", f"server 127.0.0.1:{dead}", conf)
        conf = re.sub(r"listen \d+;", f"listen 127.0.0.1:{port};", conf)
        folder = tmp_path / name
        folder.mkdir()
        (folder / "site.conf").write_text(conf)
        temp_paths = " ".join(f"{kind}_temp_path {folder}/{kind};"
                              for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (folder / "main.conf").write_text(
            f"pid {folder}/nginx.pid; error_log {folder}/error.log; events {{}}\n"
            f"http {{ access_log off; {temp_paths} include {folder}/site.conf; }}\n")
        subprocess.run([nginx, "-c", str(folder / "main.conf"), "-p", str(folder), "-e", str(folder / "error.log")],
                       check=True, capture_output=True, timeout=30)
        try:
            base = f"http://127.0.0.1:{port}"
            requests = [(urllib.request.Request(f"{base}/api/v1/rounds/r/surveys/batch", data=b"x" * (3 * 2**20),
                                                method="POST"), 413),
                        (urllib.request.Request(f"{base}/api/v1/{'a' * 9000}"), 414),
                        (urllib.request.Request(f"{base}/readyz"), 502)]
            if name == "compose":
                requests.append((urllib.request.Request(f"{base}/metrics"), 403))
            for request, code in requests:
                with pytest.raises(urllib.error.HTTPError) as refused:
                    urllib.request.urlopen(request, timeout=10)
                assert refused.value.code == code, (name, code)
                assert refused.value.headers["Content-Type"] == "application/json", (name, code)
                assert json.loads(refused.value.read())["code"] == code, (name, code)
        finally:
            pid = int((folder / "nginx.pid").read_text())
            os.kill(pid, signal.SIGQUIT)


def test_gunicorn_config_refuses_a_count_it_cannot_run_with(tmp_path, monkeypatch):
    """Before: SCORING_WORKERS=0 in the container became 2 × cores + 1 workers, SCORING_THREADS=0 workers that
    failed to boot."""
    from scoring_service.config import ConfigError

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    for name in ("SCORING_WORKERS", "SCORING_THREADS", "SCORING_WORKER_CONNECTIONS"):
        monkeypatch.setenv(name, "0")
        with pytest.raises(ConfigError, match=f"{name} must be at least 1, got 0"):
            runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))
        monkeypatch.delenv(name)
