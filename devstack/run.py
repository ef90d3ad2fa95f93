"""`make run`: local Kafka + Elasticsearch, a streamapp worker, the bundled sample replayed.

Ctrl-C, SIGTERM (a supervisor, `timeout`) and SIGHUP (a closed terminal) stop the worker and
the services this command started (services that were already running are left running).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from devstack.config import DevstackConfig
from devstack.elasticsearch import ElasticsearchService
from devstack.kafka import KafkaService
from devstack.process import DevstackError, stop_pid

DEMO_TERMS = "love,money,school,yankees"


def _health(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        try:
            return json.load(exc)
        except ValueError:
            return None
    except (urllib.error.URLError, OSError, ValueError):
        return None


class Stopped(Exception):
    """SIGTERM or SIGHUP: clean up as Ctrl-C does."""


def _stop_on_signal(signum: int, frame: object) -> None:
    raise Stopped(signal.Signals(signum).name)


#: How long the worker may report a service unreachable before `make run` gives up on it.
UNREACHABLE_GRACE = 20.0
SETTING = {"kafka": "STREAMAPP_KAFKA_BROKER", "elasticsearch": "STREAMAPP_ELASTICSEARCH_URL"}


def wait_healthy(
    url: str, worker: subprocess.Popen[bytes], log_path: Path, env: dict[str, str]
) -> None:
    """Until /health/ says ok; fail fast, naming the service, when the worker exits or
    cannot reach Kafka or Elasticsearch for UNREACHABLE_GRACE seconds."""
    deadline = time.monotonic() + 180
    unreachable_since: dict[str, float] = {}
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise DevstackError(f"the worker exited with {worker.returncode}; see {log_path}")
        body = _health(url) or {}
        if body.get("status") == "ok":
            return
        now = time.monotonic()
        for service, setting in SETTING.items():
            if body.get(f"{service}_reachable") is False:
                since = unreachable_since.setdefault(service, now)
                if now - since > UNREACHABLE_GRACE:
                    address = env.get(setting, "")
                    raise DevstackError(
                        f"the worker cannot reach {service} at {address} ({setting}) for "
                        f"{now - since:.0f}s; see {log_path}"
                    )
            else:
                unreachable_since.pop(service, None)
        time.sleep(1)
    raise DevstackError(f"the worker did not report healthy within 180s; see {log_path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("WORKERS", "1")),
        help="worker processes (one consumer group; useful up to STREAMAPP_TOPIC_PARTITIONS)",
    )
    parser.add_argument(
        "--demo-rate",
        type=float,
        default=float(os.environ.get("DEMO_RATE", "10")),
        help="messages/s of the bundled sample replayed in a loop (0: replay it once)",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop_on_signal)
    cfg = DevstackConfig.from_env()
    services: list[KafkaService | ElasticsearchService] = [
        KafkaService(cfg),
        ElasticsearchService(cfg),
    ]
    started = []
    workers: list[subprocess.Popen[bytes]] = []
    demo: subprocess.Popen[bytes] | None = None
    env = {
        **os.environ,
        "STREAMAPP_KAFKA_BROKER": os.environ.get(
            "STREAMAPP_KAFKA_BROKER", f"kafka://{cfg.kafka_bootstrap}"
        ),
        "STREAMAPP_ELASTICSEARCH_URL": os.environ.get(
            "STREAMAPP_ELASTICSEARCH_URL", cfg.elasticsearch_url
        ),
        # Words of the bundled sample, so the dashboard's tracked-terms panel has something
        # to compare; your own STREAMAPP_TERMS wins.
        "STREAMAPP_TERMS": os.environ.get("STREAMAPP_TERMS", DEMO_TERMS),
    }
    data_dir = os.environ.get("STREAMAPP_DATA_DIR", str(cfg.run_dir / "worker-data"))
    first_port = int(env.get("STREAMAPP_WEB_PORT", "6066"))
    bases = [f"http://127.0.0.1:{first_port + i}" for i in range(args.workers)]
    base = bases[0]
    log_paths = [
        cfg.run_dir / ("worker.log" if i == 0 else f"worker-{i}.log") for i in range(args.workers)
    ]
    try:
        for svc in services:
            if not svc.running():
                svc.start()
                started.append(svc)
            else:
                print(svc.status())
        for i, log_path in enumerate(log_paths):
            # Same app id, so one consumer group: Faust shares the partitions among them.
            worker_env = {
                **env,
                "STREAMAPP_WEB_PORT": str(first_port + i),
                "STREAMAPP_DATA_DIR": data_dir if i == 0 else f"{data_dir}-{i}",
            }
            print(f"starting streamapp worker {i + 1} of {args.workers} (log: {log_path})")
            log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the worker
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "faust", "-A", "streamapp", "worker", "-l", "info"],
                    env=worker_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        for url, worker, log_path in zip(bases, workers, log_paths, strict=True):
            wait_healthy(f"{url}/health/", worker, log_path, env)
        replay = [sys.executable, "-m", "streamapp.sources", "replay", "--restamp"]
        if args.demo_rate > 0:
            # A demo that stays live: the sample again and again, so the windows keep filling.
            demo_log = cfg.run_dir / "demo.log"
            demo = subprocess.Popen(
                [*replay, "--repeat", "--rate", str(args.demo_rate)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=open(demo_log, "ab"),  # noqa: SIM115 - lives as long as the demo
            )
        else:
            subprocess.run(replay, env=env, check=True)
        time.sleep(3)
        stats = _health(f"{base}/stats/") or {}
        indexed = sum(p.get("indexed", 0) for p in stats.get("pipelines", {}).values())
        es = cfg.elasticsearch_url
        tweets_index = env.get("STREAMAPP_TWEETS_INDEX", "streamapp-tweets")
        news_index = env.get("STREAMAPP_NEWS_INDEX", "streamapp-news")
        others = "".join(
            f"\n  worker {i + 1}        {u}/dashboard/" for i, u in enumerate(bases) if i
        )
        print(
            f"""
streamapp is running ({indexed} sample messages indexed so far, {args.workers} worker(s)).
  live dashboard  {base}/dashboard/{others}
  health          {base}/health/
  sentiment       {base}/sentiment/?window=tumbling   (or ?window=hopping&source=replay)
  hate speech     {base}/hate/
  pipeline stats  {base}/stats/
  Elasticsearch   {es}/{tweets_index}/_search?q=hate:true
                  {es}/{news_index}/_search
  demo data       the bundled sample in a loop at {args.demo_rate:g} msg/s (DEMO_RATE=0: once)
  more data       .venv/bin/python -m streamapp.sources replay FILE.jsonl --rate 50
  worker log      {log_paths[0]}
Press Ctrl-C to stop.""",
            flush=True,
        )
        while all(w.poll() is None for w in workers):
            time.sleep(1)
        for w, log_path in zip(workers, log_paths, strict=True):
            if w.poll() is not None:
                print(f"a worker exited with {w.returncode}; see {log_path}")
        return 1
    except (KeyboardInterrupt, Stopped) as exc:
        print(f"\nstopping ({exc or 'Ctrl-C'})", flush=True)
        return 0
    except (DevstackError, subprocess.CalledProcessError) as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    finally:
        # A second signal must not cut the clean-up short.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if demo is not None and demo.poll() is None:
            demo.send_signal(signal.SIGTERM)
            try:
                demo.wait(timeout=15)
            except subprocess.TimeoutExpired:
                demo.kill()
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                stop_pid(worker.pid, timeout=1, name="worker")
        for svc in reversed(started):
            svc.stop()


if __name__ == "__main__":
    sys.exit(main())
