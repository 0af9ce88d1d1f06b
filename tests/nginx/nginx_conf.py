#!/usr/bin/env python3
"""Writes DIR/nginx.conf from tests/nginx/nginx.conf.in: the one nginx
configuration of the system tests (servers.Nginx) and the benchmarks
(tests/nginx/start.sh).

    tests/nginx/nginx_conf.py DIR PORT [--access-log]   prints the file's path"""

import os
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().with_name("nginx.conf.in")
LOOPBACK = "127.0.0.1"


def write_conf(directory, port, access_log=False, host=LOOPBACK):
    """DIR/nginx.conf listening on host:port, serving DIR/www; with
    access_log, requests are logged to DIR/access.log in the tide format."""
    directory = Path(directory).resolve()
    (directory / "www").mkdir(parents=True, exist_ok=True)
    fill = {
        "@DIR@": str(directory),
        "@HOST@": host,
        "@PORT@": str(port),
        # the workers read DIR (mode 0700 under pytest): as root they must
        # run as root too, else they could not open its files
        "@USER@": "user root;" if os.geteuid() == 0 else "",
        "@ACCESS_LOG@": f"{directory}/access.log tide" if access_log else "off",
    }
    text = TEMPLATE.read_text()
    for key, value in fill.items():
        text = text.replace(key, value)
    conf = directory / "nginx.conf"
    conf.write_text(text)
    return conf


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4) or (len(sys.argv) == 4 and sys.argv[3] != "--access-log"):
        sys.exit("usage: nginx_conf.py DIR PORT [--access-log]")
    print(write_conf(sys.argv[1], int(sys.argv[2]), access_log=len(sys.argv) == 4))
