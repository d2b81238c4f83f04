"""Seed corpora for the fuzz targets, made from the repository's fixtures and the shared ones.

Usage: python3 fuzz/seeds.py [CORPUS_DIR]   (default fuzz/corpus; one directory per target)

Every seed is a real input of its kind: the AWS sample authorizer events and the reference
workloads' events (event, arn), their bearer tokens and token payloads (bearer, signed_claims),
the Wycheproof JWS and JWK vectors (bearer, jwks), the repository's bundles and examples as published objects
(published) and its policy-test files (policy_tests). The IAM target reads structured bytes and
starts from nothing.
"""

import base64
import hashlib
import json
import sys
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
SHARED = ROOT.parent / "shared"
TARGETS = ["bearer", "signed_claims", "event", "arn", "published", "policy_tests", "jwks", "iam"]


def b64decode(segment):
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def events():
    """Every authorizer event on disk: the AWS samples, then a few lines of each workload."""
    for path in sorted((SHARED / "fixtures" / "aws-events").glob("*.json")):
        text = path.read_text()
        if '"methodArn"' in text or '"routeArn"' in text:
            yield text
    for path in sorted(SHARED.glob("bench/*/events*.ndjson")):
        with path.open() as f:
            for _, line in zip(range(4), f):
                yield line.strip()


def strings_under(value, names):
    if isinstance(value, dict):
        for k, v in value.items():
            if k in names and isinstance(v, str):
                yield v
            yield from strings_under(v, names)
    elif isinstance(value, list):
        for v in value:
            yield from strings_under(v, names)


def bundle_files(root):
    files = {}
    for top, exts in [("schema", (".cedarschema", ".cedarschema.json")), ("policies", (".cedar",)),
                      ("entities", (".json",)), ("policy-tests", (".yaml", ".yml"))]:
        base = root / top
        if base.is_dir():
            for p in sorted(base.rglob("*")):
                if p.is_file() and p.name.endswith(exts) and not p.name.startswith("."):
                    files[p.relative_to(root).as_posix()] = p.read_text()
    return files


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else FUZZ / "corpus"
    seeds = {t: [] for t in TARGETS}
    for text in events():
        seeds["event"].append(text)
        event = json.loads(text)
        seeds["arn"] += list(strings_under(event, {"methodArn", "routeArn"}))
        for cred in strings_under(event, {"authorizationToken", "Authorization", "authorization"}):
            seeds["bearer"].append(cred)
            token = cred.split()[-1]
            if token.count(".") == 2:
                try:
                    seeds["signed_claims"].append(b64decode(token.split(".")[1]).decode())
                except (ValueError, UnicodeDecodeError):
                    pass
    for name in ["json_web_signature_test.json", "json_web_key_test.json"]:
        doc = json.loads((SHARED / "vectors" / name).read_text())
        for group in doc["testGroups"]:
            for key in ("public", "private"):
                if isinstance(group.get(key), dict):
                    jwk = group[key]
                    seeds["jwks"].append(json.dumps(jwk if "keys" in jwk else {"keys": [jwk]}))
            for test in group["tests"]:
                if isinstance(test.get("jws"), str):
                    seeds["bearer"].append(test["jws"])
    for path in [SHARED / "bench" / "demo" / "jwks.json", *ROOT.glob("tests/**/*jwks*.json")]:
        if path.is_file():
            seeds["jwks"].append(path.read_text())
    bundles = [ROOT] + sorted(p for p in (ROOT / "tests" / "bundles").glob("*/*") if p.is_dir())
    bundles += sorted(p for p in (ROOT / "tests" / "bundles").glob("*") if (p / "schema").is_dir())
    bundles += sorted(p for p in SHARED.glob("bench/*") if (p / "schema").is_dir())
    bundles += sorted(p for p in (ROOT / "examples").glob("*") if (p / "schema").is_dir())
    for root in bundles:
        files = bundle_files(root)
        if files:
            seeds["published"].append(json.dumps({"format": "cedargate-bundle/1", "digest": "", "files": files}))
        seeds["policy_tests"] += [v for k, v in files.items() if k.startswith("policy-tests/")]
    for target, items in seeds.items():
        d = out / target
        d.mkdir(parents=True, exist_ok=True)
        for item in items:
            data = item.encode() if isinstance(item, str) else item
            (d / hashlib.sha1(data).hexdigest()).write_bytes(data)
        print(f"{target:14} {len(list(d.iterdir())):4} seeds in {d}")


if __name__ == "__main__":
    main()
