"""Load test of the REST API: concurrent clients POST /v1/grade for a bounded time.

Starts `grader serve` on a free loopback port with a throw-away database (or targets --url with --key),
then runs --clients threads for --seconds and prints throughput, p50/p99 latency and errors by status.

    GRADER_CACHE_DIR=/tmp/gcache python eval/bench_api.py --clients 8 --seconds 20
    GRADER_CACHE_DIR=/tmp/gcache python eval/bench_api.py --clients 8 --seconds 20 --microbatch 1   # batching off
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from grader.config import REPO_ROOT


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers() -> list[dict]:
    rows = [json.loads(line) for line in (REPO_ROOT / "examples" / "answers.jsonl").read_text("utf-8").splitlines()
            if line.strip()]
    return [{"question_id": r["question_id"], "answer": r["answer"]} for r in rows]


def start_server(folder: Path, microbatch: int | None) -> tuple[subprocess.Popen, str, str]:
    from api.auth import create_key
    from api.db import Database

    url_db = f"sqlite:///{folder / 'api.sqlite'}"
    db = Database(url_db)
    key = create_key(db, name="bench", tenant="bench", scopes=["grade"], rate_limit=0)[0]
    db.close()
    env = {**os.environ, "GRADER_API_DATABASE_URL": url_db}
    if microbatch is not None:
        env["GRADER_API_MICROBATCH_MAX"] = str(microbatch)
    port = _free_port()
    grader = Path(sys.executable).with_name("grader")
    process = subprocess.Popen([str(grader), "serve", "--port", str(port), "--log-level", "warning"], env=env,
                               stdout=open(folder / "server.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited:\n{(folder / 'server.log').read_text()[-3000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return process, url, key
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit("the server was not ready in 600 s")


def run(url: str, key: str, clients: int, seconds: float, answers: list[dict] | None = None) -> dict:
    answers = answers or _answers()
    latencies: list[float] = []
    statuses: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(n: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
            i = n
            while time.monotonic() < stop_at:
                body = answers[i % len(answers)]
                started = time.perf_counter()
                try:
                    status = str(http.post("/v1/grade", json=body).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                spent = time.perf_counter() - started
                with lock:
                    statuses[status] += 1
                    if status == "200":
                        latencies.append(spent)
                i += clients

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    ms = np.array(latencies) * 1000 if latencies else np.zeros(1)
    batches = [line for line in httpx.get(url + "/metrics").text.splitlines()
               if line.startswith(("grader_encode_batch_size_count", "grader_encode_batch_size_sum"))]
    return {"clients": clients, "seconds": round(elapsed, 1), "ok": len(latencies),
            "throughput_per_s": round(len(latencies) / elapsed, 2), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "errors": {k: v for k, v in statuses.items() if k != "200"}, "batcher": batches}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--url", help="A running server (default: start one here).")
    parser.add_argument("--key", help="An API key with the grade scope, with --url.")
    parser.add_argument("--microbatch", type=int, help="GRADER_API_MICROBATCH_MAX for the started server.")
    args = parser.parse_args()
    if args.url:
        if not args.key:
            parser.error("--url needs --key")
        report = run(args.url, args.key, args.clients, args.seconds)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-api-") as folder:
            process, url, key = start_server(Path(folder), args.microbatch)
            try:
                httpx.post(url + "/v1/grade", json=_answers()[0], headers={"Authorization": f"Bearer {key}"},
                           timeout=120)  # warm-up
                report = run(url, key, args.clients, args.seconds)
            finally:
                process.terminate()
                process.wait(60)
        report["microbatch"] = args.microbatch
    print(json.dumps(report, indent=2))  # noqa: T201 - a script's report


if __name__ == "__main__":
    main()
