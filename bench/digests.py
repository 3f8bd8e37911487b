#!/usr/bin/env python3
"""The digest worker: how fast it hashes a finished job's files (CRC-32 and
SHA-256 in one read), what CPU it takes, and what a download running at the
same time keeps of its speed; with `sha256sum` over the same files as the
reference, in the same run.

    bench/digests.py [--bin target/release/trainbox] [--size 2G]

The worker is paced (512 MB/s) and runs at nice 19 in the idle I/O class;
the figures say what that costs a download on this machine. Everything runs
on loopback and stops by itself.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units else int(text)


def make_job(root, job_id, size, seed):
    model = root / "jobs" / job_id / "model"
    model.mkdir(parents=True)
    block = os.urandom(1 << 20)
    with open(model / "model.safetensors", "wb") as f:
        for i in range(size >> 20):
            f.write(block[i % 7:] + block[: i % 7])
    (model / "config.json").write_text(json.dumps({"seed": seed}))
    (root / "jobs" / job_id / "job.json").write_text(json.dumps({
        "id": job_id, "recipe": "bench", "status": "completed",
        "created_at": "2026-11-29T00:00:00.000Z"}))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get_json(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def curl_mbps(url):
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", url],
                         check=True, capture_output=True, text=True).stdout.split()
    return int(out[0]) / float(out[1]) / 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=str(ROOT / "target/release/trainbox"))
    parser.add_argument("--size", default="2G")
    args = parser.parse_args()
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(prefix="trainbox-digests-") as tmp:
        root = Path(tmp)
        make_job(root, "served", size, 1)
        # Page-cache warm, as a just-finished job's files are.
        subprocess.run(["cat", str(root / "jobs/served/model/model.safetensors")], stdout=subprocess.DEVNULL, check=True)
        t = time.monotonic()
        subprocess.run(["sha256sum", str(root / "jobs/served/model/model.safetensors")], stdout=subprocess.DEVNULL, check=True)
        sha256sum_rate = size / (time.monotonic() - t) / 1e6

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([args.bin, "serve", "--root", str(root), "--listen", f"127.0.0.1:{port}"],
                                  stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
        try:
            for _ in range(200):
                try:
                    get_json(f"{base}/healthz")
                    break
                except OSError:
                    time.sleep(0.05)
            # The first job is hashed at start; wait for it, then measure a
            # download alone.
            while not get_json(f"{base}/api/training/served/files")["hashed"]:
                time.sleep(0.05)
            url = f"{base}/api/training/served/download/model?compression=stored"
            alone = max(curl_mbps(url) for _ in range(3))

            # A second job finishes: hashed while downloads of the first run.
            make_job(root, "fresh", size, 2)
            subprocess.run(["cat", str(root / "jobs/fresh/model/model.safetensors")], stdout=subprocess.DEVNULL, check=True)
            cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
            # Tell the index: the job directory appeared (inotify) already.
            during = []
            while not get_json(f"{base}/api/training/fresh/files")["hashed"]:
                during.append(curl_mbps(url))
            took = time.monotonic() - t0
            cpu = cpu_seconds(server.pid) - cpu0
        finally:
            server.terminate()
            server.wait()
    print("# digest worker benchmark\n")
    print(f"machine: {os.cpu_count()} cores; a {size >> 20} MiB model, page-cache warm\n")
    print("| figure | value |")
    print("|---|---|")
    print(f"| `sha256sum` over the same file (reference) | {sha256sum_rate:,.0f} MB/s |")
    print(f"| digest worker (CRC-32 + SHA-256, paced to 512 MB/s) | {size / took / 1e6:,.0f} MB/s ({took:.2f} s) |")
    print(f"| server CPU while hashing and serving | {cpu / took * 100:.0f}% of one core |")
    print(f"| stored download alone (best of 3) | {alone:,.0f} MB/s |")
    if during:
        print(f"| stored downloads while hashing ({len(during)}) | {min(during):,.0f}–{max(during):,.0f} MB/s |")
    else:
        print("| stored downloads while hashing | none finished before the hash did |")


if __name__ == "__main__":
    sys.exit(main())
