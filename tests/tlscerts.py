"""Throw-away TLS certificates for tests: a certificate authority made by `trustme`, a server
certificate it signed for the loopback addresses, written as PEM files, and a client context
that trusts that authority alone."""

from __future__ import annotations

import ssl
from pathlib import Path

import attrs
import trustme


@attrs.frozen
class Certificates:
    ca: trustme.CA
    certfile: Path  # the server's certificate, then its chain
    keyfile: Path  # its private key
    cafile: Path  # the authority's certificate, for clients

    def client_context(self) -> ssl.SSLContext:
        """A client's context that trusts only the test authority (and checks host names)."""
        return ssl.create_default_context(cafile=str(self.cafile))


def make_certificates(directory: Path, *names: str) -> Certificates:
    """A fresh authority and a certificate for `names` (default: 127.0.0.1, localhost), signed
    by it, as PEM files in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert(*(names or ("127.0.0.1", "localhost")))
    certfile, keyfile, cafile = (directory / "cert.pem", directory / "key.pem",
                                 directory / "ca.pem")
    with certfile.open("wb") as f:
        for blob in server.cert_chain_pems:
            f.write(blob.bytes())
    server.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))
    return Certificates(ca, certfile, keyfile, cafile)
