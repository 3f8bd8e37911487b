#!/usr/bin/env python3
"""How long pause and resume take to act, measured from the moment the HTTP
request is sent: until the response arrives, and until every process of the
trainer's group is stopped (state T in /proc) or running again. The trainer
is a shell script with two child processes (like data-loader workers).

    bench/control.py [--trials 20]
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = Path(__file__).resolve().parent.parent / "target" / "release" / "trainbox"
TRAINER = """
(while :; do sleep 0.05; done) &
(while :; do sleep 0.05; done) &
while :; do sleep 0.02; done
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url):
    req = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def group_states(pgid):
    states = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[2]) == pgid:
            states.append(fields[0])
    return states


def until(predicate, timeout=10.0):
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if predicate():
            return time.perf_counter()
        time.sleep(0.0002)
    raise SystemExit("timed out")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="trainbox-control-"))
    (work / "jobs").mkdir()
    (work / "trainer.sh").write_text(TRAINER)
    (work / "recipes.json").write_text(json.dumps(
        {"recipes": {"family": {"command": ["/bin/sh", str(work / "trainer.sh")]}}}))
    port = free_port()
    server = subprocess.Popen([str(BIN), "serve", "--root", str(work), "--listen", f"127.0.0.1:{port}"],
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/api/training"
    try:
        until(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0)
        req = urllib.request.Request(f"{base}/jobs", data=b'{"recipe": "family"}', method="POST",
                                     headers={"Content-Type": "application/json"})
        job = json.load(urllib.request.urlopen(req))["id"]
        until(lambda: json.loads((work / "jobs" / job / "job.json").read_text()).get("pid"))
        pgid = json.loads((work / "jobs" / job / "job.json").read_text())["pid"]
        until(lambda: len(group_states(pgid)) >= 3)
        results = {"pause: response": [], "pause: all stopped": [],
                   "resume: response": [], "resume: all running": []}
        for _ in range(args.trials):
            t0 = time.perf_counter()
            post(f"{base}/{job}/pause")
            t1 = time.perf_counter()
            t2 = until(lambda: all(s == "T" for s in group_states(pgid)))
            results["pause: response"].append(t1 - t0)
            results["pause: all stopped"].append(t2 - t0)
            time.sleep(0.05)
            t0 = time.perf_counter()
            post(f"{base}/{job}/resume")
            t1 = time.perf_counter()
            t2 = until(lambda: all(s != "T" for s in group_states(pgid)))
            results["resume: response"].append(t1 - t0)
            results["resume: all running"].append(t2 - t0)
            time.sleep(0.05)
        print(f"pause/resume of a 3-process trainer group, {args.trials} trials (ms):\n")
        print("| | median | p90 | max |\n|---|---|---|---|")
        for name, values in results.items():
            values = sorted(v * 1000 for v in values)
            p90 = values[int(0.9 * (len(values) - 1))]
            print(f"| {name} | {statistics.median(values):.2f} | {p90:.2f} | {values[-1]:.2f} |")
        post(f"{base}/{job}/cancel")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
