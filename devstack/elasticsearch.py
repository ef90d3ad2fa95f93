"""Elasticsearch 8 from Maven Central's integ-test-zip distribution, single node on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import subprocess
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from devstack.config import DevstackConfig
from devstack.process import (
    DevstackError,
    kill_pid,
    pids_with_arg,
    port_open,
    run_checked,
    running_pid,
    spawn,
    stop_pid,
    wait_until,
)

ARTIFACT = "org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip"


class ElasticsearchService:
    name = "elasticsearch"

    def __init__(self, cfg: DevstackConfig) -> None:
        self.cfg = cfg
        self.as_root = os.geteuid() == 0
        # Elasticsearch refuses to run as root, so under root it runs as an unprivileged user,
        # which needs every directory on the way to its files to be traversable: the project
        # or the home directory may not be (e.g. /root is 0700), so use a shared location.
        base = (
            Path(os.environ.get("DEVSTACK_ES_BASE", "/var/tmp/streamapp-devstack"))
            if self.as_root
            else None
        )
        self.install_root = (base / "dist") if base else cfg.cache_dir
        self.install = self.install_root / f"elasticsearch-{cfg.elasticsearch_version}"
        # One node per checkout (per DEVSTACK_RUN_DIR): a second checkout must neither adopt
        # nor report this one's node.
        checkout = hashlib.sha256(str(cfg.run_dir).encode()).hexdigest()[:12]
        self.home = (base / "nodes" / checkout) if base else cfg.run_dir / "elasticsearch"
        self.conf = self.home / "config"
        self.pid_file = self.home / "es.pid"
        self.log_file = cfg.run_dir / "elasticsearch.out"

    # -- fetch ---------------------------------------------------------------
    def fetch(self) -> None:
        marker = self.install / ".complete"
        if marker.exists():
            return
        version = self.cfg.elasticsearch_version
        download = self.cfg.cache_dir / "downloads"
        download.mkdir(parents=True, exist_ok=True)
        print(f"elasticsearch: resolving {ARTIFACT.format(version=version)} from Maven")
        run_checked(
            [
                "mvn",
                "-B",
                "-q",
                "dependency:copy",
                f"-Dartifact={ARTIFACT.format(version=version)}",
                f"-DoutputDirectory={download}",
                "-Dmdep.overWriteIfNewer=true",
            ],
            what="maven download of Elasticsearch",
        )
        archive = download / f"elasticsearch-{version}.zip"
        tmp = self.install_root / f".unpack-{version}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        (inner,) = list(tmp.iterdir())
        for path in (inner / "bin").iterdir():
            path.chmod(0o755)
        shutil.rmtree(self.install, ignore_errors=True)
        inner.rename(self.install)
        shutil.rmtree(tmp, ignore_errors=True)
        if self.as_root:
            subprocess.run(["chmod", "-R", "a+rX", str(self.install_root)], check=False)
        marker.write_text(version)

    def modules(self) -> list[str]:
        return sorted(p.name for p in (self.install / "modules").iterdir())

    # -- lifecycle -------------------------------------------------------------
    def _configure(self) -> None:
        c = self.cfg
        if not self.conf.exists():
            shutil.copytree(self.install / "config", self.conf)
        settings = {
            "cluster.name": "streamapp-dev",
            "node.name": "streamapp-dev-1",
            "path.data": str(self.home / "data"),
            "path.logs": str(self.home / "logs"),
            "network.host": "127.0.0.1",
            "http.port": c.elasticsearch_port,
            "transport.port": c.elasticsearch_port + 100,
            "discovery.type": "single-node",
            "cluster.routing.allocation.disk.threshold_enabled": False,
            "action.destructive_requires_name": False,
        }
        # The setting is unknown (and fatal) unless the security module ships in the zip.
        if "x-pack-security" in self.modules():
            settings["xpack.security.enabled"] = False
        (self.conf / "elasticsearch.yml").write_text(
            "".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items())
        )
        for sub in ("data", "logs", "tmp"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)

    def _ensure_user(self) -> None:
        user = self.cfg.es_user
        try:
            pwd.getpwnam(user)
        except KeyError:
            run_checked(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
                what=f"creating user {user} for Elasticsearch",
            )
        run_checked(["chown", "-R", f"{user}:", str(self.home)], what="chown Elasticsearch home")

    def start(self) -> None:
        c = self.cfg
        if self.running():
            print(f"elasticsearch: already running (pid {running_pid(self.pid_file)})")
            return
        self._kill_stale()
        if port_open("127.0.0.1", c.elasticsearch_port):
            raise DevstackError(
                f"elasticsearch: port {c.elasticsearch_port} is taken by another process; "
                "stop it or set DEVSTACK_ES_PORT"
            )
        self.fetch()
        self.home.mkdir(parents=True, exist_ok=True)
        self._configure()
        java_home = Path(shutil.which("java") or "java").resolve().parent.parent
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ES_JAVA_HOME": os.environ.get("JAVA_HOME", str(java_home)),
            "ES_PATH_CONF": str(self.conf),
            "ES_TMPDIR": str(self.home / "tmp"),
            "ES_JAVA_OPTS": f"-Xms{c.es_heap} -Xmx{c.es_heap}",
        }
        argv = [str(self.install / "bin" / "elasticsearch"), "-d", "-p", str(self.pid_file)]
        if self.as_root:
            self._ensure_user()
            argv = [
                "runuser",
                "-u",
                c.es_user,
                "--",
                "env",
                *(f"{k}={v}" for k, v in env.items()),
                *argv,
            ]
        self.pid_file.unlink(missing_ok=True)
        self.cfg.run_dir.mkdir(parents=True, exist_ok=True)
        launcher = spawn(
            argv, log_file=self.log_file, pid_file=self.cfg.run_dir / "es-launcher.pid", env=env
        )
        wait_until(
            self.healthy,
            timeout=180,
            what="elasticsearch",
            alive=lambda: self.running() or _alive(launcher),
            log_file=self.home / "logs" / "streamapp-dev.log",
        )
        print(f"elasticsearch {c.elasticsearch_version}: ready on {c.elasticsearch_url}")

    def healthy(self) -> bool:
        # The integ-test zip lacks the rest-root module, so there is no `GET /`.
        url = f"{self.cfg.elasticsearch_url}/_cluster/health?wait_for_status=yellow&timeout=1s"
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def running(self) -> bool:
        return running_pid(self.pid_file) is not None

    def _kill_stale(self) -> None:
        for pid in pids_with_arg(str(self.conf)):
            print(f"elasticsearch: stopping a stale node from an earlier run (pid {pid})")
            stop_pid(pid, name="stale elasticsearch")

    def kill(self) -> None:
        """SIGKILL the node, as a crash would (fault tests); `start` brings it back."""
        pid = running_pid(self.pid_file)
        if pid is not None:
            kill_pid(pid)
        self.pid_file.unlink(missing_ok=True)

    def stop(self) -> None:
        pid = running_pid(self.pid_file)
        if pid is not None:
            stop_pid(pid, timeout=60, name="elasticsearch")
            print("elasticsearch: stopped")
        self._kill_stale()
        self.pid_file.unlink(missing_ok=True)

    def status(self) -> str:
        pid = running_pid(self.pid_file)
        if pid is None:
            if port_open("127.0.0.1", self.cfg.elasticsearch_port):
                return (
                    f"elasticsearch: not running here; port {self.cfg.elasticsearch_port} is "
                    "taken by another process (another checkout's node?)"
                )
            return "elasticsearch: stopped"
        state = "ready" if self.healthy() else "starting"
        return f"elasticsearch: pid {pid}, {state} on {self.cfg.elasticsearch_url}"

    def reset(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


def _alive(pid: int) -> bool:
    # The launcher (`bin/elasticsearch -d`) exits once the node has daemonised; until then
    # it is our child, so reap it without blocking.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == 0
