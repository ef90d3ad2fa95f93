"""Apache Kafka in KRaft mode (one combined broker+controller) from the Maven Central jars."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
from pathlib import Path

from devstack.config import DevstackConfig
from devstack.process import (
    DevstackError,
    kill_pid,
    port_open,
    run_checked,
    running_pid,
    spawn,
    stop_pid,
    wait_until,
)

# Kafka 4.x logs through slf4j 1.7 -> log4j2; the kafka_2.13 pom does not bring a binding.
_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>streamapp.devstack</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>2.24.3</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


class KafkaService:
    name = "kafka"

    def __init__(self, cfg: DevstackConfig) -> None:
        self.cfg = cfg
        self.libs = cfg.cache_dir / f"kafka-{cfg.kafka_version}" / "libs"
        self.home = cfg.run_dir / "kafka"
        self.pid_file = self.home / "kafka.pid"
        self.log_file = self.home / "kafka.out"
        self.data_dir = self.home / "data"

    # -- fetch ---------------------------------------------------------------
    def fetch(self) -> None:
        marker = self.libs / ".complete"
        if marker.exists():
            return
        build = self.libs.parent / "resolve"
        build.mkdir(parents=True, exist_ok=True)
        (build / "pom.xml").write_text(_POM.format(version=self.cfg.kafka_version))
        tmp = self.libs.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"kafka: resolving org.apache.kafka:kafka_2.13:{self.cfg.kafka_version} from Maven")
        run_checked(
            [
                "mvn",
                "-B",
                "-q",
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={tmp}",
            ],
            what="maven resolve of Kafka",
            cwd=build,
        )
        shutil.rmtree(self.libs, ignore_errors=True)
        tmp.rename(self.libs)
        marker.write_text(self.cfg.kafka_version)

    # -- lifecycle -------------------------------------------------------------
    def _java(self, *args: str, heap: str | None = None) -> list[str]:
        argv = ["java"]
        if heap:
            argv += [f"-Xms{heap}", f"-Xmx{heap}"]
        return [
            *argv,
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            "-cp",
            f"{self.libs}/*",
            *args,
        ]

    def _write_config(self) -> Path:
        c = self.cfg
        props = self.home / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{c.kafka_controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{c.kafka_port},"
                    f"CONTROLLER://127.0.0.1:{c.kafka_controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{c.kafka_port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={self.data_dir}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=true",
                    "",
                ]
            )
        )
        (self.home / "log4j2.properties").write_text(_LOG4J2.format(log=self.home / "server.log"))
        return props

    def start(self) -> None:
        if self.running():
            print(f"kafka: already running (pid {running_pid(self.pid_file)})")
            return
        c = self.cfg
        if port_open("127.0.0.1", c.kafka_port):
            raise DevstackError(
                f"kafka: port {c.kafka_port} is taken by another process; "
                "stop it or set DEVSTACK_KAFKA_PORT"
            )
        self.fetch()
        self.home.mkdir(parents=True, exist_ok=True)
        props = self._write_config()
        if not (self.data_dir / "meta.properties").exists():
            cluster_id = (
                run_checked(
                    self._java("kafka.tools.StorageTool", "random-uuid"), what="kafka random-uuid"
                )
                .strip()
                .splitlines()[-1]
            )
            run_checked(
                self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)),
                what="kafka storage format",
            )
        spawn(
            self._java("kafka.Kafka", str(props), heap="512m"),
            log_file=self.log_file,
            pid_file=self.pid_file,
        )
        wait_until(
            lambda: metadata_ready("127.0.0.1", c.kafka_port),
            timeout=120,
            what="kafka",
            alive=self.running,
            log_file=self.home / "server.log",
        )
        print(f"kafka {c.kafka_version}: ready on {c.kafka_bootstrap}")

    def running(self) -> bool:
        return running_pid(self.pid_file) is not None

    def stop(self) -> None:
        pid = running_pid(self.pid_file)
        if pid is not None:
            stop_pid(pid, name="kafka")
            print("kafka: stopped")
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would (fault tests); `start` brings it back."""
        pid = running_pid(self.pid_file)
        if pid is not None:
            kill_pid(pid)
        self.pid_file.unlink(missing_ok=True)

    def status(self) -> str:
        pid = running_pid(self.pid_file)
        if pid is None:
            if port_open("127.0.0.1", self.cfg.kafka_port):
                return (
                    f"kafka: not running here; port {self.cfg.kafka_port} is taken by another "
                    "process (another checkout's broker?)"
                )
            return "kafka: stopped"
        ready = metadata_ready("127.0.0.1", self.cfg.kafka_port)
        return f"kafka: pid {pid}, {'ready' if ready else 'starting'} on {self.cfg.kafka_bootstrap}"

    def reset(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


def metadata_ready(host: str, port: int, timeout: float = 2.0) -> bool:
    """Send a Kafka Metadata v4 request and check that the broker lists itself.

    A listening socket is not enough: a KRaft broker answers only once it has
    caught up with the metadata log, which is what clients need.
    """
    client_id = b"devstack"
    body = struct.pack(">i", -1) + b"\x00"  # all topics, no auto-creation
    header = struct.pack(">hhih", 3, 4, 7, len(client_id)) + client_id
    request = header + body
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(request)) + request)
            size = struct.unpack(">i", _recv_exact(sock, 4))[0]
            payload = _recv_exact(sock, size)
    except (OSError, struct.error):
        return False
    correlation_id, _throttle, broker_count = struct.unpack(">iii", payload[:12])
    return correlation_id == 7 and broker_count >= 1


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return bytes(buf)


def java_version() -> str:
    out = subprocess.run(["java", "-version"], capture_output=True, text=True)
    return (out.stderr or out.stdout).splitlines()[0] if (out.stderr or out.stdout) else "unknown"
