"""HAProxy in front of a Galera cluster, one writer at a time (bench.soak --haproxy): node 1
the writer, nodes 2 and 3 its backups, each checked every 0.5 s by HTTP against a Galera-aware
check of its own (200 while the node is Synced, 503 otherwise, as `clustercheck` answers). A
node marked down has its connections shut; new ones go to the first node up."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pymysql

from tests.galera import Cluster, Node
from tests.processes import free_port

CONFIG = """
global
    maxconn 4000
defaults
    mode tcp
    retries 3
    option redispatch
    timeout connect 2s
    timeout client 1h
    timeout server 1h
listen galera
    bind 127.0.0.1:{port}
    option httpchk GET /
    default-server inter 500 fall 2 rise 2 on-marked-down shutdown-sessions
{servers}
"""


@contextmanager
def haproxy(cluster: Cluster) -> Iterator[int]:
    """HAProxy's port, in front of `cluster`, until the block ends."""
    if shutil.which("haproxy") is None:
        raise SystemExit("haproxy is not installed (Debian: apt-get install haproxy)")
    with ExitStack() as stack:
        servers = []
        for node in cluster.nodes:
            check = stack.enter_context(_synced_check(node))
            backup = " backup" if node.number > 1 else ""
            servers.append(
                f"    server node{node.number} 127.0.0.1:{node.sql} check port {check}{backup}"
            )
        port = free_port()
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ss-haproxy-")))
        config = folder / "haproxy.cfg"
        config.write_text(CONFIG.format(port=port, servers="\n".join(servers)))
        process = subprocess.Popen(
            ["haproxy", "-db", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(process.wait, 10)
        stack.callback(process.terminate)
        _wait_for(port)
        yield port


@contextmanager
def _synced_check(node: Node) -> Iterator[int]:
    class Check(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if node.state() == "Synced" else 503)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Check)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _wait_for(port: int) -> None:
    """Until HAProxy takes connections (its first checks have passed)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            pymysql.connect(host="127.0.0.1", port=port, user="root", connect_timeout=1).close()
            return
        except pymysql.err.OperationalError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)
