#!/usr/bin/env python3
"""Connection benchmark for trainbox: what happens in time.

- slow downloads: each mode at rates that make it last 0.5x to 10x the
  read timeout (curl --limit-rate), completed or not;
- a server left idle: latency of the first request afterwards, errors in
  the log and accept-loop restarts;
- /healthz latency alone and under 64 trickling bodies + 64 trickling heads;
- the framing table: what each ambiguous request gets, and whether the
  connection is closed after it.

Everything runs on loopback and stops by itself.

    bench/run-connections                 # idle for 10 minutes
    bench/run-connections --idle 30       # shorter
"""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import BIN, MIB, float_block, free_port  # noqa: E402


class Server:
    def __init__(self, root, args, binary):
        self.port = free_port()
        self.log_path = root / f"server-{self.port}.log"
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--root", str(root), "--listen", f"127.0.0.1:{self.port}", *args],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"),
            env={**os.environ, "RUST_LOG": "info"})
        self.base = f"http://127.0.0.1:{self.port}"
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("trainbox did not start")

    def log(self):
        return self.log_path.read_text()

    def metric(self, name):
        text = urllib.request.urlopen(f"{self.base}/metrics").read().decode()
        match = re.search(rf"^{name} (\S+)$", text, re.M)
        return match.group(1) if match else "absent"

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def make_job(root):
    job = root / "jobs" / "big"
    (job / "model" / "checkpoint-100").mkdir(parents=True)
    block = float_block(8 * MIB, seed=1)
    for rel in ("model/model.safetensors", "model/checkpoint-100/model.safetensors"):
        with open(job / rel, "wb") as f:
            for _ in range(4):  # 32 MiB
                f.write(block)
    (job / "model" / "config.json").write_text('{"hidden_size": 64}')
    rng = os.urandom(24 * MIB).hex()  # 48 MB of text; deflates to about 27 MB
    (job / "training.log").write_text("\n".join(rng[i:i + 80] for i in range(0, len(rng), 80)))


MODES = {
    "stored": "/api/training/big/download/model?compression=stored",
    "auto": "/api/training/big/download/model",
    "checkpoint": "/api/training/big/download/model?checkpoint=checkpoint-100",
    "logs": "/api/training/big/download/logs",
}


def archive_size(server, path):
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{size_download}", server.base + path],
                         capture_output=True, text=True, check=True).stdout
    return int(out)


def slow_matrix(root, binary, read_timeout, ratios):
    server = Server(root, ["--read-timeout", str(read_timeout), "--max-downloads", "64"], binary)
    sizes = {mode: archive_size(server, path) for mode, path in MODES.items()}
    print(f"read timeout {read_timeout} s; archives: "
          + ", ".join(f"{m} {s / MIB:.0f} MiB" for m, s in sizes.items()) + "\n")
    print("| mode | " + " | ".join(f"{r}x" for r in ratios) + " |")
    print("|---|" + "---|" * len(ratios))
    results = {mode: [] for mode in MODES}
    for ratio in ratios:
        procs = {}
        for mode, path in MODES.items():
            rate = int(sizes[mode] / (ratio * read_timeout))
            out = root / f"{mode}.zip"
            procs[mode] = (subprocess.Popen(
                ["curl", "-sS", "--fail", "--limit-rate", str(rate), "-o", str(out), "-w",
                 "%{size_download} %{time_total}", server.base + path],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), out)
        for mode, (proc, out) in procs.items():
            stdout, stderr = proc.communicate()
            got, secs = stdout.split() if stdout else ("0", "0")
            ok = proc.returncode == 0 and int(got) == sizes[mode] and subprocess.run(
                ["unzip", "-tqq", str(out)], capture_output=True).returncode == 0
            results[mode].append(f"{'completed' if ok else 'CUT (curl ' + str(proc.returncode) + ')'}"
                                 f" in {float(secs):.1f} s")
            out.unlink(missing_ok=True)
    for mode in MODES:
        print(f"| {mode} | " + " | ".join(results[mode]) + " |")
    errors = [l for l in server.log().splitlines() if " ERROR " in l]
    print(f"\nerror lines in the log: {len(errors)}; "
          f"accept restarts: {server.metric('trainbox_accept_loop_restarts_total')}\n")
    server.stop()


def idle(root, binary, seconds, read_timeout):
    server = Server(root, ["--read-timeout", str(read_timeout)], binary)
    urllib.request.urlopen(f"{server.base}/healthz").read()
    time.sleep(seconds)
    start = time.perf_counter()
    urllib.request.urlopen(f"{server.base}/api/training/jobs").read()
    first = time.perf_counter() - start
    errors = [l for l in server.log().splitlines() if " ERROR " in l]
    restarts = server.metric("trainbox_accept_loop_restarts_total")
    start = time.perf_counter()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait()
    stop = time.perf_counter() - start
    print(f"idle {seconds} s ({seconds / read_timeout:.0f}x the read timeout): first request "
          f"{first * 1000:.1f} ms, error lines {len(errors)}, accept restarts {restarts}, "
          f"SIGTERM to exit {stop * 1000:.0f} ms\n")


def healthz_latencies(port, seconds):
    latencies = []
    end = time.time() + seconds
    while time.time() < end:
        start = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply
        latencies.append(time.perf_counter() - start)
        time.sleep(0.01)
    latencies.sort()
    q = lambda p: latencies[int((len(latencies) - 1) * p)] * 1000  # noqa: E731
    return len(latencies), q(0.5), q(0.99), latencies[-1] * 1000


def trickle(port, stop, body):
    try:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Length: 60000\r\n\r\n" if body
                  else b"GET /api/training/jobs HTTP/1.1\r\n")
        while not stop.is_set():
            time.sleep(0.3)
            s.sendall(b"t" if body else b"X")
    except OSError:
        pass  # refused and closed by the server: a new trickler takes its place
    if not stop.is_set():
        trickle(port, stop, body)


def flood(root, binary, seconds):
    server = Server(root, [], binary)
    alone = healthz_latencies(server.port, seconds)
    stop = threading.Event()
    threads = [threading.Thread(target=trickle, args=(server.port, stop, i % 2 == 0), daemon=True)
               for i in range(128)]
    for t in threads:
        t.start()
    time.sleep(1)
    flooded = healthz_latencies(server.port, seconds)
    stop.set()
    print("| /healthz | requests | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|")
    print("| alone | %d | %.2f | %.2f | %.2f |" % alone)
    print("| 64 trickling bodies + 64 trickling heads (kept up) | %d | %.2f | %.2f | %.2f |\n" % flooded)
    server.stop()


FRAMING = [
    ("two different Content-Length", "Content-Length: 5\r\nContent-Length: 7\r\n"),
    ("Content-Length: +5", "Content-Length: +5\r\n"),
    ("Content-Length and Transfer-Encoding", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
    ("Transfer-Encoding: identity", "Transfer-Encoding: identity\r\n"),
    ("Transfer-Encoding: chunked, gzip", "Transfer-Encoding: chunked, gzip\r\n"),
    ("Transfer-Encoding: gzip, chunked", "Transfer-Encoding: gzip, chunked\r\n"),
    ("space before the colon", "Content-Length : 5\r\n"),
    ("obsolete line folding", "X-A: a\r\n b\r\n"),
    ("bare LF inside a header", "X-A: a\nContent-Length: 5\r\n"),
    ("two Host headers", "Host: other\r\n"),
]


def framing(root, binary):
    server = Server(root, [], binary)
    smuggled = b"GET /api/training/jobs/smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
    cases = [(name, f"POST /api/training/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                    f"{headers}\r\n{{}}\r\n".encode() + smuggled) for name, headers in FRAMING]
    cases.append(("malformed chunk size", b"POST /api/training/jobs HTTP/1.1\r\nHost: localhost\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\nzz\r\n" + smuggled))
    cases.append(("10,000-character target", f"GET /{'a' * 10000} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()))
    cases.append(("40 KiB of headers", b"GET / HTTP/1.1\r\nHost: localhost\r\n"
                  + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 20) for i in range(1500)) + b"\r\n"))
    print("| request | answer | detail | responses | closed after |\n|---|---|---|---|---|")
    for name, raw in cases:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(raw)
            reply = b""
            closed = "yes"
            try:
                while chunk := s.recv(65536):
                    reply += chunk
            except socket.timeout:
                closed = "no"
        text = reply.decode(errors="replace")
        status = text[9:12]
        detail = re.search(r'"detail":\s*"([^"]*)"', text)
        count = len(re.findall(r"(?:^|\n|})HTTP/1\.1 \d{3} ", text))
        print(f"| {name} | {status} | {detail.group(1) if detail else '(none)'} | {count} | {closed} |")
    ran = "smuggled" in server.log()
    print(f"\nsmuggled request reached a handler: {'YES' if ran else 'no'}\n")
    server.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(BIN))
    ap.add_argument("--idle", type=float, default=600, help="seconds left idle (default: 10 minutes)")
    ap.add_argument("--read-timeout", type=float, default=1.0)
    ap.add_argument("--ratios", default="0.5,1,3,10", help="download time / read timeout")
    ap.add_argument("--flood-seconds", type=float, default=8)
    args = ap.parse_args()
    binary = Path(args.bin).resolve()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"# trainbox connection benchmark\n\nmachine: {os.cpu_count()} cores; loopback; {version}\n")
    work = Path(tempfile.mkdtemp(prefix="trainbox-bench-conn-"))
    try:
        make_job(work)
        print("## slow downloads (curl --limit-rate: download time as a multiple of --read-timeout)\n")
        slow_matrix(work, binary, args.read_timeout, [float(r) for r in args.ratios.split(",")])
        print("## trickling clients\n")
        flood(work, binary, args.flood_seconds)
        print("## framing\n")
        framing(work, binary)
        print("## idle\n")
        idle(work, binary, args.idle, args.read_timeout)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
