#!/usr/bin/env python3
"""A load test of `cedargate serve` with a real load generator (wrk): throughput, latency, and
that every answer under load is the right one and memory stays flat. Not part of CI.

Usage: bench/load.py [--binary PATH] [--duration 60] [--connections 64] [--threads 2]
                     [--fresh N] [--max-rss-growth 0.2]

What it does:
- starts `cedargate serve --port 0` (127.0.0.1 only) in a temporary directory holding a copy of
  the demo bundle (`schema/`, `policies/`, `entities/`), so the development issuer's key
  (`.cedargate/dev-issuer.pem`) is made there, not in the checkout; CEDARGATE_LOG=warn, its
  stderr in target/bench/load/serve.log, scanned afterwards for panics and errors;
- mints one token per demo user with `cedargate token --port P` (the cached tokens: reused, so
  the gateway's cache answers), signs the never-seen tokens itself with the issuer's key (a
  process per token is far too slow; the same claims as `cedargate token`, checked byte for byte
  against its tokens first: RS256 signatures are deterministic), and makes bad tokens (garbage,
  forged signatures, expired or for another audience or issuer);
- sends every kind of request once and checks the answer, then runs wrk with bench/load.lua:
  a fixed cycle per thread of cached tokens on allowed routes (200) and denied routes (403),
  never-seen tokens (200) and bad tokens (401); see bench/load.lua for how each answer is
  attributed to its request and checked;
- samples serve's resident memory (VmRSS) through the run, and reports it at 10 s and at the
  end (at a sixth of the run for runs shorter than 60 s).

It prints requests/s, p50/p99 latency, the answers by kind, 5xx, wrong answers and socket
errors, and exits 1 if there was any 5xx, any wrong answer, a panic, or if resident memory at
the end is more than --max-rss-growth above the figure at 10 s. The default binary is
target/release/cedargate, built with `cargo build --release` only when it is missing; the
script measures whatever binary is there, so rebuild after changing the code.
"""

import argparse
import base64
import concurrent.futures
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

try:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
except ImportError:  # pragma: no cover - a message, not a traceback
    TOOLS = Path(os.environ.get("CEDARGATE_TOOLS", Path.home() / ".cache" / "cedargate-tools"))
    venv = TOOLS / "venv" / "bin" / "python"
    if venv.exists() and Path(sys.executable).resolve() != venv.resolve():
        # The tool venv `.ci/run` installs has `cryptography` (moto needs it).
        os.execv(str(venv), [str(venv), *sys.argv])
    raise SystemExit("bench/load.py needs the Python package `cryptography` (`.ci/run` installs it in its tool venv)")

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "cedargate"
OUT = ROOT / "target" / "bench" / "load"
LUA = Path(__file__).resolve().parent / "load.lua"

BODY = '{"name":"Rex","kind":"dog"}'

# One route each demo user may call and, where there is one, a route they may not (see the
# README's demo users and policies/). The allowed routes also serve the never-seen tokens.
ALLOWED = {
    "reader": ("GET", "/prod/pets/42", None),
    "editor": ("PUT", "/prod/pets/42", BODY),
    "admin": ("DELETE", "/prod/pets/42", None),
    "operator": ("GET", "/prod/admin/users", None),
    "analyst": ("GET", "/prod/reports/7", None),
    "guest": ("POST", "/prod/api/private", BODY),
}
DENIED = {
    "reader": ("DELETE", "/prod/pets/42", None),
    "editor": ("GET", "/prod/admin/users", None),
    "operator": ("DELETE", "/prod/pets/42", None),  # guardrails.cedar#delete-needs-scope
    "analyst": ("GET", "/prod/pets", None),
    "guest": ("GET", "/prod/pets/42", None),
}
USERS = list(ALLOWED)

# The cycle every wrk thread sends, in order: 7 cached-allowed, 5 cached-denied, 1 never-seen
# token, 3 bad tokens (each slot taking turns through its variants). Bad tokens carry the
# reader's claims on the reader's allowed route: accepted by mistake, they would get a 200.
CYCLE = [
    ("ca", "reader"), ("cd", "reader"), ("ca", "editor"), ("fr", None),
    ("cd", "editor"), ("ca", "admin"), ("bg", "reader"), ("cd", "operator"),
    ("ca", "analyst"), ("bf", "reader"), ("cd", "analyst"), ("ca", "guest"),
    ("ca", "reader"), ("cd", "guest"), ("ca", "operator"), ("bc", "reader"),
]
KIND = {"ca": "cached-allowed", "cd": "cached-denied", "fr": "fresh",
        "bg": "bad", "bf": "bad", "bc": "bad"}
SUBKIND = {"bg": "bad-garbage", "bf": "bad-forged", "bc": "bad-claims"}
STATUS = {"ca": 200, "cd": 403, "fr": 200, "bg": 401, "bf": 401, "bc": 401}

# Never-seen tokens per second of the run that the default pool allows for.
FRESH_PER_SECOND = 3000


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compact(value):
    """JSON as serde_json writes it: no spaces, keys in their order, UTF-8 unescaped."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


# ---- serve ---------------------------------------------------------------------------------


class Serve:
    """`cedargate serve --port 0` in `work`; stopped by stop(), whatever happened."""

    def __init__(self, binary, work, log):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CEDARGATE_")}
        env["CEDARGATE_LOG"] = "warn"
        self.banner = work / "serve.out"
        self.log = log
        with open(self.banner, "wb") as out, open(log, "wb") as err:
            self.proc = subprocess.Popen(
                [str(binary), "serve", "--port", "0"], cwd=work, env=env, stdout=out, stderr=err
            )
        self.pid = self.proc.pid
        deadline = time.monotonic() + 30
        while True:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)/", self.banner.read_text())
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"serve did not start:\n{Path(log).read_text()[-2000:]}")
            time.sleep(0.05)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # serve stops on Ctrl-C
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def rss_kib(self):
        return proc_status(self.pid).get("VmRSS")

    def cpu_seconds(self):
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status(pid):
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                out[name] = int(value.split()[0])
    except FileNotFoundError:
        pass
    return out


def listening_addresses(pid):
    """The local addresses of the process's listening TCP sockets (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            m = re.match(r"socket:\[(\d+)\]", os.readlink(fd))
        except OSError:
            continue
        if m:
            inodes.add(m.group(1))
    found = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            f = line.split()
            if f[3] != "0A" or f[9] not in inodes:  # 0A: LISTEN
                continue
            host, port = f[1].split(":")
            if v6:
                found.append(f"[{host}]:{int(port, 16)}")
            else:
                ip = ".".join(str(b) for b in reversed(bytes.fromhex(host)))
                found.append(f"{ip}:{int(port, 16)}")
    return found


def call(port, method, path, header, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": header}
    if body:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


def status_doc(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/status")
    doc = json.loads(conn.getresponse().read())
    conn.close()
    return doc


# ---- tokens --------------------------------------------------------------------------------


class Signer:
    """Signs claims as the development issuer does (RS256, its header with its `kid`)."""

    def __init__(self, pem, header):
        self.key = serialization.load_pem_private_key(pem, password=None)
        self.header = b64(compact(header))

    def sign(self, claims, key=None, header=None):
        head = b64(compact(header)) if header else self.header
        data = f"{head}.{b64(compact(claims))}".encode()
        sig = (key or self.key).sign(data, padding.PKCS1v15(), hashes.SHA256())
        return f"{data.decode()}.{b64(sig)}"


_signer = None


def _init_signer(pem, header):
    global _signer
    _signer = Signer(pem, header)


def _sign_batch(batch):
    return [_signer.sign(claims) for claims in batch]


def mint_reference_tokens(binary, work, port):
    """One token per demo user from `cedargate token` itself: the cached tokens."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEDARGATE_")}
    tokens = {}
    for user in USERS:
        p = subprocess.run(
            [str(binary), "token", "--user", user, "--port", str(port)],
            cwd=work, env=env, capture_output=True, text=True, check=True,
        )
        tokens[user] = p.stdout.strip()
    return tokens


def decode(token):
    head, payload, _ = token.split(".")
    return json.loads(unb64(head)), json.loads(unb64(payload))


def fresh_claims(templates, n, now):
    """n claim sets, each unique: the demo users in turn, each with an `iat` and lifetime
    `cedargate token` could have given it (issued up to 30 minutes ago, lifetime 2 h plus up to
    a few minutes), so every token differs from every other and all stay valid for 90 minutes."""
    out = []
    for i in range(n):
        user = USERS[i % len(USERS)]
        j = i // len(USERS)
        claims = dict(templates[user])
        claims["iat"] = now - j % 1800
        claims["exp"] = claims["iat"] + 7200 + j // 1800
        out.append((user, claims))
    return out


def sign_fresh(pem, header, claims, workers):
    batches = [[c for _, c in claims[i:i + 2000]] for i in range(0, len(claims), 2000)]
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, initializer=_init_signer, initargs=(pem, header)
    ) as pool:
        signed = [t for batch in pool.map(_sign_batch, batches) for t in batch]
    return [(user, token) for (user, _), token in zip(claims, signed)]


def bad_tokens(signer, template, header, now, port):
    """Headers that must each get 401, grouped as the cycle's bad slots take them."""
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    good = signer.sign(dict(template, iat=now, exp=now + 3600))
    head, payload, sig = good.split(".")
    flipped = bytearray(unb64(sig))
    flipped[len(flipped) // 2] ^= 0x01
    garbage = [
        "Bearer not-a-token",
        "Bearer " + ".".join(b64(os.urandom(24)) for _ in range(3)),
        "Basic dXNlcjpwYXNzd29yZA==",
        "Bearer " + b64(compact({"alg": "none", "typ": "JWT"})) + "." + payload + ".",
        "Bearer " + good[: len(good) // 2],
        "Bearer",
    ]
    forged = [
        "Bearer " + f"{head}.{payload}.{b64(bytes(flipped))}",
        "Bearer " + signer.sign(dict(template, iat=now, exp=now + 3600), key=other_key),
        "Bearer " + signer.sign(dict(template, iat=now, exp=now + 3600), key=other_key,
                                header=dict(header, kid="another-key")),
    ]
    claims = [
        "Bearer " + signer.sign(dict(template, iat=now - 7200, exp=now - 3600)),  # expired
        "Bearer " + signer.sign(dict(template, iat=now, exp=now + 3600, aud="https://elsewhere.example")),
        "Bearer " + signer.sign(dict(template, iat=now, exp=now + 3600,
                                     iss=f"http://127.0.0.1:{port + 1}/dev-issuer")),
        "Bearer " + signer.sign(dict(template, iat=now + 3600, exp=now + 7200)),  # issued in the future
    ]
    return {"bg": garbage, "bf": forged, "bc": claims}


# ---- the run's data for wrk ---------------------------------------------------------------


def lua_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def slots(cached, bad):
    out = []
    for code, user in CYCLE:
        if code == "fr":
            out.append({"kind": "fresh"})
            continue
        method, path, body = (ALLOWED if code in ("ca", "bg", "bf", "bc") else DENIED)[user]
        headers = bad[code] if code in bad else ["Bearer " + cached[user]]
        out.append({"kind": KIND[code], "subkind": SUBKIND.get(code), "tag": f"{code}.{user}",
                    "method": method, "path": path, "body": body, "headers": headers})
    return out


def write_mix(run_dir, cycle, subs, per_thread):
    def field(k, v):
        if v is None:
            return None
        if isinstance(v, list):
            return f"{k} = {{ " + ", ".join(lua_string(x) for x in v) + " }"
        return f"{k} = {lua_string(v)}"

    lines = ["-- Written by bench/load.py for bench/load.lua: this run's request cycle.", "return {"]
    lines.append(f"  connections_per_thread = {per_thread},")
    lines.append("  cycle = {")
    for slot in cycle:
        parts = [f for f in (field(k, v) for k, v in slot.items()) if f]
        lines.append("    { " + ", ".join(parts) + " },")
    lines.append("  },")
    lines.append("  fresh_routes = {")
    for user, (method, path, body) in ALLOWED.items():
        parts = [f for f in (field("method", method), field("path", path), field("body", body)) if f]
        lines.append(f"    {user} = {{ " + ", ".join(parts) + " },")
    lines.append("  },")
    lines.append("  subs = { " + ", ".join(f"{u} = {lua_string(s)}" for u, s in subs.items()) + " },")
    lines.append("}")
    (run_dir / "mix.lua").write_text("\n".join(lines) + "\n")


# ---- checks before the run -----------------------------------------------------------------


def warm_up(port, cycle, fresh_samples, subs):
    """Every kind of request once, in order (each cached token first on its allowed route, so
    the cached answer is the one every later request reuses). Returns the mismatches, and the
    denied slots whose 403 says "with an explicit deny" (the cached policy has a Deny for them)."""
    wrong, explicit = [], set()
    order = sorted(cycle, key=lambda s: s["kind"] != "cached-allowed")
    for slot in order:
        if slot["kind"] == "fresh":
            continue
        expected = STATUS[slot["tag"].split(".")[0]]
        for header in slot["headers"]:
            status, body = call(port, slot["method"], slot["path"] + "?load=" + slot["tag"], header, slot["body"])
            ok = status == expected
            if ok and status == 200:
                ok = f'"principalId":"{subs[slot["tag"].split(".")[1]]}"'.encode() in body
            if not ok:
                wrong.append(f"{slot['tag']} {slot['method']} {slot['path']}: {status} (expected {expected}) {body[:120]!r}")
            if status == 403 and b"with an explicit deny" in body:
                explicit.add(slot["tag"])
    for user, token in fresh_samples:
        method, path, body = ALLOWED[user]
        status, data = call(port, method, path + f"?load=fr.{user}", "Bearer " + token, body)
        if status != 200:
            wrong.append(f"fresh {user} {method} {path}: {status} {data[:120]!r}")
    return wrong, explicit


# ---- the run -------------------------------------------------------------------------------


class Sampler(threading.Thread):
    """serve's VmRSS twice a second while wrk runs."""

    def __init__(self, serve):
        super().__init__(daemon=True)
        self.serve = serve
        self.samples = []
        self.stopped = threading.Event()
        self.start_time = time.monotonic()

    def run(self):
        while not self.stopped.is_set():
            rss = self.serve.rss_kib()
            if rss is not None:
                self.samples.append((time.monotonic() - self.start_time, rss))
            self.stopped.wait(0.5)

    def at(self, t):
        """The sample nearest to t seconds into the run."""
        return min(self.samples, key=lambda s: abs(s[0] - t)) if self.samples else (None, None)


def run_wrk(args, port, run_dir, result_path):
    cmd = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{args.duration}s",
           "--latency", "-s", str(LUA), f"http://127.0.0.1:{port}/"]
    env = dict(os.environ, CEDARGATE_LOAD_DIR=str(run_dir), CEDARGATE_LOAD_RESULT=str(result_path))
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def scan_log(log):
    """Panics and error lines in serve's stderr; warnings beside the expected one."""
    panics, errors, warnings = [], [], []
    for line in Path(log).read_text(errors="replace").splitlines():
        if "panicked" in line:
            panics.append(line)
            continue
        try:
            level = json.loads(line).get("level")
        except ValueError:
            level = None
        if level == "ERROR":
            errors.append(line)
        elif level == "WARN" and '"event":"dev_issuer"' not in line:
            warnings.append(line)
    return panics, errors, warnings


def mib(kib):
    return f"{kib / 1024:.1f} MiB" if kib is not None else "?"


def resolve_binary(path):
    if path:
        binary = Path(path).resolve()
        if not binary.exists():
            raise SystemExit(f"no binary at {binary}")
        return binary
    if not BIN.exists():
        sys.stderr.write("building the release binary (cargo build --release)\n")
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return BIN


def main():
    ap = argparse.ArgumentParser(description="load test of `cedargate serve` with wrk")
    ap.add_argument("--binary", help="the cedargate binary (default: target/release/cedargate, built if missing)")
    ap.add_argument("--duration", type=int, default=60, help="seconds of load (default 60)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fresh", type=int, help=f"never-seen tokens to sign (default {FRESH_PER_SECOND} per second of the run)")
    ap.add_argument("--max-rss-growth", type=float, default=0.2,
                    help="fail if RSS at the end exceeds RSS at 10 s by more than this fraction (default 0.2)")
    args = ap.parse_args()
    if args.connections < args.threads or args.duration < 1:
        raise SystemExit("need at least one connection per thread and a duration of 1 s or more")
    if args.fresh is not None and args.fresh < args.threads:
        raise SystemExit("need at least one never-seen token per thread (--fresh)")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian package `wrk`)")
    # A SIGTERM runs the same clean-up as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    binary = resolve_binary(args.binary)
    per_thread = args.connections // args.threads
    n_fresh = args.fresh if args.fresh is not None else FRESH_PER_SECOND * args.duration
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    log = OUT / "serve.log"
    result_path = OUT / "result.json"
    print(f"cedargate load test: {binary} (checkout at {head or '?'}), wrk {args.threads} threads, "
          f"{per_thread * args.threads} connections, {args.duration} s, on {os.cpu_count()} cores")

    with tempfile.TemporaryDirectory(prefix="cedargate-load-") as tmp:
        work = Path(tmp)
        for d in ("schema", "policies", "entities"):
            shutil.copytree(ROOT / d, work / d)
        serve = Serve(binary, work, log)
        wrk = None
        try:
            listening = listening_addresses(serve.pid)
            print(f"serve: pid {serve.pid}, listening on {', '.join(listening)}; its log: {log}")
            if not listening or any(not a.startswith("127.0.0.1:") for a in listening):
                raise SystemExit("serve listens on more than 127.0.0.1")

            # Tokens.
            cached = mint_reference_tokens(binary, work, serve.port)
            header, _ = decode(cached["reader"])
            templates = {u: decode(t)[1] for u, t in cached.items()}
            subs = {u: c["sub"] for u, c in templates.items()}
            pem = (work / ".cedargate" / "dev-issuer.pem").read_bytes()
            signer = Signer(pem, header)
            for user, token in cached.items():
                if signer.sign(templates[user]) != token:
                    raise SystemExit(f"signing here does not reproduce `cedargate token --user {user}`")
            now = int(time.time())
            start = time.perf_counter()
            claims = fresh_claims(templates, n_fresh + len(USERS), now)
            fresh = sign_fresh(pem, header, claims, os.cpu_count() or 1)
            samples, fresh = fresh[:len(USERS)], fresh[len(USERS):]
            sign_s = time.perf_counter() - start
            assert len({t for _, t in fresh}) == len(fresh)
            bad = bad_tokens(signer, templates["reader"], header, now, serve.port)
            print(f"tokens: {len(cached)} cached (`cedargate token`), {len(fresh):,} never-seen "
                  f"(signed here in {sign_s:.1f} s, the same bytes as `cedargate token`), "
                  f"{sum(len(v) for v in bad.values())} bad")

            cycle = slots(cached, bad)
            write_mix(OUT, cycle, subs, per_thread)
            for i in range(args.threads):
                part = fresh[i::args.threads]
                (OUT / f"fresh-{i + 1}.txt").write_text("".join(f"{u} {t}\n" for u, t in part))
            wrong, explicit = warm_up(serve.port, cycle, samples, subs)
            if wrong:
                print("warm-up: wrong answers before any load:")
                for w in wrong:
                    print("  " + w)
                return 1
            print(f"warm-up: every kind of request once, every answer as expected")

            # The run.
            before = status_doc(serve.port)["authorizer"]
            cpu_before = serve.cpu_seconds()
            rss_start = serve.rss_kib()
            print(f"running wrk for {args.duration} s …", flush=True)
            sampler = Sampler(serve)
            wrk = run_wrk(args, serve.port, OUT, result_path)
            sampler.start()
            wrk_out, _ = wrk.communicate()
            sampler.stopped.set()
            sampler.join()
            alive = serve.alive()
            cpu = serve.cpu_seconds() - cpu_before if alive else None
            after = status_doc(serve.port)["authorizer"] if alive else None
            hwm = proc_status(serve.pid).get("VmHWM")
        finally:
            if wrk and wrk.poll() is None:
                wrk.terminate()
                wrk.wait()
            serve.stop()

    (OUT / "wrk.txt").write_text(wrk_out)
    print()
    print("\n".join("  | " + line for line in wrk_out.rstrip().splitlines()))
    print()
    if wrk.returncode != 0 or not result_path.exists():
        print(f"wrk failed (exit {wrk.returncode})")
        return 1
    r = json.loads(result_path.read_text())
    t = r["totals"]
    failures = []

    # Memory: at 10 s (a sixth of a shorter run) and at the end, under load.
    early_at = min(10.0, args.duration / 6)
    t_early, rss_early = sampler.at(early_at)
    t_end, rss_end = sampler.samples[-1] if sampler.samples else (None, None)
    ratio = rss_end / rss_early if rss_early and rss_end else None

    lat = r["latency_us"]
    errs = r["socket_errors"]
    print("results")
    print(f"  requests/s        {r['requests_per_s']:,.0f}  ({r['requests']:,} answers in {r['duration_s']:.1f} s)")
    print(f"  latency           p50 {lat['p50'] / 1000:.2f} ms, p90 {lat['p90'] / 1000:.2f} ms, "
          f"p99 {lat['p99'] / 1000:.2f} ms, max {lat['max'] / 1000:.1f} ms")
    print("  answers by kind   (sent / right answers; the rest of a thread's requests were in flight at the end)")
    for kind, status in [("cached-allowed", 200), ("cached-denied", 403), ("fresh", 200),
                         ("fresh-reused", 200), ("bad", 401)]:
        sent = t.get(f"sent {kind}", 0)
        if not sent:
            continue
        got = t.get(f"ok {kind}", 0) if status == 200 else t.get(f"answered {status}", 0)
        extra = ""
        if kind == "bad":
            extra = "  (" + ", ".join(f"{k[4:]} {t.get('sent ' + k, 0):,}" for k in SUBKIND.values()) + ")"
        if kind == "cached-denied":
            # Which of the two 403 bodies each denied slot gets follows from its cached answer
            # (the warm-up's): a count off from that means cached answers were replaced.
            want = sum(t.get(f"sent {tag}", 0) for tag in explicit)
            extra = (f"  ({t.get('403 no allow', 0):,} without an Allow for the route, "
                     f"{t.get('403 explicit deny', 0):,} with an explicit Deny, of {want:,} sent to "
                     f"{', '.join(sorted(explicit)) or 'no slot'} whose cached policy has one)")
        print(f"    {kind:<15} {status}  {sent:>10,} / {got:>10,}{extra}")
    statuses = {k[7:]: v for k, v in t.items() if k.startswith("status ")}
    print(f"  statuses seen     " + ", ".join(f"{s}: {n:,}" for s, n in sorted(statuses.items())))
    unanswered = t.get("sent", 0) - t.get("answered", 0)
    print(f"  unanswered        {unanswered} in all (in flight when wrk stopped; at most "
          f"{r['tolerance_per_thread']} per thread)")
    print(f"  5xx               {r['5xx']}")
    print(f"  wrong answers     {r['wrong']}")
    wrong_keys = {k: v for k, v in t.items() if k.startswith("wrong")}
    for k, v in sorted(wrong_keys.items()):
        print(f"    {k[6:]}: {v}")
    print(f"  socket errors     connect {errs['connect']}, read {errs['read']}, write {errs['write']}, "
          f"timeout {errs['timeout']}")
    if t_early is not None:
        print(f"  serve RSS         {mib(rss_start)} before, {mib(rss_early)} at {t_early:.0f} s, "
              f"{mib(rss_end)} at {t_end:.0f} s (end/early {ratio:.2f}), peak {mib(hwm)}")
    if cpu is not None:
        print(f"  serve CPU         {cpu:.1f} s in {r['duration_s']:.0f} s ({cpu / r['duration_s']:.2f} cores; "
              f"{cpu / max(r['requests'], 1) * 1e6:.1f} µs per answer; wrk has the rest of the machine)")
    if after:
        # Only never-seen and bad tokens should reach the authorizer (a 401 is not cached): a
        # call beyond those re-authorized a cached token whose answer the cache had dropped.
        calls = after["invocations"] - before["invocations"]
        hits = after["cacheHits"] - before["cacheHits"]
        answered = t.get("ok fresh", 0) + t.get("ok fresh-reused", 0) + t.get("answered 401", 0)
        sent = t.get("sent fresh", 0) + t.get("sent fresh-reused", 0) + t.get("sent bad", 0)
        reauthorized = "none" if calls <= sent else f"at least {calls - sent:,}"
        print(f"  authorizer        {calls:,} calls for {answered:,} answered never-seen and bad-token "
              f"requests ({sent:,} sent); cached tokens re-authorized: {reauthorized}; "
              f"{hits:,} cache hits, {after['cacheEntries']:,} entries")
        m = after["memo"]
        print(f"  authorizer memo   claims {m['claimsHits']:,} hits / {m['claimsMisses']:,} misses "
              f"({m['claimsEntries']:,} entries), decisions {m['decisionHits']:,} / {m['decisionMisses']:,}, "
              f"policies {m['policyHits']:,} / {m['policyMisses']:,}")
    panics, errors, warnings = scan_log(log)
    print(f"  serve log         {len(panics)} panics, {len(errors)} errors, {len(warnings)} other warnings ({log})")
    for line in (panics + errors + warnings)[:5]:
        print("    " + line[:300])

    if not alive:
        failures.append("serve exited during the run")
    if r["5xx"]:
        failures.append(f"{r['5xx']} answers were 5xx")
    if r["wrong"]:
        failures.append(f"{r['wrong']} wrong answers")
    if panics:
        failures.append(f"{len(panics)} panics in serve's log")
    # The caches fill in the first seconds (10,000 gateway answers, 10,000 verified tokens):
    # in a short run the early sample is taken while they fill, so growth is judged from 30 s.
    if ratio is not None and ratio > 1 + args.max_rss_growth:
        if args.duration >= 30:
            failures.append(f"RSS grew by {ratio - 1:.0%} between {t_early:.0f} s and {t_end:.0f} s")
        else:
            print(f"  note: RSS grew by {ratio - 1:.0%}, not judged in a run under 30 s (the caches are still filling)")
    if t.get("sent fresh-reused"):
        print(f"  note: the {len(fresh):,} never-seen tokens ran out; {t['sent fresh-reused']:,} requests reused them "
              f"(pass a larger --fresh for a run with only never-seen tokens)")
    print()
    if failures:
        print("FAILED: " + "; ".join(failures))
        return 1
    judged = args.duration >= 30 and ratio is not None
    print("OK: no 5xx, no wrong answers" + (", memory flat" if judged else " (memory not judged in a short run)"))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
