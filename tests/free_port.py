#!/usr/bin/env python3
"""Free loopback ports, for every test and benchmark that starts a server.

    from free_port import free_port, free_ports   (tests/ on sys.path)
    tests/free_port.py [N]                         prints N distinct ports (default 1)

A port is free at the time of asking; a server that then fails to bind it
(another process took it) should ask again, as servers.Nginx does."""

import socket
import sys

LOOPBACK = "127.0.0.1"


def free_ports(n):
    """n distinct loopback ports nothing listens on: all bound at once, so
    the kernel cannot hand out the same one twice."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind((LOOPBACK, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port():
    """A loopback port nothing listens on (at the time of asking)."""
    return free_ports(1)[0]


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    print(" ".join(str(p) for p in free_ports(count)))
