"""`email`: sends the message over SMTP to SMTP_URL, or appends it to the local outbox.

SMTP_URL is `smtp://[user:password@]host[:port]` (STARTTLS when the server offers
it) or `smtps://...` (TLS from the start). Without it, messages go to the mbox
file OUTBOX_PATH, so the embedded default needs no mail server.
"""

from __future__ import annotations

import mailbox
import smtplib
import ssl
import threading
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlsplit

from ferry.jobs.errors import PermanentError
from ferry.jobs.payloads import EmailPayload
from ferry.jobs.registry import job, worker_settings
from ferry.settings import Settings

SMTP_TIMEOUT_S = 30
SENDER = "Ferry <ferry@localhost>"
_outbox_lock = threading.Lock()


def build_message(payload: EmailPayload, sender: str = SENDER) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = payload.to
    message["Subject"] = payload.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="ferry.local")
    message.set_content(payload.body)
    return message


def send_smtp(message: EmailMessage, smtp_url: str) -> None:
    url = urlsplit(smtp_url)
    if url.scheme not in ("smtp", "smtps") or not url.hostname:
        raise PermanentError(
            f"SMTP_URL must be smtp://host[:port] or smtps://..., not {url.scheme}://"
        )
    if url.scheme == "smtps":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            url.hostname,
            url.port or 465,
            timeout=SMTP_TIMEOUT_S,
            context=ssl.create_default_context(),
        )
    else:
        client = smtplib.SMTP(url.hostname, url.port or 25, timeout=SMTP_TIMEOUT_S)
    with client:
        if url.scheme == "smtp" and client.has_extn("starttls"):
            client.starttls(context=ssl.create_default_context())
        if url.username:
            client.login(unquote(url.username), unquote(url.password or ""))
        try:
            client.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentError(f"recipient refused: {exc.recipients}") from exc


def append_to_outbox(message: EmailMessage, path: str) -> None:
    with _outbox_lock:
        box = mailbox.mbox(path)
        try:
            box.lock()
            box.add(message)
            box.flush()
        finally:
            box.unlock()
            box.close()


def deliver(payload: EmailPayload, settings: Settings) -> dict[str, str]:
    try:
        message = build_message(payload)
        if settings.smtp_url:
            send_smtp(message, settings.smtp_url)
            via = "smtp"
        else:
            append_to_outbox(message, settings.outbox_path)
            via = "outbox"
    except ValueError as exc:
        # The email package refused a header (a line break in it, text it cannot
        # encode): the same message fails the same way on every attempt.
        raise PermanentError(f"the message cannot be sent as it is: {exc}") from exc
    return {"messageId": str(message["Message-ID"]), "to": payload.to, "via": via}


@job("email", time_limit_s=120)
def run(payload: EmailPayload) -> dict[str, str]:
    return deliver(payload, worker_settings())
