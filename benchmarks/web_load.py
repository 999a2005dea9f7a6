#!/usr/bin/env python3
"""Load on the web app: concurrent uploads to ``ser-web`` served on 127.0.0.1.

Starts ``python -m pipeline.webapp`` (``ser-web``) on a free port with ``--model`` (default:
the best bundle of the last ``dvc repro``) and ``--workers``, then, for each ``--clients``
count, sends ``--requests`` uploads of one clip from that many concurrent clients (threads,
each with its own keep-alive connection) and measures:

- ``throughput_rps``: requests per wall second;
- ``p50_ms`` and ``p95_ms``: latency of one request (upload, decode, features, model, reply);
- ``errors``: responses other than 200, or failed connections (with the first reasons);
- ``rss_mib``: resident memory of the server (its process and children, from
  ``/proc/<pid>/status``, Linux) after the first 100 requests, after the first run's last
  request (1,000 by default) and after every later run; growth from 100 to 1,000 requests
  beyond noise would be a leak.

The clip is a real speech file from ``../shared/corpora-sample`` when present (``--clip``
overrides), else a 3 s demo-voice utterance. Prints one JSON object and a Markdown table.
Run from the project root after ``dvc repro``:

    python benchmarks/web_load.py [--clients 8 32] [--requests 1000] [--workers 1] [--model models/cnn]
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "corpora-sample"


def default_clip() -> tuple[str, bytes]:
    found = sorted(SAMPLE.rglob("*.wav")) if SAMPLE.is_dir() else []
    if found:
        return found[0].name, found[0].read_bytes()
    sys.path.insert(0, str(ROOT))
    import soundfile as sf

    from pipeline import demo

    rng = np.random.default_rng(0)
    f0, formants, offsets = demo.speaker_voice(sex="female", rng=rng)
    style = demo.clip_style(emotion="happy", strength=1.0, f0_hz=f0, formant_scale=formants, offsets=offsets, rng=rng)
    buf = io.BytesIO()
    sf.write(buf, demo.synthesize(style=style, duration_s=3.0, sr=16000, rng=rng), 16000, format="WAV", subtype="PCM_16")
    return "demo_voice.wav", buf.getvalue()


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, MiB."""
    def children(p: int) -> list[int]:
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            return []
        return [int(k) for k in kids] + [g for k in kids for g in children(int(k))]

    total = 0
    for p in [pid, *children(pid)]:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pipeline.webapp", "--port", str(port), "--workers", str(args.workers)]
    if args.model:
        cmd += ["--model", str(args.model)]
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"web_load: the server exited: {server.stderr.read()[-2000:]}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("web_load: the server did not answer /health within 180 s")


def run_load(port: int, *, clients: int, requests: int, body: bytes, content_type: str, on_count=None) -> dict:
    local = threading.local()
    done = 0
    lock = threading.Lock()

    def one(_):
        nonlocal done
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        t0 = time.perf_counter()
        try:
            local.conn.request("POST", "/predict", body=body, headers={"Content-Type": content_type})
            r = local.conn.getresponse()
            text = r.read()
            status, reason = r.status, (None if r.status == 200 else text[:200].decode(errors="replace"))
        except (OSError, http.client.HTTPException) as err:
            local.conn.close()
            del local.conn
            status, reason = None, f"{type(err).__name__}: {err}"
        latency = time.perf_counter() - t0
        with lock:
            done += 1
            if on_count is not None:
                on_count(done)
        return status, reason, latency

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - t0
    lat = np.array([r[2] for r in results]) * 1000
    errors = [r for r in results if r[0] != 200]
    return {"clients": clients, "requests": requests, "throughput_rps": round(requests / wall, 2),
            "p50_ms": round(float(np.percentile(lat, 50)), 1), "p95_ms": round(float(np.percentile(lat, 95)), 1),
            "errors": len(errors), "error_examples": sorted({f"{s}: {r}" for s, r, _ in errors})[:3]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="bundle folder (default: ser-web's default, the best bundle)")
    ap.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--requests", type=int, default=1000, help="per client count (default: %(default)s)")
    ap.add_argument("--workers", type=int, default=1, help="ser-web worker processes (default: %(default)s)")
    ap.add_argument("--clip", type=Path, help="the audio file to upload")
    args = ap.parse_args()
    name, data = (args.clip.name, args.clip.read_bytes()) if args.clip else default_clip()
    body, content_type = multipart(name, data)
    port = free_port()
    server = start_server(args, port)
    try:
        rss = {}
        runs = []
        for i, clients in enumerate(args.clients):
            marks = (lambda n: rss.setdefault(100, rss_mib(server.pid)) if n == 100 else None) if i == 0 else None
            runs.append(run_load(port, clients=clients, requests=args.requests, body=body, content_type=content_type,
                                 on_count=marks))
            rss[args.requests * (i + 1)] = rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    out = {"clip": name, "clip_bytes": len(data), "workers": args.workers, "model": str(args.model or "default"),
           "cpus": os.cpu_count(), "runs": runs, "rss_mib": {n: round(v, 1) for n, v in sorted(rss.items())}}
    print(json.dumps(out))
    print("\n| clients | requests | throughput (req/s) | p50 (ms) | p95 (ms) | errors |\n|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        print(f"| {r['clients']} | {r['requests']} | {r['throughput_rps']} | {r['p50_ms']} | {r['p95_ms']} | {r['errors']} |")
    print("\nserver RSS: " + ", ".join(f"{v} MiB after {n} requests" for n, v in out["rss_mib"].items()))
    return 1 if any(r["errors"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
