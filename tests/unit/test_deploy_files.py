"""The deployment files agree with each other and with the code (no Docker engine here:
`tests/integration/deploy/test_stack.py` runs the same nginx.conf natively)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_runs_the_topology_the_docs_promise() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker", "nginx"}
    assert services["api"]["deploy"]["replicas"] == 2
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["worker"]["command"][:2] == ["dramatiq", "actors"]
    assert services["migrate"]["command"] == ["python", "-m", "ferry.migrate"]
    assert "--appendonly" in services["redis"]["command"]
    assert "healthcheck" in services["postgres"]
    # Replicas scale: nothing pins a name or a host port but nginx.
    for name in ("api", "worker"):
        assert "container_name" not in services[name] and "ports" not in services[name]
    assert services["nginx"]["ports"] == ["8080:8080"]
    mounted = services["nginx"]["volumes"][0].split(":")[0]
    assert (ROOT / mounted).resolve() == ROOT / "infra" / "nginx.conf"


def test_nginx_proxies_to_the_api_service_and_streams_events() -> None:
    conf = (ROOT / "infra" / "nginx.conf").read_text()
    assert "server api:8000;" in conf  # the compose service and the image's PORT
    assert "listen 8080;" in conf
    events = conf[conf.index("location = /events") :]
    assert "proxy_buffering off;" in events.split("}")[0]
    socket = conf[conf.index("location = /ws") :].split("}")[0]
    assert "$http_upgrade" in socket and "proxy_read_timeout 1h;" in socket


def test_the_dockerfile_copies_what_exists_and_runs_unprivileged() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.MULTILINE):
        for path in source.split():
            assert (ROOT / path).exists(), path
    assert "USER ferry" in dockerfile
    assert 'CMD ["python", "-m", "ferry.serve"]' in dockerfile
