"""`just stack`: the docker compose topology, natively, on this machine.

nginx (with `infra/nginx.conf`) on STACK_PORT in front of STACK_APIS API
processes, plus STACK_WORKERS `dramatiq` worker processes, all against
DATABASE_URL (PostgreSQL) and REDIS_URL. Migrates first. Ctrl-C or SIGTERM
stops everything: the API processes and workers get SIGTERM (they finish what
they are doing), nginx stops last.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from ferry.migrate import upgrade
from ferry.settings import load_settings

NGINX_CONF = Path(__file__).resolve().parent / "nginx.conf"
STOP_TIMEOUT_S = 30


def worker_command(threads: int, processes: int = 1) -> list[str]:
    """`dramatiq actors` (what `just worker` runs): one worker process by default."""
    return [
        sys.executable,
        "-m",
        "dramatiq",
        "actors",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nginx_binary() -> str:
    """nginx, installed from Debian's packages if it is missing."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    print("ferry stack: installing nginx (apt-get)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "nginx"], check=True, env=env)
    found = shutil.which("nginx", path="/usr/sbin:/usr/bin:/sbin")
    if not found:
        raise SystemExit("ferry stack: nginx is not installed and could not be installed")
    return found


def native_nginx_conf(api_ports: list[int], listen: str, workdir: Path) -> str:
    """infra/nginx.conf, with this machine's upstreams, address and scratch directory."""
    text = NGINX_CONF.read_text()
    servers = "\n        ".join(f"server 127.0.0.1:{port};" for port in api_ports)
    for old, new in (
        ("server api:8000;", servers),
        ("listen 8080;", f"listen {listen};"),
        ("/var/cache/nginx/ferry", str(workdir)),
    ):
        if old not in text:
            raise SystemExit(f"ferry stack: {NGINX_CONF} no longer contains {old!r}")
        text = text.replace(old, new)
    return text


def wait_healthy(base: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"ferry stack: {base} exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"ferry stack: {base} did not become healthy")


class Stack:
    def __init__(self) -> None:
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.stopping = threading.Event()

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(args, env=env)
        self.processes.append((name, process))
        print(f"ferry stack: {name} (pid {process.pid})", flush=True)
        return process

    def stop(self) -> None:
        """SIGTERM to the Ferry processes, wait for them, then nginx."""
        ferry = [(n, p) for n, p in self.processes if n != "nginx"]
        nginx = [(n, p) for n, p in self.processes if n == "nginx"]
        for group in (ferry, nginx):
            for _, process in group:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            for name, process in group:
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    print(f"ferry stack: {name} did not stop; killing it", flush=True)
                    process.kill()
                    process.wait()


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


def start_ferry(stack: Stack, apis: int, workers: int) -> list[int]:
    """The API processes (healthy before it returns) and the workers; the API ports."""
    api_ports = [free_port() for _ in range(apis)]
    for number, api_port in enumerate(api_ports, 1):
        env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(api_port)}
        args = [sys.executable, "-m", "ferry.serve"]
        wait_healthy(
            f"http://127.0.0.1:{api_port}", stack.start(f"api {number} on :{api_port}", args, env)
        )
    threads = env_int("WORKER_THREADS", 32)
    for number in range(1, workers + 1):
        stack.start(f"worker {number}", worker_command(threads), dict(os.environ))
    return api_ports


def start_nginx(stack: Stack, api_ports: list[int], listen: str, workdir: Path) -> None:
    conf = workdir / "nginx.conf"
    conf.write_text(native_nginx_conf(api_ports, listen, workdir))
    for scratch in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / scratch).mkdir()
    args = [nginx_binary(), "-p", str(workdir), "-c", str(conf), "-g", "daemon off;"]
    stack.start("nginx", args, dict(os.environ))


def watch(stack: Stack) -> None:
    """Until Ctrl-C or SIGTERM (or nginx dies). An API process or worker that exits is
    left down, as in compose without a restart policy: nginx sends clients to the others."""
    while not stack.stopping.wait(0.5):
        for name, process in stack.processes:
            if process.poll() is not None:
                print(f"ferry stack: {name} exited with {process.returncode}", flush=True)
                if name == "nginx":
                    stack.stopping.set()
        stack.processes = [(n, p) for n, p in stack.processes if p.poll() is None or n == "nginx"]


def main() -> None:
    settings = load_settings()
    if settings.redis_url is None or settings.is_sqlite:
        raise SystemExit(
            "ferry stack: set DATABASE_URL (postgresql+asyncpg://...) and REDIS_URL: "
            "several processes share them"
        )
    listen = f"{os.environ.get('STACK_HOST', '127.0.0.1')}:{env_int('STACK_PORT', 8080)}"
    apis, workers = env_int("STACK_APIS", 2), env_int("STACK_WORKERS", 2)
    nginx_binary()  # before anything starts: it may need installing
    upgrade(settings.database_url)
    stack = Stack()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stack.stopping.set())
    workdir = Path(tempfile.mkdtemp(prefix="ferry-stack-"))
    try:
        api_ports = start_ferry(stack, apis, workers)
        start_nginx(stack, api_ports, listen, workdir)
        print(f"ferry stack: http://{listen} ({apis} API, {workers} workers, nginx)", flush=True)
        watch(stack)
    finally:
        print("ferry stack: stopping", flush=True)
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print("ferry stack: stopped", flush=True)


if __name__ == "__main__":
    main()
