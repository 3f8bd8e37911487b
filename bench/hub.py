#!/usr/bin/env python3
"""The Hub routes: `snapshot_download` of a finished job's model (1 GiB by
default, a safetensors file and the small files beside it) with the real
huggingface_hub client, against `curl` of the same model as a stored ZIP
and of the one large file through `resolve`, in the same run, each into a
file on the same disk; the large file read by the client's own HTTP library
(httpx, 10 MiB chunks, as `hf_hub_download` reads) from trainbox and from
nginx serving the same file, which shows where the client's time goes; and
how long after the job finished its `main` revision could first be resolved
(the digest worker hashing it).

    bench/hub.py [--bin target/release/trainbox] [--size 1G] [--python target/test-python/bin/python]

The python must have huggingface_hub (./run-tests makes one). Everything
runs on loopback and stops by itself.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units else int(text)


def make_job(root, job_id, size):
    model = root / "jobs" / job_id / "model"
    model.mkdir(parents=True)
    block = os.urandom(1 << 20)
    with open(model / "model.safetensors", "wb") as f:
        for i in range(size >> 20):
            f.write(block[i % 7:] + block[: i % 7])
    for name, text in [("config.json", {"model_type": "gpt2", "n_embd": 8}),
                       ("generation_config.json", {"max_length": 32}),
                       ("tokenizer_config.json", {"tokenizer_class": "GPT2Tokenizer"})]:
        (model / name).write_text(json.dumps(text))
    # Ten checkpoints of ten files each beside the model, written a while
    # ago: what a `main` revision is walked past on every request.
    for step in range(100, 1100, 100):
        checkpoint = model / f"checkpoint-{step}"
        checkpoint.mkdir()
        for n in range(9):
            (checkpoint / f"part-{n}.bin").write_bytes(os.urandom(4096))
        (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    old = time.time() - 600
    for path in model.rglob("*"):
        os.utime(path, (old, old))
    (root / "jobs" / job_id / "job.json").write_text(json.dumps({
        "id": job_id, "recipe": "bench", "status": "completed",
        "created_at": "2026-11-29T00:00:00.000Z"}))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def curl(url, out):
    t = time.monotonic()
    subprocess.run(["curl", "-sf", "-o", str(out), url], check=True)
    return time.monotonic() - t


HTTPX_GET = """
import sys
try:
    import httpx2 as httpx
except ImportError:
    import httpx
with httpx.Client() as client, client.stream("GET", sys.argv[1]) as r, open(sys.argv[2], "wb") as f:
    r.raise_for_status()
    for chunk in r.iter_bytes(chunk_size=10 * 1024 * 1024):
        f.write(chunk)
"""


def timed(cmd, env=None):
    t = time.monotonic()
    subprocess.run(cmd, check=True, env=env)
    return time.monotonic() - t


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=str(ROOT / "target/release/trainbox"))
    parser.add_argument("--size", default="1G")
    parser.add_argument("--python", default=str(ROOT / "target/test-python/bin/python"))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(prefix="trainbox-hub-") as tmp:
        tmp = Path(tmp)
        root = tmp / "root"
        make_job(root, "big", size)
        # Page-cache warm, as a just-finished job's files are.
        subprocess.run(["cat", str(root / "jobs/big/model/model.safetensors")], stdout=subprocess.DEVNULL, check=True)
        from bench import Nginx
        # nginx's workers run as nobody: they must be able to reach the file.
        for path in [tmp, root, root / "jobs", root / "jobs/big", root / "jobs/big/model"]:
            path.chmod(0o755)
        (tmp / "nginx").mkdir()
        nginx = Nginx(root / "jobs/big/model", free_port(), tmp / "nginx")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        server = subprocess.Popen([args.bin, "serve", "--root", str(root), "--listen", f"127.0.0.1:{port}"],
                                  stderr=subprocess.DEVNULL)
        try:
            revisions = None
            while time.monotonic() - started < 120:
                try:
                    with urllib.request.urlopen(f"{base}/api/models/trainbox/big", timeout=10) as r:
                        revisions = json.load(r)
                    break
                except (urllib.error.URLError, ConnectionError):
                    time.sleep(0.05)
            ready = time.monotonic() - started
            assert revisions, "main never became resolvable"
            print(f"model: {size / 2**30:.2f} GiB in {len(revisions['siblings'])} files")
            print(f"main resolvable {ready:.2f} s after the server started on the finished job (digest worker)")
            # The metadata request the client makes for every file (HEAD
            # at the commit), over one kept-alive connection.
            import http.client
            commit = revisions["sha"]
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            heads = []
            for _ in range(300):
                t = time.perf_counter()
                conn.request("HEAD", f"/trainbox/big/resolve/{commit}/config.json")
                conn.getresponse().read()
                heads.append(time.perf_counter() - t)
            heads.sort()
            print(f"HEAD of a file at the commit (main beside 10 checkpoints of 10 files): "
                  f"p50 {heads[150] * 1000:.2f} ms, p99 {heads[296] * 1000:.2f} ms")
            rows = {"curl ZIP (stored)": [], "curl resolve (one file)": [], "curl nginx (one file)": [],
                    "httpx resolve (one file)": [], "httpx nginx (one file)": [], "snapshot_download": []}
            for _ in range(args.runs):
                out = tmp / "out"
                out.mkdir()
                rows["curl ZIP (stored)"].append(
                    curl(f"{base}/api/training/big/download/model?compression=stored", out / "model.zip"))
                rows["curl resolve (one file)"].append(
                    curl(f"{base}/trainbox/big/resolve/main/model.safetensors", out / "model.safetensors"))
                rows["curl nginx (one file)"].append(
                    curl(f"{nginx.base}/model.safetensors", out / "nginx.bin"))
                rows["httpx resolve (one file)"].append(timed(
                    [args.python, "-c", HTTPX_GET, f"{base}/trainbox/big/resolve/main/model.safetensors",
                     str(out / "httpx.bin")]))
                rows["httpx nginx (one file)"].append(timed(
                    [args.python, "-c", HTTPX_GET, f"{nginx.base}/model.safetensors", str(out / "httpx.bin")]))
                env = dict(os.environ, HF_ENDPOINT=base, HF_HOME=str(tmp / "hf-home"),
                           HF_HUB_CACHE=str(tmp / "cache"), HF_HUB_DISABLE_TELEMETRY="1",
                           HF_HUB_DISABLE_PROGRESS_BARS="1")
                env.pop("HF_TOKEN", None)
                rows["snapshot_download"].append(timed(
                    [args.python, "-c", "from huggingface_hub import snapshot_download as s; s('trainbox/big')"],
                    env=env))
                shutil.rmtree(out)
                shutil.rmtree(tmp / "cache")
            reference = min(rows["curl ZIP (stored)"])
            print(f"{'':26} {'best s':>8} {'MB/s':>8} {'vs curl ZIP':>12}")
            for name, times in rows.items():
                best = min(times)
                print(f"{name:26} {best:8.2f} {size / best / 1e6:8.0f} {reference / best:11.2f}x")
            print("(the python rows include starting python; snapshot_download also imports huggingface_hub)")
        finally:
            server.terminate()
            server.wait(timeout=30)
            nginx.stop()


if __name__ == "__main__":
    main()
