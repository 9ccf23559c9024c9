"""The listening socket a worker serves on: TCP_NODELAY, and SO_REUSEPORT when several workers
each bind their own (the kernel then spreads new connections across them)."""

from __future__ import annotations

import socket

from gestor.settings import parse_bind


def listening_socket(bind: str, *, reuse_port: bool, backlog: int = 2048) -> socket.socket:
    host, port = parse_bind(bind)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock
