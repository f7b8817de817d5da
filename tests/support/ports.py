"""Free loopback ports for services started by tests."""

from __future__ import annotations

import random
import socket

from libs.common.settings import PORT_BLOCK_SIZE


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_block(size: int = PORT_BLOCK_SIZE) -> int:
    """First port of `size` consecutive free ports (the mesh's layout: G, the services on
    G+1..G+5, the gateway's gRPC and HTTP servers on G+6 and G+7)."""
    for _ in range(200):
        # Below the kernel's ephemeral range (32768+), so no outgoing connection anywhere on
        # the machine takes one of the block's ports between this check and the bind.
        base = random.randint(20000, 32768 - size)
        if all(_is_free(base + i) for i in range(size)):
            return base
    raise RuntimeError("no free port block")
