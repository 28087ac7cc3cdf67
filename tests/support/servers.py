"""Real local peers for the job handlers: an HTTP server for webhooks, an SMTP server for email."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.processes import free_port


@dataclass
class Hooks:
    """Requests received by the webhook server, and how it answers them.

    `/status/<code>` answers that code; `/slow?ms=N` waits N ms and answers 200;
    `/flaky/<key>?fail=N` answers 503 N times for each key, then 200;
    `/nul/<code>` answers that code with a NUL character in its body;
    `/redirect/<code>?to=URL` answers that code with `Location: URL`.
    """

    base: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [request for request in self.requests if request["path"] == path]


@contextmanager
def webhook_server() -> Iterator[Hooks]:
    hooks = Hooks()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            url = urlsplit(self.path)
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with hooks.lock:
                hooks.requests.append(
                    {
                        "method": self.command,
                        "path": url.path,
                        "headers": dict(self.headers),
                        "body": body,
                    }
                )
            status = 200
            payload = b""
            headers: dict[str, str] = {}
            parts = url.path.strip("/").split("/")
            if parts[0] in ("status", "nul", "redirect"):
                status = int(parts[1])
            if parts[0] == "nul":
                payload = b'{"text": "before\x00after"}'
            elif parts[0] == "redirect":
                headers["Location"] = query["to"]
            elif parts[0] == "slow":
                time.sleep(int(query.get("ms", "1000")) / 1000)
            elif parts[0] == "flaky":
                with hooks.lock:
                    seen = hooks.failures.get(parts[1], 0)
                    hooks.failures[parts[1]] = seen + 1
                status = 503 if seen < int(query.get("fail", "1")) else 200
            payload = payload or f'{{"status": {status}}}'.encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    hooks.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hooks
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Mailbox:
    url: str = ""
    messages: list[Message] = field(default_factory=list)


@contextmanager
def smtp_server() -> Iterator[Mailbox]:
    mailbox = Mailbox()

    class Collect:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            mailbox.messages.append(message_from_bytes(envelope.original_content or b""))
            return "250 OK"

    # The name it greets with, given: by default it asks the resolver for this machine's.
    controller = Controller(
        Collect(), hostname="127.0.0.1", port=free_port(), server_hostname="smtp.test"
    )
    controller.start()
    mailbox.url = f"smtp://127.0.0.1:{controller.port}"
    try:
        yield mailbox
    finally:
        controller.stop()
