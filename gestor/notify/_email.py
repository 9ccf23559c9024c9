"""E-mail to operators over SMTP: the standard library's `smtplib`, one connection per message,
in a worker thread (`trio.to_thread`). Alarms worth an e-mail are few, so a connection per
message costs nothing that matters, and `smtplib` does STARTTLS, implicit TLS and AUTH already:
an async SMTP library would add a dependency for no gain here.

Each message carries a `Message-ID` made from its outbox row, so a receiver (or a person) can
tell a re-sent copy (after a crash between the send and its record) from a new alarm."""

from __future__ import annotations

import email.utils
import smtplib
import ssl
from email.message import EmailMessage

import attrs
import trio

from gestor.notify._config import EmailSettings
from gestor.notify._messages import Message

__all__ = ["SendFailed", "SmtpSender"]


class SendFailed(Exception):
    """An attempt did not deliver; `final` when retrying cannot change that."""

    def __init__(self, reason: str, *, final: bool = False) -> None:
        super().__init__(reason)
        self.final = final


@attrs.define
class SmtpSender:
    settings: EmailSettings

    async def send(self, to: str, message: Message, message_id: str) -> None:
        """Send `message` to `to`; raises `SendFailed` (final for a permanent 5xx refusal)."""
        mail = EmailMessage()
        mail["From"] = self.settings.sender
        mail["To"] = to
        mail["Subject"] = message.subject
        mail["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
        domain = self.settings.sender.rpartition("@")[2] or "gestor"
        mail["Message-ID"] = f"<{message_id}@{domain}>"
        mail.set_content(message.body)
        await trio.to_thread.run_sync(self._send, mail, abandon_on_cancel=True)

    def _send(self, mail: EmailMessage) -> None:  # in a worker thread
        s = self.settings
        try:
            smtp: smtplib.SMTP
            if s.tls == "tls":
                smtp = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=s.timeout,
                                        context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.timeout)
            with smtp:
                if s.tls == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if s.username:
                    smtp.login(s.username, s.password)
                smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise SendFailed(f"SMTP refused the recipient: {codes}",
                             final=all(c >= 500 for c in codes)) from None
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            raise SendFailed(f"SMTP refused the message: {exc.smtp_code}",
                             final=exc.smtp_code >= 500) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise SendFailed(f"SMTP authentication failed: {exc.smtp_code}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise SendFailed(f"SMTP server {s.smtp_host}:{s.smtp_port}: "
                             f"{type(exc).__name__}: {exc}") from None
