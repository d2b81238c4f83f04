#!/usr/bin/env python3
"""The bench command: measures cedargate on the reference workloads, each figure beside the peer
or floor measured in the same run.

Usage: bench/run.py [--workloads DIR] [--only demo,large] [--skip-s3]

Needs a release build (`cargo build --release`; the script runs it) and, for the S3 figures, the
tools `.ci/run` installs (moto in the tool venv; the stock `cedar` CLI for the validate peer).

What it measures, per workload (`DIR/<name>/{schema,policies,events.ndjson,jwks.json,workload.json}`):
- validate: `cedargate validate` wall time, against `cedar validate` on the same files.
- decisions: `cedargate invoke` on all events against one event (the floor: process start, key
  and bundle load); the difference over the extra events is the cost of one decision.
- policy size: the `policyDocument` of every response, as API Gateway receives it.
- S3 (moto over loopback): process start to first decision with the bundle published to S3,
  against the same with the bundle in a directory; and the cost of a refresh that finds the
  bundle unchanged (every event re-checks with a conditional GET) against no refresh at all.
"""

import argparse
import json
import os
import http.client
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "cedargate"
TIME = Path("/usr/bin/time").exists()
TOOLS = Path(os.environ.get("CEDARGATE_TOOLS", Path.home() / ".cache" / "cedargate-tools"))


def run(cmd, env=None, stdin=None):
    """Runs a command; returns (wall seconds, stdout bytes, peak RSS in MiB, exit code)."""
    with tempfile.NamedTemporaryFile() as rss_file:
        # GNU time writes the child's peak resident set (KiB) to a file of its own.
        timed = ["/usr/bin/time", "-f", "%M", "-o", rss_file.name] if TIME else []
        start = time.perf_counter()
        p = subprocess.run(timed + cmd, env=env, stdin=stdin, capture_output=True)
        wall = time.perf_counter() - start
        rss = None
        if TIME:
            text = Path(rss_file.name).read_text().strip().splitlines()
            rss = round(int(text[-1]) / 1024, 1) if text and text[-1].isdigit() else None
    if p.returncode not in (0, 3):
        sys.stderr.write(p.stderr.decode(errors="replace")[-2000:])
        raise SystemExit(f"{cmd[0]} failed with {p.returncode}")
    return wall, p.stdout, rss, p.returncode


def best_of(n, cmd, env=None, stdin_path=None):
    times, out, rss, code = [], b"", None, 0
    for _ in range(n):
        f = open(stdin_path, "rb") if stdin_path else None
        try:
            t, out, r, code = run(cmd, env=env, stdin=f)
        finally:
            if f:
                f.close()
        times.append(t)
        rss = r or rss
    return min(times), out, rss, code


def base_env(workload, source):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEDARGATE_")}
    env.update(
        CEDARGATE_ISSUER=workload["issuer"],
        CEDARGATE_AUDIENCE=workload["audience"],
        CEDARGATE_JWKS_FILE=str(workload["dir"] / "jwks.json"),
        CEDARGATE_POLICY_SOURCE=str(source),
        CEDARGATE_LOG="error",
    )
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_validate(w, report):
    d = w["dir"]
    t_ours, _, rss, code = best_of(3, [str(BIN), "validate", "--bundle", str(d)])
    line = {"cedargate validate s": round(t_ours, 2), "exit": code, "peak MiB": rss}
    cedar = shutil.which("cedar")
    if cedar:
        with tempfile.TemporaryDirectory() as tmp:
            schema = Path(tmp) / "schema.cedarschema"
            pols = Path(tmp) / "policies.cedar"
            schema.write_text("\n".join(p.read_text() for p in sorted(d.glob("schema/**/*.cedarschema"))))
            pols.write_text("\n".join(p.read_text() for p in sorted(d.glob("policies/**/*.cedar"))))
            t_cedar, _, _, _ = best_of(
                3, [cedar, "validate", "--schema", str(schema), "--policies", str(pols)]
            )
        line["cedar validate s"] = round(t_cedar, 2)
        line["ratio (cedar / cedargate)"] = round(t_cedar / t_ours, 1)
    report["validate"] = line


def bench_invoke(w, report):
    d = w["dir"]
    events = d / "events.ndjson"
    lines = events.read_bytes().splitlines()
    n = len(lines)
    with tempfile.NamedTemporaryFile(suffix=".ndjson", delete=False) as f:
        f.write(lines[0] + b"\n")
        one = f.name
    env = base_env(w, d)
    t1, _, _, _ = best_of(3, [str(BIN), "invoke", "--events", one], env=env)
    tn, out, rss, _ = best_of(3, [str(BIN), "invoke", "--events", str(events)], env=env)
    os.unlink(one)
    sizes, denied_all, unauthorized = [], 0, 0
    for raw in out.splitlines():
        r = json.loads(raw)
        if "error" in r:
            unauthorized += 1
            continue
        sizes.append(len(json.dumps(r["policyDocument"], separators=(",", ":"))))
    sizes.sort()
    report["decisions"] = {
        "events": n,
        "one event s (floor)": round(t1, 3),
        "all events s": round(tn, 3),
        "per decision ms": round((tn - t1) / max(n - 1, 1) * 1000, 3),
        "peak MiB": rss,
        "unauthorized": unauthorized,
    }
    if sizes:
        report["policy bytes"] = {
            "median": statistics.median(sizes),
            "p95": sizes[int(0.95 * (len(sizes) - 1))],
            "max": sizes[-1],
            "over 8 KiB": sum(1 for s in sizes if s > 8192),
            "of": len(sizes),
        }


class Moto:
    def __init__(self):
        server = TOOLS / "venv" / "bin" / "moto_server"
        if not server.exists():
            raise FileNotFoundError(server)
        self.port = free_port()
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(self.url + "/", timeout=1)
                return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("moto did not start")

    def requests(self, needle):
        self.log.seek(0)
        return sum(1 for l in self.log.read().decode(errors="replace").splitlines() if needle in l)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def conditional_get_ms(port, path, n=200):
    """The floor for an unchanged refresh: one If-None-Match GET answered 304, on a kept-alive
    connection, from a client that does nothing else (mean of n)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    auth = {"Authorization": "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"}
    conn.request("GET", path, headers=auth)
    r = conn.getresponse()
    etag = r.getheader("ETag")
    r.read()
    start = time.perf_counter()
    for _ in range(n):
        conn.request("GET", path, headers=dict(auth, **{"If-None-Match": etag}))
        r = conn.getresponse()
        r.read()
        assert r.status == 304, r.status
    conn.close()
    return (time.perf_counter() - start) / n * 1000


def bench_s3(w, report):
    d = w["dir"]
    moto = Moto()
    try:
        env = base_env(w, d)
        env.update(
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_REGION="us-east-1",
            AWS_ENDPOINT_URL_S3=moto.url,
            AWS_EC2_METADATA_DISABLED="true",
        )
        req = urllib.request.Request(moto.url + "/bench", method="PUT")
        urllib.request.urlopen(req, timeout=10)
        key = f"s3://bench/{d.name}/bundle.json"
        best_of(1, [str(BIN), "publish", "--bundle", str(d), "--to", key], env=env)

        lines = (d / "events.ndjson").read_bytes().splitlines()
        with tempfile.NamedTemporaryFile(suffix=".ndjson", delete=False) as f:
            f.write(lines[0] + b"\n")
            one = f.name
        t_dir, _, _, _ = best_of(3, [str(BIN), "invoke", "--events", one], env=env)
        s3_env = dict(env, CEDARGATE_POLICY_SOURCE=key)
        t_s3, out, _, _ = best_of(3, [str(BIN), "invoke", "--events", one], env=s3_env)
        assert b"policyDocument" in out, out[:300]
        os.unlink(one)

        # Refresh that finds the bundle unchanged: every event re-checks (refresh window 0)
        # against never (a day). The difference per event is one conditional GET answered 304.
        sample = min(len(lines), 500)
        with tempfile.NamedTemporaryFile(suffix=".ndjson", delete=False) as f:
            f.write(b"\n".join(lines[:sample]) + b"\n")
            some = f.name
        never = dict(s3_env, CEDARGATE_POLICY_REFRESH_SECONDS="86400")
        always = dict(s3_env, CEDARGATE_POLICY_REFRESH_SECONDS="0")
        t_never, _, _, _ = best_of(3, [str(BIN), "invoke", "--events", some], env=never)
        before = moto.requests(" 304 ")
        t_always, _, _, _ = best_of(3, [str(BIN), "invoke", "--events", some], env=always)
        not_modified = moto.requests(" 304 ") - before
        os.unlink(some)
        floor = conditional_get_ms(moto.port, f"/bench/{d.name}/bundle.json")
        report["s3"] = {
            "first decision, bundle from S3 s": round(t_s3, 3),
            "first decision, bundle from directory s": round(t_dir, 3),
            "events": sample,
            "refresh never s": round(t_never, 3),
            "refresh every event s": round(t_always, 3),
            "304 answers seen (3 runs)": not_modified,
            "unchanged refresh ms": round((t_always - t_never) / sample * 1000, 3),
            "floor: one conditional GET (304) from Python, ms": round(floor, 3),
        }
    finally:
        moto.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workloads", default=str(ROOT.parent / "shared" / "bench"))
    ap.add_argument("--only", default="")
    ap.add_argument("--skip-s3", action="store_true")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    root = Path(args.workloads)
    names = [n for n in args.only.split(",") if n] or sorted(
        p.name for p in root.iterdir() if (p / "workload.json").exists()
    )
    results = {}
    for name in names:
        d = root / name
        w = json.loads((d / "workload.json").read_text())
        w["dir"] = d
        report = {}
        bench_validate(w, report)
        bench_invoke(w, report)
        if not args.skip_s3:
            bench_s3(w, report)
        results[name] = report
        print(json.dumps({name: report}, indent=2), flush=True)
    return results


if __name__ == "__main__":
    main()
