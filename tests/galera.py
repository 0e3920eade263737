"""A real 3-node MariaDB Galera cluster on loopback for the tests: Debian's `mariadb-server`
with `galera-4`, each node a `mariadbd` of its own with a datadir under a temporary folder and
ports of its own, joined one after another by rsync state transfer (a few seconds each).
Nodes can be stopped and started again (rejoining by incremental state transfer)."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pymysql

from tests.processes import free_port

PROVIDER = "/usr/lib/galera/libgalera_smm.so"
JOIN_SECONDS = 60


@dataclass
class Node:
    number: int
    datadir: Path
    sql: int  # the SQL port
    group: int  # Galera's replication port
    ist: int
    sst: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mysql+aiomysql://root@127.0.0.1:{self.sql}/"

    def query(
        self, sql: str, database: str | None = None, *, sync_wait: bool = False
    ) -> list[tuple[object, ...]]:
        """Rows of `sql` on this node; with `sync_wait`, after it has applied every write the
        cluster had ordered when the query came (wsrep_sync_wait)."""
        with (
            pymysql.connect(
                host="127.0.0.1", port=self.sql, user="root", database=database, connect_timeout=2
            ) as connection,
            connection.cursor() as cursor,
        ):
            if sync_wait:
                cursor.execute("SET SESSION wsrep_sync_wait = 1")
            cursor.execute(sql)
            return list(cursor.fetchall())

    def state(self) -> str:
        try:
            rows = self.query("SHOW STATUS LIKE 'wsrep_local_state_comment'")
        except pymysql.err.OperationalError:
            return "down"
        return str(rows[0][1]) if rows else "down"


class Cluster:
    def __init__(self) -> None:
        # its own folder, which the server's user (mysql, when run as root) can enter
        self.root = Path(tempfile.mkdtemp(prefix="ss-galera-"))
        self.root.chmod(0o755)
        self.user = "mysql" if os.geteuid() == 0 else getpass.getuser()
        self.nodes = [
            Node(n, self.root / f"node{n}", free_port(), free_port(), free_port(), free_port())
            for n in (1, 2, 3)
        ]

    @staticmethod
    def available() -> str | None:
        """Why a cluster cannot run here, if it cannot."""
        for needed in (PROVIDER, "/usr/sbin/mariadbd", "/usr/bin/rsync"):
            if not Path(needed).exists():
                return f"{needed} is missing: scripts/test installs galera-4, mariadb-server, rsync"
        return None

    def start(self) -> None:
        first = self.nodes[0]
        if self.user != getpass.getuser():
            shutil.chown(self.root, self.user, self.user)
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={first.datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                f"--user={self.user}",
                f"--tmpdir={self.root}",
            ],
            check=True,
            capture_output=True,
        )
        for node in self.nodes[1:]:
            node.datadir.mkdir()
            if self.user != getpass.getuser():
                shutil.chown(node.datadir, self.user, self.user)
        self.start_node(first, bootstrap=True)
        for node in self.nodes[1:]:  # one at a time: a donor serves one joiner
            self.start_node(node)

    def start_node(self, node: Node, *, bootstrap: bool = False) -> None:
        addresses = ",".join(f"127.0.0.1:{other.group}" for other in self.nodes)
        options = (
            f"gmcast.listen_addr=tcp://127.0.0.1:{node.group};"
            f"ist.recv_addr=127.0.0.1:{node.ist};base_port={node.group}"
        )
        command = [
            "/usr/sbin/mariadbd",
            "--no-defaults",
            f"--user={self.user}",
            f"--datadir={node.datadir}",
            f"--port={node.sql}",
            "--bind-address=127.0.0.1",
            f"--socket={node.datadir}.sock",
            f"--pid-file={node.datadir}.pid",
            f"--log-error={node.datadir}.err",
            f"--tmpdir={self.root}",
            "--binlog-format=ROW",
            "--innodb-autoinc-lock-mode=2",
            "--innodb-buffer-pool-size=64M",
            "--wsrep-on=ON",
            f"--wsrep-provider={PROVIDER}",
            "--wsrep-cluster-name=session-service-tests",
            f"--wsrep-cluster-address=gcomm://{addresses}",
            f"--wsrep-node-address=127.0.0.1:{node.group}",
            f"--wsrep-node-name=node{node.number}",
            "--wsrep-sst-method=rsync",
            f"--wsrep-provider-options={options}",
            f"--wsrep-sst-receive-address=127.0.0.1:{node.sst}",
        ]
        if bootstrap:
            command.append("--wsrep-new-cluster")
        node.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + JOIN_SECONDS
        while node.state() != "Synced":
            if node.process.poll() is not None or time.monotonic() > deadline:
                log = Path(f"{node.datadir}.err")
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"Galera node{node.number} did not join:\n{tail}")
            time.sleep(0.2)

    def stop_node(self, node: Node) -> None:
        if node.process is not None and node.process.poll() is None:
            node.process.terminate()
            node.process.wait(30)
        node.process = None

    def close(self) -> None:
        for node in reversed(self.nodes):
            self.stop_node(node)
        shutil.rmtree(self.root, ignore_errors=True)
