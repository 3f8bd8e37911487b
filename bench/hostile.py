#!/usr/bin/env python3
"""Hostile and huge job files, measured on a release build:

- a 2-million-line metrics.jsonl read by 8 clients at once: the server's
  peak RSS, the cold time, and a repeated request;
- /checkpoints on a 24-level fan of symlinks (two links per level);
- a 50-job page, and the whole list, of 10,000 jobs.

    python3 bench/hostile.py [--bin target/release/trainbox]
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import BIN, free_port  # noqa: E402
from connections import Server  # noqa: E402


def rss_kib(pid):
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()[0] if value.split() else "0"
    return int(fields.get("VmHWM", 0)), int(fields.get("VmRSS", 0))


def fetch(url):
    start = time.perf_counter()
    body = urllib.request.urlopen(url, timeout=600).read()
    return time.perf_counter() - start, body


def history(work, binary):
    job = work / "jobs" / "long"
    (job / "model").mkdir(parents=True)
    lines = 2_000_000
    with open(job / "metrics.jsonl", "w") as f:
        for step in range(lines):
            f.write(f'{{"step": {step}, "total_steps": {lines}, "loss": {5 / (1 + step / 1e4):.6f}, '
                    f'"learning_rate": 0.0003, "epoch": {step / 1e5:.4f}}}\n')
    size = (job / "metrics.jsonl").stat().st_size
    server = Server(work, [], binary)
    before = rss_kib(server.proc.pid)[1]
    url = f"{server.base}/api/training/long/metrics"
    times = [None] * 8

    def read(i):
        times[i], _ = fetch(url)
    start = time.perf_counter()
    threads = [threading.Thread(target=read, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cold = time.perf_counter() - start
    peak, after = rss_kib(server.proc.pid)
    warm = statistics.median(fetch(url)[0] for _ in range(20))
    points = len(json.loads(fetch(url)[1])["history"])
    server.stop()
    print(f"| {size / 1e6:.0f} MB metrics.jsonl ({lines:,} lines), 8 readers at once | "
          f"{cold:.2f} s cold; repeat {warm * 1000:.2f} ms ({points} points) | "
          f"RSS {before / 1024:.1f} MiB before, peak {peak / 1024:.1f} MiB |")


def symlink_fan(work, binary):
    d = work / "jobs" / "fan" / "model" / "checkpoint-1"
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(os.urandom(1000))
    for level in range(24):
        (d / "d").mkdir()
        os.symlink("d", d / "a")
        os.symlink("d", d / "b")
        (d / "d" / f"w{level}.bin").write_bytes(os.urandom(10))
        d = d / "d"
    server = Server(work, [], binary)
    took = statistics.median(fetch(f"{server.base}/api/training/fan/checkpoints")[0] for _ in range(5))
    server.stop()
    print(f"| /checkpoints on a 24-level symlink fan (3^24 paths to a naive walk) | {took * 1000:.1f} ms | |")


def many_jobs(work, binary):
    total = 10_000
    for i in range(total):
        d = work / "jobs" / f"job-{i:05d}"
        d.mkdir(parents=True)
        (d / "job.json").write_text(json.dumps({
            "id": f"job-{i:05d}", "recipe": "r", "status": "completed",
            "created_at": f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000Z"}))
    server = Server(work, [], binary)
    page = statistics.median(fetch(f"{server.base}/api/training/jobs?limit=50")[0] for _ in range(5))
    whole = statistics.median(fetch(f"{server.base}/api/training/jobs")[0] for _ in range(3))
    server.stop()
    print(f"| 10,000 jobs | a 50-job page {page * 1000:.0f} ms; the whole list {whole * 1000:.0f} ms | |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(BIN))
    args = ap.parse_args()
    binary = Path(args.bin).resolve()
    print(f"# hostile files (machine: {os.cpu_count()} cores)\n")
    print("| case | time | memory |\n|---|---|---|")
    for case in (history, symlink_fan, many_jobs):
        work = Path(tempfile.mkdtemp(prefix="trainbox-bench-hostile-"))
        try:
            case(work, binary)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
