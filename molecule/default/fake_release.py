#!/usr/bin/env python3
"""A release-shaped Nomad artifact for the molecule scenario (Nomad cannot be downloaded here).

Writes, under OUT, the layout of releases.hashicorp.com for one version:

    OUT/nomad/<v>/nomad_<v>_linux_amd64.zip     zip holding `nomad`, the TEST DOUBLE below
    OUT/nomad/<v>/nomad_<v>_SHA256SUMS          real sha256 sums of the zip
    OUT/nomad/<v>/nomad_<v>_SHA256SUMS.sig      detached signature by a key made for this test
    OUT/tampered/<v>/...                        same sums and signature, zip altered afterwards
    OUT/badsig/<v>/...                          good zip and sums, signature by another key
    OUT/test-release-key.asc, OUT/fingerprint   the test key the scenario trusts instead of
                                                HashiCorp's (nomad_gpg_key_file/_fingerprint)

The binary in the zip is `nomad_test_double`: a shell script that answers `version` and
`config validate` (a structural check: balanced braces, a data_dir, at least one file), and as
`agent` answers only the ACL bootstrap call on 127.0.0.1 (200 once, then 400 "already done",
as Nomad does). It is not Nomad and says so.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

TEST_DOUBLE = r"""#!/bin/sh
# nomad_test_double: NOT HashiCorp Nomad. A stand-in shipped only by the molecule scenario,
# where the real binary cannot be downloaded. It answers what the Ansible role asks of it.
case "$1" in
  version)
    echo "Nomad v@VERSION@"
    echo "Revision nomad_test_double (not HashiCorp Nomad)"
    ;;
  config)
    [ "$2" = validate ] || { echo "nomad_test_double: only 'config validate'" >&2; exit 1; }
    shift 2
    [ $# -ge 1 ] || { echo "nomad_test_double: config validate needs a path" >&2; exit 1; }
    files=$(find "$@" -maxdepth 1 -type f \( -name '*.hcl' -o -name '*.json' \) | sort)
    [ -n "$files" ] || { echo "Error: no configuration files in $*" >&2; exit 1; }
    for f in $files; do
      open=$(tr -cd '{' < "$f" | wc -c); close=$(tr -cd '}' < "$f" | wc -c)
      [ "$open" -eq "$close" ] || { echo "Error: unbalanced braces in $f" >&2; exit 1; }
    done
    grep -qs '^data_dir' $files || { echo "Error: data_dir is not set" >&2; exit 1; }
    echo "Configuration is valid! (structural check by nomad_test_double)"
    ;;
  agent)
    # Stands in for the agent: sleeps, and answers the one HTTP call the role makes
    # (ACL bootstrap) on the configured http port, like Nomad: 200 once, then 400.
    shift
    [ "${1:-}" = -config ] && dir="$2" || dir=/etc/nomad.d
    exec python3 - "$dir" <<'PY'
import http.server, json, pathlib, re, sys
text = "\n".join(p.read_text() for p in sorted(pathlib.Path(sys.argv[1]).glob("*.hcl")))
port = int((re.search(r"(?m)^\s*http\s*=\s*(\d+)\s*$", text) or [0, 4646])[1])
data = pathlib.Path(re.search(r'(?m)^data_dir\s*=\s*"([^"]+)"', text)[1])
done = data / "nomad_test_double.acl-bootstrapped"
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path != "/v1/acl/bootstrap":
            code, out = 404, b"nomad_test_double: only /v1/acl/bootstrap"
        elif done.exists():
            code, out = 400, b"ACL bootstrap already done (reset index: 7)"
        else:
            done.write_text(body.get("BootstrapSecret", "") + "\n")  # the test compares it
            code = 200
            token = {"SecretID": body.get("BootstrapSecret", ""), "Type": "management"}
            out = json.dumps(token).encode()
        self.send_response(code)
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
PY
    ;;
  *)
    echo "nomad_test_double: '$1' is not implemented" >&2
    exit 1
    ;;
esac
"""


def gpg(home: Path, *args: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(
        ["gpg", "--batch", "--no-tty", "--homedir", str(home), *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"gpg {' '.join(args)} failed: {proc.stderr.decode()}")
    return proc.stdout


def make_key(home: Path, uid: str) -> str:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    gpg(home, "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "1d")
    for line in gpg(home, "--with-colons", "--list-keys", uid).decode().splitlines():
        if line.startswith("fpr:"):
            return line.split(":")[9]
    raise SystemExit("no fingerprint for the generated test key")


def release(directory: Path, version: str, sign_home: Path, tamper: bool) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    zip_name = f"nomad_{version}_linux_amd64.zip"
    sums_name = f"nomad_{version}_SHA256SUMS"
    info = zipfile.ZipInfo("nomad", date_time=(2025, 1, 1, 0, 0, 0))
    info.external_attr = 0o100755 << 16
    with zipfile.ZipFile(directory / zip_name, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(info, TEST_DOUBLE.replace("@VERSION@", version))
    digest = hashlib.sha256((directory / zip_name).read_bytes()).hexdigest()
    (directory / sums_name).write_text(f"{digest}  {zip_name}\n")
    gpg(
        sign_home,
        "--yes",
        "--detach-sign",
        "--output",
        str(directory / f"{sums_name}.sig"),
        str(directory / sums_name),
    )
    if tamper:
        with open(directory / zip_name, "ab") as handle:
            handle.write(b"\0tampered after signing\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--version", required=True)
    args = parser.parse_args()
    out: Path = args.out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="fake-release-") as tmp:
        trusted, other = Path(tmp) / "trusted", Path(tmp) / "other"
        fingerprint = make_key(trusted, "pipecatapp molecule test release key")
        make_key(other, "pipecatapp molecule untrusted key")
        release(out / "nomad" / args.version, args.version, trusted, tamper=False)
        release(out / "tampered" / args.version, args.version, trusted, tamper=True)
        release(out / "badsig" / args.version, args.version, other, tamper=False)
        (out / "test-release-key.asc").write_bytes(gpg(trusted, "--armor", "--export", fingerprint))
        (out / "fingerprint").write_text(fingerprint + "\n")
        for home in (trusted, other):
            subprocess.run(
                ["gpgconf", "--homedir", str(home), "--kill", "all"],
                capture_output=True,
                timeout=30,
                check=False,
            )
    print(fingerprint)


if __name__ == "__main__":
    main()
