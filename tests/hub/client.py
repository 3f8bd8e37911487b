"""The real huggingface_hub client against a trainbox server, for tests/hub.rs.

Usage: client.py COMMAND REPO REVISION [PATH]; the endpoint, cache, token and
offline mode come from the HF_* environment the test sets. Prints one JSON
document: what the client got (files by path with their SHA-256, read back
from where the client put them), or the exception it raised.
"""

import hashlib
import json
import pathlib
import sys


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree(root):
    root = pathlib.Path(root)
    return {
        str(p.relative_to(root)): sha256(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".cache" not in p.relative_to(root).parts
    }


def run(command, repo, revision, path=None):
    import huggingface_hub as hub

    if command == "info":
        info = hub.HfApi().model_info(repo, revision=revision, files_metadata=True)
        return {
            "sha": info.sha,
            "siblings": {s.rfilename: s.lfs.sha256 for s in info.siblings},
        }
    if command == "refs":
        refs = hub.HfApi().list_repo_refs(repo)
        return {
            "branches": {r.name: r.target_commit for r in refs.branches},
            "tags": {r.name: r.target_commit for r in refs.tags},
        }
    if command == "file":
        local = hub.hf_hub_download(repo, path, revision=revision)
        return {"path": local, "sha256": sha256(local)}
    if command == "snapshot":
        local = hub.snapshot_download(repo, revision=revision)
        return {"dir": local, "files": tree(local)}
    if command == "transformers":
        from transformers import AutoConfig, AutoTokenizer

        config = AutoConfig.from_pretrained(repo, revision=revision)
        tokenizer = AutoTokenizer.from_pretrained(repo, revision=revision)
        return {
            "model_type": config.model_type,
            "n_embd": config.n_embd,
            "ids": tokenizer(path)["input_ids"],
        }
    raise SystemExit(f"unknown command {command}")


def main():
    try:
        result = run(*sys.argv[1:])
    except Exception as error:  # the test asserts on which one
        names = [cls.__name__ for cls in type(error).__mro__]
        result = {"error": type(error).__name__, "classes": names, "message": str(error)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
