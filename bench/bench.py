#!/usr/bin/env python3
"""Download benchmark for trainbox: throughput, time to first byte, server
peak RSS, archive size, against `cat` and nginx (sendfile) in the same run.

Everything runs on loopback and stops by itself. Figures are medians of
--repeat runs (one run for the slow `deflate` mode). Peak RSS is the
server's VmHWM, reset before each scenario (clear_refs 5).

    bench/run                      # what the issues ask (1 GiB and 4 GiB)
    bench/run --sizes 64M,1G       # smaller
"""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / "target" / "release" / "trainbox"
MIB = 1 << 20


def parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper()
    if text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def human(n):
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def float_block(n_bytes, seed):
    """float32 weights ~ N(0, 0.02): what tensor files hold (they deflate ~7%)."""
    rng = random.Random(seed)
    count = n_bytes // 4
    return struct.pack(f"<{count}f", *(rng.gauss(0.0, 0.02) for _ in range(count)))


def make_model(path, total, with_text):
    """A model directory of `total` bytes: tensor shards of float-like data,
    plus (with_text) JSON/tokenizer text files like a real HF checkpoint."""
    path.mkdir(parents=True, exist_ok=True)
    block = float_block(16 * MIB, seed=total)
    text_total = 0
    if with_text:
        vocab = {f"tok{i}_{'x' * (i % 7)}": i for i in range(120_000)}
        tokenizer = json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": vocab,
                                "merges": [f"t{i} o{i}" for i in range(60_000)]}}, indent=1)
        (path / "tokenizer.json").write_text(tokenizer)
        (path / "vocab.txt").write_text("\n".join(vocab))
        (path / "config.json").write_text(json.dumps({"hidden_size": 4096, "layers": 32}, indent=2))
        text_total = sum(f.stat().st_size for f in path.iterdir())
    shard_size = 512 * MIB
    left, index = total - text_total, 0
    while left > 0:
        size = min(shard_size, left)
        with open(path / f"model-{index:05d}.safetensors", "wb") as f:
            written = 0
            while written < size:
                chunk = block[: min(len(block), size - written)]
                f.write(chunk)
                written += len(chunk)
        left -= size
        index += 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def reset_peak(pid):
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


def warm(paths):
    for p in paths:
        with open(p, "rb") as f:
            while f.read(8 * MIB):
                pass


def curl(url, extra=()):
    """One download to /dev/null: (bytes, seconds, time to first byte)."""
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", *extra, "-w",
         "%{size_download} %{time_total} %{time_starttransfer} %{http_code}", url],
        check=True, capture_output=True, text=True).stdout.split()
    return int(out[0]), float(out[1]), float(out[2]), out[3]


def median_download(url, repeat, extra=()):
    runs = [curl(url, extra) for _ in range(repeat)]
    size = runs[0][0]
    secs = statistics.median(r[1] for r in runs)
    ttfb = statistics.median(r[2] for r in runs)
    return size, secs, ttfb


def time_cat(files, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(["cat", *map(str, files)], stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Trainbox:
    def __init__(self, root, port, max_downloads=32, extra=()):
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--root", str(root), "--listen", f"127.0.0.1:{port}",
             "--max-downloads", str(max_downloads), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
        self.base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("trainbox did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


class Nginx:
    def __init__(self, docroot, port, workdir):
        conf = workdir / "nginx.conf"
        conf.write_text(f"""
daemon off; worker_processes 1; pid {workdir}/nginx.pid; error_log {workdir}/nginx.err;
events {{ worker_connections 1024; }}
http {{
  access_log off; sendfile on; tcp_nopush on; client_body_temp_path {workdir};
  proxy_temp_path {workdir}; fastcgi_temp_path {workdir}; uwsgi_temp_path {workdir}; scgi_temp_path {workdir};
  server {{ listen 127.0.0.1:{port}; root {docroot}; }}
}}""")
        self.proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("nginx did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1G,4G", help="model sizes, e.g. 64M,1G,4G")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--concurrent", type=int, default=16)
    ap.add_argument("--workdir", default=None, help="keep generated models here (default: a temp dir)")
    ap.add_argument("--no-text", action="store_true", help="tensor files only (no JSON/tokenizer text)")
    ap.add_argument("--modes", default="stored,auto,deflate")
    ap.add_argument("--bin", default=None, help="the trainbox binary (default: target/release/trainbox)")
    args = ap.parse_args()

    global BIN
    if args.bin:
        BIN = Path(args.bin).resolve()
    if not BIN.exists():
        raise SystemExit(f"{BIN} missing: run `cargo build --release` first")
    have_nginx = shutil.which("nginx") is not None
    work = Path(args.workdir or tempfile.mkdtemp(prefix="trainbox-bench-"))
    root = work / "root"
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    modes = args.modes.split(",")
    print(f"# trainbox download benchmark\n\nmachine: {os.cpu_count()} cores; loopback; "
          f"trainbox {subprocess.run([BIN, '--version'], capture_output=True, text=True).stdout.strip()}; "
          f"median of {args.repeat} runs (deflate: 1)\n", flush=True)

    for size in sizes:
        job = f"m{size // MIB}m"
        model = root / "jobs" / job / "model"
        if not model.exists():
            make_model(model, size, with_text=not args.no_text)
        files = sorted(p for p in model.rglob("*") if p.is_file())
        total = sum(p.stat().st_size for p in files)
        warm(files)
        cat_s = time_cat(files, args.repeat)
        cat_rate = total / cat_s / 1e6
        port = free_port()
        print(f"## model {human(total)} ({len(files)} files)\n")
        print(f"baseline: `cat` of the files to /dev/null: {cat_rate:,.0f} MB/s ({cat_s:.2f} s)\n")

        # nginx serving one static file of the stored archive's size, same loopback.
        nginx_rates = []
        static = None
        if have_nginx:
            docroot = work / "nginx-root"
            docroot.mkdir(exist_ok=True)
            static = docroot / "model.zip"
            server = Trainbox(root, port)
            subprocess.run(["curl", "-s", "-o", str(static),
                            f"{server.base}/api/training/{job}/download/model?compression=stored"], check=True)
            server.stop()
            warm([static])
            ng = Nginx(docroot, free_port(), work)

            def nginx_sample():
                _, secs, _ = median_download(f"{ng.base}/model.zip", args.repeat)
                nginx_rates.append(static.stat().st_size / secs / 1e6)
            nginx_sample()

        print("| mode | archive | first download MB/s | first TTFB ms | repeat MB/s | repeat TTFB ms "
              "| vs nginx | vs cat | server peak RSS |")
        print("|---|---|---|---|---|---|---|---|---|", flush=True)
        variants = []
        for mode in modes:
            variants.append((mode, mode, []))
            if mode == "stored":
                variants.append(("stored, --no-sendfile", mode, ["--no-sendfile"]))
        rows = []
        for label, mode, extra in variants:
            server = Trainbox(root, port, extra=extra)
            url = f"{server.base}/api/training/{job}/download/model?compression={mode}"
            try:
                # First download on a fresh server: CRCs and deflated sizes
                # are computed on the way. Then repeats, as a re-download or
                # a resume finds the caches.
                reset_peak(server.proc.pid)
                got, first_secs, first_ttfb, _ = curl(url)
                if mode == "deflate":
                    secs, ttfb = first_secs, first_ttfb
                else:
                    _, secs, ttfb = median_download(url, args.repeat)
                rss = peak_rss_kib(server.proc.pid)
            finally:
                server.stop()
            rows.append((label, got, first_secs, first_ttfb, secs, ttfb, rss))
            if have_nginx:
                nginx_sample()
        nginx_rate = statistics.median(nginx_rates) if nginx_rates else None
        for label, got, first_secs, first_ttfb, secs, ttfb, rss in rows:
            rate = got / secs / 1e6
            vs_nginx = f"{rate / nginx_rate:.2f}x" if nginx_rate else "n/a"
            print(f"| {label} | {human(got)} | {got / first_secs / 1e6:,.0f} | {first_ttfb * 1000:.1f} | "
                  f"{rate:,.0f} | {ttfb * 1000:.1f} | {vs_nginx} | {rate / cat_rate:.2f}x | "
                  f"{rss / 1024:.1f} MiB |", flush=True)
        if nginx_rate:
            ng.stop()
            static.unlink()
            version = subprocess.run(['nginx', '-v'], capture_output=True, text=True).stderr.strip()
            print(f"\n{version} (sendfile on), one static file of the stored archive's size: "
                  f"{nginx_rate:,.0f} MB/s (median of {len(nginx_rates)} batches taken between the rows: "
                  f"{', '.join(f'{r:,.0f}' for r in nginx_rates)})")
        server = Trainbox(root, port)
        try:
            if "stored" in modes:
                url = f"{server.base}/api/training/{job}/download/model?compression=stored"
                length = rows[[r[0] for r in rows].index("stored")][1]
                middle = length // 2
                curl(url)  # a full download first: the interrupted one being resumed
                got, secs, _, code = curl(url, ["-r", f"{middle}-"])
                print(f"\nresume from the middle (warm CRC cache): HTTP {code}, {human(got)} sent "
                      f"in {secs:.2f} s")
                server.stop()
                server = Trainbox(root, port)
                got, secs, _, code = curl(url, ["-r", f"{middle}-"])
                print(f"resume from the middle after a restart (cold cache: the first half is read "
                      f"for its CRCs, not sent): HTTP {code}, {human(got)} sent in {secs:.2f} s")

            if args.concurrent > 1 and size <= 1 << 30 and "stored" in modes:
                url = f"{server.base}/api/training/{job}/download/model?compression=stored"
                curl(url)
                reset_peak(server.proc.pid)
                start = time.perf_counter()
                procs = [subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-w", "%{size_download}", url],
                                          stdout=subprocess.PIPE, text=True) for _ in range(args.concurrent)]
                sizes_got = [int(p.communicate()[0]) for p in procs]
                wall = time.perf_counter() - start
                rss = peak_rss_kib(server.proc.pid)
                print(f"\n{args.concurrent} concurrent stored downloads: {sum(sizes_got) / wall / 1e6:,.0f} MB/s "
                      f"aggregate ({human(sum(sizes_got))} in {wall:.2f} s), server peak RSS "
                      f"{rss / 1024:.1f} MiB")
            print(flush=True)
        finally:
            server.stop()
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
