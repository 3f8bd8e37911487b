#!/usr/bin/env python3
"""The JSON API against nginx serving the very same bytes as static files,
and `compression=deflate` against gzip and pigz over the same files, in
one run on this machine.

- One job (`GET /api/training/jobs/{id}`) and the list of 100 jobs, from a
  root of 100 jobs; a 50-job page of a root of 10,000 jobs. Each response
  is fetched from trainbox once and written into nginx's document root,
  then both are loaded by `wrk -t2 -c32` for the same time: req/s, p50,
  p99, and the ratio to nginx.
- The server's RSS: idle with 100 jobs, and after serving 10,000 (the
  index).
- `compression=deflate` on a model of float32 weights and tokenizer text:
  MB/s of model bytes, against `gzip -1` and `pigz -1` (all cores) over
  the same files; the archive checked by `unzip -t` and Python's zipfile.

Everything runs on loopback and stops by itself.

    bench/api.py [--bin target/release/trainbox] [--seconds 5]
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (helpers: free_port, make_model, rss)

MIB = 1 << 20


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def write_jobs(root, count, with_files):
    """`count` finished jobs, as the runner and a trainer leave them."""
    for i in range(count):
        job = root / "jobs" / f"20261128-{i:06d}-a1b2c3"
        (job / "model").mkdir(parents=True)
        stamp = f"2026-11-28T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z"
        (job / "job.json").write_text(json.dumps({
            "id": job.name, "name": f"run {i}", "recipe": "finetune",
            "params": {"lr": 0.0001, "epochs": 3}, "status": "completed",
            "created_at": stamp, "started_at": stamp, "finished_at": stamp,
            "exit_code": 0}, indent=2))
        if with_files:
            (job / "progress.json").write_text(json.dumps({
                "step": 1200, "total_steps": 1200, "epoch": 3.0, "loss": 0.4123,
                "learning_rate": 1e-5, "updated_at": stamp}))
            (job / "training.log").write_text("step 1200 loss 0.4123\n")
            (job / "model" / "config.json").write_text("{}")


class Server:
    def __init__(self, binary, root, port):
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--root", str(root), "--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": "warn"})
        self.base = f"http://127.0.0.1:{port}"
        wait_for(port)

    def stop(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


class Nginx:
    """nginx with `workers` worker processes ("auto": one per core)."""

    def __init__(self, docroot, port, workdir, workers):
        conf = workdir / "nginx.conf"
        conf.write_text(f"""
daemon off; worker_processes {workers}; pid {workdir}/nginx.pid; error_log {workdir}/nginx.err;
events {{ worker_connections 1024; }}
http {{
  access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
  default_type application/json;
  client_body_temp_path {workdir}; proxy_temp_path {workdir}; fastcgi_temp_path {workdir};
  uwsgi_temp_path {workdir}; scgi_temp_path {workdir};
  server {{ listen 127.0.0.1:{port}; root {docroot}; }}
}}""")
        self.proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{port}"
        wait_for(port)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def wait_for(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def fetch(url):
    out = subprocess.run(["curl", "-sf", url], check=True, capture_output=True).stdout
    return out


def to_ms(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url, seconds):
    """req/s, p50 ms, p99 ms of `wrk -t2 -c32`."""
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", url],
                         check=True, capture_output=True, text=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} non-2xx answers")
    return rate, p50, p99


def api(binary, work, seconds):
    print("## JSON API: trainbox against nginx serving the same bytes\n")
    print(f"`wrk -t2 -c32 -d{seconds}s`; nginx (`access_log off`) serves the same responses as "
          "static files, with one worker (nginx's default, and the reference the issue measured) "
          "and with one per core. Ratios are trainbox's req/s over nginx's.\n")
    print("| request | bytes | nginx 1 worker req/s, p99 ms | nginx 2 workers req/s, p99 ms "
          "| trainbox req/s | trainbox p50 / p99 ms | vs 1 worker | vs 2 workers |")
    print("|---|---|---|---|---|---|---|---|")
    small, large = work / "root-100", work / "root-10000"
    write_jobs(small, 100, with_files=True)
    write_jobs(large, 10_000, with_files=False)
    docroot = work / "static"
    docroot.mkdir()
    rss = {}
    cases = []
    for root, targets in ((small, [("one job", "/api/training/jobs/20261128-000042-a1b2c3"),
                                   ("list of 100 jobs", "/api/training/jobs")]),
                          (large, [("50-job page of 10,000", "/api/training/jobs?limit=50")])):
        port = bench.free_port()
        server = Server(binary, root, port)
        time.sleep(0.5)
        rss[root.name, "idle"] = rss_kib(server.proc.pid)
        for name, target in targets:
            body = fetch(server.base + target)
            static = docroot / f"case{len(cases)}.json"
            static.write_bytes(body)
            cases.append((name, target, static.name, len(body)))
            ours = wrk(server.base + target, seconds)
            cases[-1] += (ours,)
        rss[root.name, "served"] = rss_kib(server.proc.pid)
        server.stop()
    reference = {}
    for workers in ("1", "auto"):
        port = bench.free_port()
        nginx_work = work / f"nginx-{workers}"
        nginx_work.mkdir()
        nginx = Nginx(docroot, port, nginx_work, workers)
        for _, _, static, _, _ in cases:
            reference[workers, static] = wrk(f"{nginx.base}/{static}", seconds)
        nginx.stop()
    for name, target, static, size, ours in cases:
        one, many = reference["1", static], reference["auto", static]
        print(f"| {name} | {size:,} | {one[0]:,.0f}, {one[2]:.2f} | {many[0]:,.0f}, {many[2]:.2f} "
              f"| {ours[0]:,.0f} | {ours[1]:.2f} / {ours[2]:.2f} | {ours[0] / one[0]:.2f} "
              f"| {ours[0] / many[0]:.2f} |")
    print(f"\nserver RSS: 100 jobs idle {rss['root-100', 'idle'] / 1024:.1f} MiB, after the load "
          f"{rss['root-100', 'served'] / 1024:.1f} MiB; 10,000 jobs idle "
          f"{rss['root-10000', 'idle'] / 1024:.1f} MiB, after the load "
          f"{rss['root-10000', 'served'] / 1024:.1f} MiB\n")


def timed(command, **kwargs):
    start = time.perf_counter()
    subprocess.run(command, check=True, **kwargs)
    return time.perf_counter() - start


def deflate(binary, work, size):
    print("## compression=deflate against gzip and pigz over the same files\n")
    root = work / "root-model"
    model = root / "jobs" / "big" / "model"
    bench.make_model(model, size, with_text=True)
    files = sorted(p for p in model.iterdir())
    total = sum(p.stat().st_size for p in files)
    bench.warm(files)
    port = bench.free_port()
    server = Server(binary, root, port)
    url = f"{server.base}/api/training/big/download/model?compression=deflate"
    archive = work / "model.zip"
    runs = [timed(["curl", "-sf", "-o", str(archive), url]) for _ in range(3)]
    ours = statistics.median(runs)
    server.stop()
    unzip_ok = subprocess.run(["unzip", "-tq", str(archive)], capture_output=True).returncode == 0
    with zipfile.ZipFile(archive) as z:
        python_ok = z.testzip() is None
    gzip = statistics.median(
        timed(["gzip", "-1", "-c", *map(str, files)], stdout=subprocess.DEVNULL) for _ in range(3))
    pigz = statistics.median(
        timed(["pigz", "-1", "-c", *map(str, files)], stdout=subprocess.DEVNULL) for _ in range(3))
    print(f"model: {total / MIB:,.0f} MiB ({len(files)} files: float32 weights and tokenizer text)\n")
    print("| tool | MB/s of model bytes | output |")
    print("|---|---|---|")
    print(f"| trainbox `compression=deflate` | {total / ours / 1e6:,.0f} | "
          f"{archive.stat().st_size / MIB:,.0f} MiB zip; unzip -t {'ok' if unzip_ok else 'FAILED'}, "
          f"zipfile {'ok' if python_ok else 'FAILED'} |")
    print(f"| gzip -1 | {total / gzip / 1e6:,.0f} | |")
    print(f"| pigz -1 ({os.cpu_count()} threads) | {total / pigz / 1e6:,.0f} | |")
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default="target/release/trainbox")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--model-size", default="512M")
    parser.add_argument("--skip-deflate", action="store_true")
    parser.add_argument("--skip-api", action="store_true")
    args = parser.parse_args()
    binary = Path(args.bin).resolve()
    for tool in ("wrk", "nginx", "curl", "unzip", "gzip", "pigz"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench/api.py needs {tool} (bench/run-api installs it)")
    print(f"# trainbox API benchmark\n\nmachine: {os.cpu_count()} cores; loopback; "
          f"{subprocess.run([str(binary), '--version'], capture_output=True, text=True).stdout.strip()}\n")
    with tempfile.TemporaryDirectory(prefix="trainbox-api-") as tmp:
        work = Path(tmp)
        # nginx's workers run as an unprivileged user: they must reach the files.
        work.chmod(0o755)
        if not args.skip_api:
            api(binary, work, args.seconds)
        if not args.skip_deflate:
            deflate(binary, work, bench.parse_size(args.model_size))


if __name__ == "__main__":
    main()
