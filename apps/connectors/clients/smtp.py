"""SMTP under the same address rule as outbound HTTP: the relay's name is resolved and checked when the
socket opens, and the socket goes to the checked address (STARTTLS still verifies the name)."""

import smtplib
import socket

from django.core.mail.backends.smtp import EmailBackend

from . import http


class GuardedSMTP(smtplib.SMTP):
    def _get_socket(self, host, port, timeout):
        _, _, _, _, address = http.resolve_checked(host, port)[0]
        return socket.create_connection(address[:2], timeout, self.source_address)


class GuardedEmailBackend(EmailBackend):
    """Django's SMTP backend over GuardedSMTP (STARTTLS only: implicit-TLS relays are not offered)."""

    @property
    def connection_class(self):
        return GuardedSMTP
