"""Sending e-mail: the one-time codes that unlock an order (SMTP_URL, AFTERSALES_MAIL_FROM).

`SMTP_URL` is `smtp://user:password@host:port` (STARTTLS when the server offers it; add
`?starttls=true` to require it, `?starttls=false` never to use it) or `smtps://...` (TLS from
the first byte, port 465 by default). User and password are URL-encoded if they hold `@`, `:`
or `/`. Nothing here logs an address, a code or the password.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

if TYPE_CHECKING:
    from bot.config import Settings

log = logging.getLogger(__name__)

_YES = {"true", "yes", "1", "required"}
_NO = {"false", "no", "0", "never"}


class MailError(RuntimeError):
    """The message could not be handed to the SMTP server."""


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False  # smtps: TLS from the first byte
    start_tls: bool | None = None  # None: when the server offers it

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        """Read SMTP_URL; a ValueError names what is wrong (never the password)."""
        parts = urlsplit(url.strip())
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError("SMTP_URL must start with smtp:// or smtps://, e.g. smtp://user:password@mail.example:587")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("SMTP_URL has a port that is not a number from 1 to 65535") from None
        if not parts.hostname:
            raise ValueError("SMTP_URL names no host, e.g. smtp://user:password@mail.example:587")
        options = {name: values[-1].lower() for name, values in parse_qs(parts.query).items()}
        unknown = sorted(set(options) - {"starttls"})
        if unknown:
            raise ValueError(f"SMTP_URL has unknown options {unknown} (known: starttls)")
        start_tls: bool | None = None
        if "starttls" in options:
            if options["starttls"] not in _YES | _NO:
                raise ValueError("SMTP_URL's starttls option is true or false")
            start_tls = options["starttls"] in _YES
        use_tls = parts.scheme == "smtps"
        if use_tls and start_tls:
            raise ValueError("SMTP_URL: smtps:// is TLS already; starttls=true is for smtp://")
        return cls(
            host=parts.hostname,
            port=port or (465 if use_tls else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=use_tls,
            start_tls=False if use_tls else start_tls,
        )


class Mailer:
    """Hands plain-text messages to one SMTP server, one connection per message."""

    def __init__(self, server: SmtpServer, sender: str, *, timeout: float = 10.0) -> None:
        self.server = server
        self.sender = sender
        self.timeout = timeout

    async def send(self, to: str, subject: str, body: str) -> None:
        """Send one message; raises MailError when the server cannot be reached or refuses it."""
        message = self._message(to, subject, body)
        try:
            async with self._client() as client:
                await client.send_message(message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise MailError(f"could not send mail: {type(error).__name__}") from None

    async def rehearse(self, subject: str, body: str) -> None:
        """The motions of `send` without a message: the same session (connect, greet, TLS, log
        in), a message built, and as many round trips, with MAIL FROM taken back by RSET instead
        of a recipient and DATA. What the bot does when a code would go to an order that does not
        exist, so that the answer takes about as long (and fails the same way) as for one that
        does. Raises MailError like `send`."""
        self._message("nobody@invalid", subject, body).as_bytes()
        try:
            async with self._client() as client:
                await client.mail(self.sender.rpartition("<")[2].rstrip(">") or self.sender)
                await client.noop()
                await client.noop()
                await client.rset()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise MailError(f"could not reach the mail server: {type(error).__name__}") from None

    def _message(self, to: str, subject: str, body: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2].rstrip(">") or None)
        message.set_content(body)
        return message

    def _client(self) -> aiosmtplib.SMTP:
        server = self.server
        return aiosmtplib.SMTP(
            hostname=server.host,
            port=server.port,
            username=server.username,
            password=server.password,
            use_tls=server.use_tls,
            start_tls=server.start_tls,
            timeout=self.timeout,
        )


def mailer_from(settings: Settings) -> Mailer | None:
    """The mailer SMTP_URL and AFTERSALES_MAIL_FROM describe; None when the bot does not mail
    (a lock then goes to a person). `aftersales check` reports a bad URL before this runs."""
    if not (settings.smtp_url and settings.mail_from):
        return None
    return Mailer(SmtpServer.from_url(settings.smtp_url), settings.mail_from)
