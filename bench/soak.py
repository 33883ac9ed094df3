"""Soak run (not a test): a real gunicorn with 2 workers, 8 concurrent clients, 1,000 requests mixing
good images (by URL and upload), hostile URLs and bad uploads, everything served from 127.0.0.1.

    .venv/bin/python bench/soak.py [--requests 1000] [--clients 8] [--deadline 3]

Prints the status mix, 5xx answers (those not expected for their request, and all of them by code),
worker restarts, RSS of each worker after 100 and after all requests, and p50/p99 latency.
Writes bench/results/soak-<time>.json. Hostile URLs use IP literals or the local server only: the
server's resolver is the real one, so no name is ever looked up.
"""
from __future__ import annotations

import argparse
import io
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from app.db import upgrade  # noqa: E402
from bench.results import write_report  # noqa: E402
from tests.app.servers import LocalServer, RawServer, garment_photo, png_bomb, trickle  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024
    except (FileNotFoundError, StopIteration):
        return None


def workers_of(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return sorted(int(pid) for pid in children)


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def request_mix(n: int, images, trickler, seed: int = 1234) -> list[tuple]:
    """(kind, name, call) triples: call(session, base) -> response. Expected statuses in EXPECTED."""
    photos = [garment_photo(((i * 37) % 255, (i * 91) % 255, (i * 53) % 255), seed=i) for i in range(40)]
    truncated = photos[0][: len(photos[0]) // 3]

    def by_url(url):
        return lambda s, base: s.post(f"{base}/v1/analyses", json={"image_url": url}, timeout=60)

    def upload(data, field="image"):
        return lambda s, base: s.post(f"{base}/v1/analyses", files={field: ("x.jpg", data)}, timeout=60)

    good = [("good", "url", by_url(images.url(f"/img/{i}.jpg"))) for i in range(120)]
    good += [("good", "upload", upload(photo)) for photo in photos]
    hostile = [("hostile", name, by_url(url)) for name, url in [
        ("private", "http://10.0.0.1/x.jpg"), ("metadata", "http://169.254.169.254/latest/meta-data/"),
        ("loopback-v6", "http://[::1]/x.jpg"), ("mapped", "http://[::ffff:127.0.0.1]/x.jpg"),
        ("hex-private", "http://0x0a.0.0.1/x.jpg"), ("scheme", "file:///etc/passwd"), ("credentials", "http://u:p@10.0.0.1/"),
        ("redirect-private", images.url("/redirect-private")), ("redirect-loop", images.url("/loop")),
        ("big-declared", images.url("/big-declared")), ("big-streamed", images.url("/big-streamed")),
        ("bomb", images.url("/bomb.png")), ("truncated", images.url("/truncated.jpg")),
        ("html", images.url("/page.html")), ("empty", images.url("/empty.jpg")), ("gone", images.url("/gone")),
        ("upstream-503", images.url("/unavailable")), ("missing", images.url("/nope.jpg"))]]
    slow = [("hostile", "never-answers", by_url(images.url("/slow"))), ("hostile", "trickled-body", by_url(trickler.url()))]
    bad = [("bad-upload", name, call) for name, call in [
        ("truncated", upload(truncated)), ("html", upload(b"<html>no</html>")), ("empty", upload(b"")),
        ("bomb", upload(png_bomb())), ("wrong-field", upload(photos[1], field="file")),
        ("not-json", lambda s, base: s.post(f"{base}/v1/analyses", data=b"{", timeout=60,
                                             headers={"Content-Type": "application/json"})),
        ("unknown-field", lambda s, base: s.post(f"{base}/v1/analyses", json={"url": "x"}, timeout=60))]]
    rng = random.Random(seed)
    mix = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.45:
            mix.append(rng.choice(good))
        elif roll < 0.72:
            mix.append(rng.choice(hostile))
        elif roll < 0.73:
            mix.append(rng.choice(slow))  # each holds a worker until the fetch deadline
        else:
            mix.append(rng.choice(bad))
    return mix


# The answer each request should get: anything else is a failure of the run.
EXPECTED = {
    ("good", "url"): {200, 201}, ("good", "upload"): {200, 201},
    **{("hostile", n): {422} for n in ("private", "metadata", "loopback-v6", "mapped", "hex-private", "redirect-private")},
    ("hostile", "scheme"): {400}, ("hostile", "credentials"): {400}, ("hostile", "redirect-loop"): {502},
    ("hostile", "big-declared"): {413}, ("hostile", "big-streamed"): {413}, ("hostile", "bomb"): {413},
    ("hostile", "truncated"): {422}, ("hostile", "html"): {415}, ("hostile", "empty"): {422},
    ("hostile", "gone"): {502}, ("hostile", "upstream-503"): {502}, ("hostile", "missing"): {502},
    ("hostile", "never-answers"): {504}, ("hostile", "trickled-body"): {504},
    ("bad-upload", "truncated"): {422}, ("bad-upload", "html"): {415}, ("bad-upload", "empty"): {422},
    ("bad-upload", "bomb"): {413}, ("bad-upload", "wrong-field"): {400}, ("bad-upload", "not-json"): {400},
    ("bad-upload", "unknown-field"): {400},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--deadline", type=float, default=3.0, help="FETCH_DEADLINE of the server, seconds")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="soak-"))
    database_url = f"sqlite:///{work / 'soak.sqlite3'}"
    upgrade(database_url)
    (work / "metrics").mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DATABASE_URL": database_url, "FETCH_ALLOW_PRIVATE": "127.0.0.0/8", "WEB_CONCURRENCY": "2",
           "BIND": f"127.0.0.1:{port}", "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics"),
           "FETCH_DEADLINE": str(args.deadline), "LOG_LEVEL": "WARNING"}
    env.pop("BROKER_URL", None)
    log_path = work / "gunicorn.log"

    def trickled_body(conn, stopped):  # the case: a body one byte per second
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n\xff\xd8\xff")
        trickle(conn, stopped, b"\x00" * 100, 1.0)

    with LocalServer() as images, RawServer(trickled_body) as trickler:
        server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT,
                                  env=env, stdout=subprocess.DEVNULL, stderr=open(log_path, "w"), start_new_session=True)
        try:
            started = time.monotonic()
            while True:
                try:
                    if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if server.poll() is not None or time.monotonic() - started > 300:
                    raise SystemExit("gunicorn did not become ready:\n" + log_path.read_text()[-3000:])
                time.sleep(1)
            print(f"ready in {time.monotonic() - started:.1f} s; workers {workers_of(server.pid)}")
            report = soak(base, server.pid, request_mix(args.requests, images, trickler), args.clients)
        finally:
            server.terminate()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, 9)
    report["config"] = {"requests": args.requests, "clients": args.clients, "workers": 2,
                        "fetch_deadline_s": args.deadline, "cpus": os.cpu_count()}
    print_report(report)
    write_report("soak", report)


def soak(base: str, master: int, mix: list[tuple], clients: int) -> dict:
    results: list[tuple] = [None] * len(mix)
    done = 0
    lock = threading.Lock()
    rss_at: dict[int, dict] = {}
    sessions = threading.local()

    def one(index):
        nonlocal done
        kind, name, call = mix[index]
        if not hasattr(sessions, "s"):
            sessions.s = requests.Session()
        start = time.perf_counter()
        try:
            response = call(sessions.s, base)
            status = response.status_code
            code = response.json().get("code") if status >= 400 else None
        except requests.RequestException as error:
            status, code = None, type(error).__name__
        results[index] = (kind, name, status, code, time.perf_counter() - start)
        with lock:
            done += 1
            if done in (100, len(mix)):
                rss_at[done] = {pid: rss_mb(pid) for pid in workers_of(master)}

    # A restarted worker (crash, timeout kill, max_requests) comes back with a new pid: count the pids.
    seen_pids = set(workers_of(master))
    finished = threading.Event()

    def watch_workers():
        while not finished.wait(0.2):
            seen_pids.update(workers_of(master))

    threading.Thread(target=watch_workers, daemon=True).start()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, range(len(mix))))
    wall = time.perf_counter() - started
    finished.set()
    seen_pids.update(workers_of(master))
    latencies = [r[4] * 1000 for r in results]
    good = [r[4] * 1000 for r in results if r[0] == "good"]
    unexpected = [r for r in results if r[2] not in EXPECTED[(r[0], r[1])]]
    statuses: dict[str, int] = {}
    for r in results:
        statuses[str(r[2])] = statuses.get(str(r[2]), 0) + 1
    five = [r for r in results if r[2] is None or r[2] >= 500]
    return {
        "wall_s": round(wall, 1), "worker_pids_seen": sorted(seen_pids), "worker_restarts": len(seen_pids) - 2,
        "statuses": dict(sorted(statuses.items())),
        "by_kind": {k: sum(1 for r in results if r[0] == k) for k in ("good", "hostile", "bad-upload")},
        "5xx_total": len(five),
        "5xx_by_code": {c: sum(1 for r in five if r[3] == c) for c in sorted({str(r[3]) for r in five})},
        "5xx_unexpected": sum(1 for r in unexpected if r[2] is None or r[2] >= 500),
        "unexpected": [{"kind": r[0], "name": r[1], "status": r[2], "code": r[3]} for r in unexpected][:50],
        "rss_mb_per_worker": {str(k): {str(p): round(v, 1) for p, v in vals.items() if v} for k, vals in rss_at.items()},
        "latency_ms": {"p50": round(statistics.median(latencies), 1), "p99": round(percentile(latencies, 99), 1)},
        "good_latency_ms": {"p50": round(statistics.median(good), 1), "p99": round(percentile(good, 99), 1)},
    }


def print_report(report: dict) -> None:
    print(f"\n{report['config']['requests']} requests, {report['config']['clients']} clients, 2 workers, "
          f"{report['wall_s']} s")
    print(f"statuses: {report['statuses']}   by kind: {report['by_kind']}")
    print(f"5xx: {report['5xx_total']} ({report['5xx_by_code']}), not expected for their request: "
          f"{report['5xx_unexpected']}; answers not as expected: {len(report['unexpected'])}")
    print(f"worker restarts: {report['worker_restarts']}")
    for at, rss in report["rss_mb_per_worker"].items():
        print(f"RSS after {at:>5} requests: " + ", ".join(f"pid {p}: {v:.0f} MB" for p, v in rss.items()))
    print(f"latency all: p50 {report['latency_ms']['p50']} ms, p99 {report['latency_ms']['p99']} ms; "
          f"good images: p50 {report['good_latency_ms']['p50']} ms, p99 {report['good_latency_ms']['p99']} ms")


if __name__ == "__main__":
    main()
