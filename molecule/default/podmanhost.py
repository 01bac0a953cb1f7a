#!/usr/bin/env python3
"""A Debian 12 host with systemd as PID 1, in a podman container under runc (no registry).

The image is the scenario's cached debootstrapped rootfs (testnet.py) plus systemd, installed
once through an overlay and a chroot, then `podman import`ed; the tag carries the rootfs name
so a second run reuses it.

    podmanhost.py image            build (once) and print the image tag
    podmanhost.py up NAME          start a container running /sbin/init
    podmanhost.py down NAME        remove it

Root only; stdlib only; every command has a timeout. Settings from testing-here.md: runc
(crun lacks CAP_SYS_RESOURCE here), cgroupfs, file events, lowered ulimits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import testnet

PODMAN = [
    "podman",
    "--runtime",
    "runc",
    "--cgroup-manager",
    "cgroupfs",
    "--events-backend",
    "file",
]
SYSTEMD_PACKAGES = ("systemd", "systemd-sysv", "dbus")


def run(*args: str, timeout: float = 120) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(args)}\n{proc.stderr}")
    return proc.stdout


def image_tag() -> str:
    return f"localhost/pipecatapp-systemd:{testnet.rootfs_path().name}"


def build_image() -> str:
    tag = image_tag()
    probe = subprocess.run([*PODMAN, "image", "exists", tag], timeout=60, check=False)
    if probe.returncode == 0:
        return tag
    lower = testnet.build_rootfs()
    with tempfile.TemporaryDirectory(prefix="systemd-image-", dir=lower.parent) as tmp:
        upper, work, merged = (Path(tmp) / d for d in ("upper", "work", "merged"))
        for d in (upper, work, merged):
            d.mkdir()
        script = (
            'set -eu; mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$UP,workdir=$WK" "$M"; '
            'mount -t proc proc "$M/proc"; mount --rbind /dev "$M/dev"; '
            'cp /etc/resolv.conf "$M/etc/resolv.conf"; '
            'chroot "$M" env DEBIAN_FRONTEND=noninteractive apt-get install -y '
            '--no-install-recommends $PKGS; chroot "$M" apt-get clean; '
            'umount -R "$M/dev"; umount "$M/proc"; '
            'tar -C "$M" --exclude=./proc --exclude=./sys --exclude=./dev -cf "$TAR" .; '
            'umount "$M"'
        )
        env = dict(
            os.environ,
            LOWER=str(lower),
            UP=str(upper),
            WK=str(work),
            M=str(merged),
            PKGS=" ".join(SYSTEMD_PACKAGES),
            TAR=f"{tmp}/rootfs.tar",
        )
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"installing systemd into the image failed:\n{proc.stderr[-3000:]}")
        run(*PODMAN, "import", "--change", "CMD=/sbin/init", f"{tmp}/rootfs.tar", tag, timeout=600)
    return tag


def up(name: str) -> None:
    tag = build_image()
    down(name)
    run(
        *PODMAN,
        "run",
        "-d",
        "--name",
        name,
        "--hostname",
        name,
        "--systemd=always",
        "--network=none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "--tmpfs",
        "/tmp",
        tag,
        "/sbin/init",
        timeout=120,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = subprocess.run(
            [*PODMAN, "exec", name, "systemctl", "is-system-running"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if state.stdout.strip() in ("running", "degraded"):
            print(name)
            return
        time.sleep(0.5)
    raise SystemExit(f"systemd in container {name} did not come up within 60s")


def down(name: str) -> None:
    subprocess.run(
        [*PODMAN, "rm", "-f", "-t", "5", name], capture_output=True, timeout=120, check=False
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("image")
    for cmd in ("up", "down"):
        sub.add_parser(cmd).add_argument("name")
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("podman") is None:
        raise SystemExit("podmanhost.py needs root and podman (with runc)")
    if args.cmd == "image":
        print(build_image())
    elif args.cmd == "up":
        up(args.name)
    else:
        down(args.name)


if __name__ == "__main__":
    main()
