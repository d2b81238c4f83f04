#!/usr/bin/env python3
"""The bench command: measures cedargate on the reference workloads, each figure beside the peer
or floor measured in the same run, and beside the release before this work (a pinned commit,
built in the same run).

Usage: bench/run.py [--workloads DIR] [--only demo,large] [--skip-s3] [--skip-baseline]
                    [--repeats N] [--callgrind]

Builds the release binary first (`cargo build --release`), and the baseline commit's release
binary once (in target/bench/baseline-<commit>, reused by later runs). The S3 figures need the
tools `.ci/run` installs (moto in the tool venv; the stock `cedar` CLI for the validate peer).

What it measures, per workload (`DIR/<name>/{schema,policies,*.ndjson,jwks.json,workload.json}`):
- validate: `cedargate validate` wall time, against `cedar validate` on the same files.
- per event, for every event stream of the workload (`events.ndjson`: tokens that repeat;
  `events-unique.ndjson`: a token never seen before on every event; the `-request` variants:
  REST REQUEST events with a fresh `X-Amzn-Trace-Id` each): `cedargate invoke` on the whole
  stream against one event (the floor: process start, key and bundle load), the difference
  spread over the extra events, best of `--repeats` runs. The same for the baseline binary,
  and beside both the RSA-2048 verify floor (`openssl speed rsa2048`, same run): a never-seen
  token costs at least one signature check. With `--callgrind`, the same differences are also
  counted in instructions (valgrind), which do not depend on what else the machine is doing.
- policy size: the `policyDocument` of every response to `events.ndjson`, as API Gateway
  receives it, against the 8 KB portable target.
- S3 (moto over loopback): process start to first decision with the bundle published to S3,
  against the same with the bundle in a directory; and the cost of a refresh that finds the
  bundle unchanged (every event re-checks with a conditional GET) against no refresh at all.

The output is JSON, one document per workload, printed as each workload finishes.
"""

import argparse
import http.client
import json
import os
import re
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

# The release before the request-core work: every figure is also measured for it.
BASELINE = "78923d6"

# Event streams, in the order they are reported, with what each stands for.
STREAMS = [
    ("events.ndjson", "repeat tokens (TOKEN events)"),
    ("events-request.ndjson", "repeat tokens (REQUEST events, fresh X-Amzn-Trace-Id)"),
    ("events-unique.ndjson", "never-seen tokens (TOKEN events)"),
    ("events-unique-request.ndjson", "never-seen tokens (REQUEST events, fresh X-Amzn-Trace-Id)"),
]


def run(cmd, env=None, stdin=None, timed=True):
    """Runs a command; returns (wall seconds, stdout bytes, peak RSS in MiB, exit code)."""
    with tempfile.NamedTemporaryFile() as rss_file:
        # GNU time writes the child's peak resident set (KiB) to a file of its own.
        wrap = ["/usr/bin/time", "-f", "%M", "-o", rss_file.name] if (TIME and timed) else []
        start = time.perf_counter()
        p = subprocess.run(wrap + cmd, env=env, stdin=stdin, capture_output=True)
        wall = time.perf_counter() - start
        rss = None
        if TIME and timed:
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


# ---- The binaries -------------------------------------------------------------------------


class Binary:
    """A cedargate binary to measure, with the label its figures carry."""

    def __init__(self, path, label):
        self.path = Path(path)
        self.label = label

    def cmd(self, *args):
        return [str(self.path), *args]


def build_current():
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return Binary(BIN, "cedargate")


def build_baseline(commit=BASELINE):
    """The baseline commit's release binary, built once in a worktree of its own."""
    home = ROOT / "target" / "bench" / f"baseline-{commit}"
    binary = home / "target" / "release" / "cedargate"
    if not binary.exists():
        src = home / "src"
        if not src.exists():
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(src), commit], cwd=ROOT, check=True
            )
        sys.stderr.write(f"building the baseline {commit} (once; a few minutes)\n")
        env = dict(os.environ, CARGO_TARGET_DIR=str(home / "target"))
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=src, env=env, check=True)
    return Binary(binary, f"baseline {commit}")


# ---- Floors -------------------------------------------------------------------------------


def rsa_verify_floor_us():
    """One RSA-2048 signature verification, in microseconds (`openssl speed`, same run)."""
    p = subprocess.run(
        ["openssl", "speed", "-seconds", "3", "rsa2048"], capture_output=True, text=True
    )
    for line in p.stdout.splitlines():
        m = re.match(r"\s*rsa\s+2048 bits\s+([\d.]+)s\s+([\d.]+)s\s+([\d.]+)\s+([\d.]+)", line)
        if m:
            return round(1e6 / float(m.group(4)), 2)
    return None


# ---- Figures ------------------------------------------------------------------------------


def bench_validate(w, report):
    d = w["dir"]
    t_ours, _, rss, code = best_of(3, w["bin"].cmd("validate", "--bundle", str(d)))
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


def one_event_file(events):
    first = events.read_bytes().splitlines()[0]
    f = tempfile.NamedTemporaryFile(suffix=".ndjson", delete=False)
    f.write(first + b"\n")
    f.close()
    return f.name


def stream_cost(binary, w, events, repeats):
    """Microseconds per event beyond the first, best of `repeats` (3 for streams that take
    seconds: their noise is already small against them); and the stream's output."""
    env = base_env(w, w["dir"])
    n = len(events.read_bytes().splitlines())
    one = one_event_file(events)
    try:
        first, out, rss, _ = run(binary.cmd("invoke", "--events", str(events)), env=env)
        more = repeats if first < 1.0 else min(repeats, 3)
        t1, _, _, _ = best_of(more, binary.cmd("invoke", "--events", one), env=env)
        tn, out2, rss2, _ = best_of(max(more - 1, 1), binary.cmd("invoke", "--events", str(events)), env=env)
        tn, out, rss = min(first, tn), out2 or out, rss2 or rss
    finally:
        os.unlink(one)
    return (tn - t1) / max(n - 1, 1) * 1e6, out, rss, n, t1, first


def callgrind_instructions(binary, w, path):
    env = base_env(w, w["dir"])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *binary.cmd("invoke", "--events", path)],
            env=env,
            capture_output=True,
            check=True,
        )
        for line in out.read_text(errors="replace").splitlines():
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    return None


def callgrind_cost(binary, w, events):
    n = len(events.read_bytes().splitlines())
    one = one_event_file(events)
    try:
        i1 = callgrind_instructions(binary, w, one)
        i_n = callgrind_instructions(binary, w, str(events))
    finally:
        os.unlink(one)
    if i1 is None or i_n is None:
        return None
    return round((i_n - i1) / max(n - 1, 1))


def policy_sizes(out):
    sizes, unauthorized = [], 0
    for raw in out.splitlines():
        r = json.loads(raw)
        if "error" in r:
            unauthorized += 1
            continue
        if "policyDocument" in r:
            sizes.append(len(json.dumps(r["policyDocument"], separators=(",", ":"))))
    sizes.sort()
    return sizes, unauthorized


def bench_streams(w, report, binaries, repeats, callgrind, floor):
    d = w["dir"]
    streams = {}
    for name, meaning in STREAMS:
        events = d / name
        if not events.exists():
            continue
        entry = {"stands for": meaning}
        for binary in binaries:
            us, out, rss, n, t1, first = stream_cost(binary, w, events, repeats)
            entry["events"] = n
            entry[f"{binary.label} µs per event"] = round(us, 1)
            entry[f"{binary.label} peak MiB"] = rss
            entry[f"{binary.label} one event s (floor)"] = round(t1, 3)
            if floor:
                entry[f"{binary.label} / RSA-2048 verify floor"] = round(us / floor, 2)
            # Under valgrind a run takes some fifty times longer: only for the short streams.
            if callgrind and first < 1.0:
                entry[f"{binary.label} instructions per event"] = callgrind_cost(binary, w, events)
            if name == "events.ndjson" and binary is binaries[0]:
                sizes, unauthorized = policy_sizes(out)
                entry["unauthorized"] = unauthorized
                if sizes:
                    report["policy bytes"] = {
                        "median": statistics.median(sizes),
                        "p95": sizes[int(0.95 * (len(sizes) - 1))],
                        "max": sizes[-1],
                        "over 8 KiB": sum(1 for s in sizes if s > 8192),
                        "of": len(sizes),
                    }
        if len(binaries) > 1:
            ours = entry[f"{binaries[0].label} µs per event"]
            theirs = entry[f"{binaries[1].label} µs per event"]
            if ours > 0:
                entry[f"speed-up over {binaries[1].label}"] = round(theirs / ours, 1)
        streams[name] = entry
    report["per event"] = streams


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
    binary = w["bin"]
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
        best_of(1, binary.cmd("publish", "--bundle", str(d), "--to", key), env=env)

        lines = (d / "events.ndjson").read_bytes().splitlines()
        one = one_event_file(d / "events.ndjson")
        t_dir, _, _, _ = best_of(3, binary.cmd("invoke", "--events", one), env=env)
        s3_env = dict(env, CEDARGATE_POLICY_SOURCE=key)
        t_s3, out, _, _ = best_of(3, binary.cmd("invoke", "--events", one), env=s3_env)
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
        t_never, _, _, _ = best_of(3, binary.cmd("invoke", "--events", some), env=never)
        before = moto.requests(" 304 ")
        t_always, _, _, _ = best_of(3, binary.cmd("invoke", "--events", some), env=always)
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
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--repeats", type=int, default=11, help="runs per stream; the best counts")
    ap.add_argument("--callgrind", action="store_true", help="also count instructions per event")
    args = ap.parse_args()
    current = build_current()
    binaries = [current] if args.skip_baseline else [current, build_baseline()]
    floor = rsa_verify_floor_us()
    root = Path(args.workloads)
    names = [n for n in args.only.split(",") if n] or sorted(
        p.name for p in root.iterdir() if (p / "workload.json").exists()
    )
    results = {"RSA-2048 verify floor µs (openssl speed, same run)": floor}
    print(json.dumps(results), flush=True)
    for name in names:
        d = root / name
        w = json.loads((d / "workload.json").read_text())
        w["dir"] = d
        w["bin"] = current
        report = {}
        bench_validate(w, report)
        bench_streams(w, report, binaries, args.repeats, args.callgrind, floor)
        if not args.skip_s3:
            bench_s3(w, report)
        results[name] = report
        print(json.dumps({name: report}, indent=2, ensure_ascii=False), flush=True)
    if "demo" in results:
        print(json.dumps({"goals (demo)": goals(results["demo"], current.label)}, indent=2, ensure_ascii=False), flush=True)
    return results


def goals(report, label):
    """The request core's goals on the demo workload, each with the figure of this run: a
    never-seen token at most twice the RSA-2048 verify floor (TOKEN and REQUEST events), a
    repeat token at most 10 µs."""
    streams = report.get("per event", {})
    out = {}
    for name, what in [
        ("events-unique.ndjson", "never-seen tokens, TOKEN events: ≤ 2× the RSA-2048 verify floor"),
        ("events-unique-request.ndjson", "never-seen tokens, REQUEST events: ≤ 2× the RSA-2048 verify floor"),
    ]:
        ratio = streams.get(name, {}).get(f"{label} / RSA-2048 verify floor")
        if ratio is not None:
            out[what] = f"{ratio}× ({'met' if ratio <= 2 else 'NOT met'})"
    for name, what in [
        ("events.ndjson", "repeat tokens, TOKEN events: ≤ 10 µs"),
        ("events-request.ndjson", "repeat tokens, REQUEST events: ≤ 10 µs"),
    ]:
        us = streams.get(name, {}).get(f"{label} µs per event")
        if us is not None:
            out[what] = f"{us} µs ({'met' if us <= 10 else 'NOT met'})"
    return out


if __name__ == "__main__":
    main()
