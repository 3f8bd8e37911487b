#!/usr/bin/env python3
"""The analytics' costs: what sampling resource use costs the server per
running job, and how long `GET /api/training/compare` takes for three jobs
of 10,000 logged points each.

    bench/analytics.py [--bin target/release/trainbox] [--jobs 4] [--seconds 20]

Sampling: N jobs each run a trainer of three processes (a shell and two
sleeps) in process-group mode; the server's CPU time over a window is
measured with sampling every 0.25 s and, in the same run, with sampling
effectively off (an interval longer than the window); the difference,
divided by the samples taken, is the cost of one sample of one job. The
cost at the default interval (5 s) follows. Comparison: three finished
jobs with 10,000-line metrics.jsonl files; the first request (each history
read from the start), then 200 more (each reading only what was appended,
nothing). Everything runs on loopback and stops by itself.
"""
import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRAINER = "sleep 600 & sleep 600 & wait"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve(binary, root, *args):
    port = free_port()
    proc = subprocess.Popen([binary, "serve", "--root", str(root), "--listen", f"127.0.0.1:{port}", *args],
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1).read()
            return proc, base
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server did not start")


def post(base, path, body):
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    return json.load(urllib.request.urlopen(request, timeout=10))


def sampling(binary, jobs, seconds):
    """CPU seconds of the server over `seconds` with `jobs` running, at a
    0.25 s interval and with sampling off."""
    spent = {}
    for label, interval in [("off", "100000"), ("on", "0.25")]:
        with tempfile.TemporaryDirectory(prefix="trainbox-sampling-") as tmp:
            root = Path(tmp)
            (root / "recipes.json").write_text(json.dumps(
                {"recipes": {"nap": {"command": ["/bin/sh", "-c", TRAINER]}}}))
            proc, base = serve(binary, root, "--max-jobs", str(jobs), "--sample-interval", interval)
            try:
                ids = [post(base, "/api/training/jobs", {"recipe": "nap"})["id"] for _ in range(jobs)]
                time.sleep(2)  # all started, the first samples taken
                before = cpu_seconds(proc.pid)
                time.sleep(seconds)
                spent[label] = cpu_seconds(proc.pid) - before
                for id_ in ids:
                    post(base, f"/api/training/{id_}/cancel", {})
            finally:
                proc.terminate()
                proc.wait(timeout=60)
    samples = jobs * seconds / 0.25
    per_sample = (spent["on"] - spent["off"]) / samples
    processes = len(list(Path("/proc").glob("[0-9]*")))
    print(f"sampling, {jobs} running jobs of 3 processes, {processes} processes on the box:")
    print(f"  server CPU over {seconds} s: {spent['off'] * 1000:.0f} ms with sampling off, "
          f"{spent['on'] * 1000:.0f} ms sampling every 0.25 s")
    print(f"  one sample of one job: {per_sample * 1e6:.0f} µs of CPU")
    print(f"  at the default 5 s interval: {per_sample / 5 * 100:.4f}% of a core per running job")


def compare(binary, points):
    with tempfile.TemporaryDirectory(prefix="trainbox-compare-") as tmp:
        root = Path(tmp)
        ids = []
        for n in range(3):
            job = root / "jobs" / f"run-{n}"
            job.mkdir(parents=True)
            (job / "job.json").write_text(json.dumps({
                "id": f"run-{n}", "recipe": "bench", "status": "completed",
                "created_at": "2026-11-29T00:00:00.000Z", "started_at": "2026-11-29T00:00:00.000Z",
                "finished_at": "2026-11-29T01:00:00.000Z"}))
            with open(job / "metrics.jsonl", "w") as f:
                for step in range(1, points + 1):
                    f.write(json.dumps({"step": step, "loss": 2.0 / (1 + step / 500) + n * 0.01,
                                        "learning_rate": 1e-4, "metrics": {"eval_accuracy": step / points}}) + "\n")
            ids.append(f"run-{n}")
        proc, base = serve(binary, root)
        try:
            host, port = base[len("http://"):].split(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            path = "/api/training/compare?jobs=" + ",".join(ids) + "&metric=loss"

            def once():
                t = time.perf_counter()
                conn.request("GET", path)
                body = conn.getresponse().read()
                return time.perf_counter() - t, body

            first, body = once()
            reply = json.loads(body)
            kept = [len(j["points"]) for j in reply["jobs"]]
            times = sorted(once()[0] for _ in range(200))
            print(f"compare, 3 jobs x {points} points (kept {kept} points, {len(body)} bytes):")
            print(f"  first request {first * 1000:.1f} ms (each history read whole); then p50 "
                  f"{statistics.median(times) * 1000:.2f} ms, p99 {times[int(len(times) * 0.99)] * 1000:.2f} ms")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=str(ROOT / "target/release/trainbox"))
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--points", type=int, default=10_000)
    args = parser.parse_args()
    sampling(args.bin, args.jobs, args.seconds)
    compare(args.bin, args.points)


if __name__ == "__main__":
    main()
