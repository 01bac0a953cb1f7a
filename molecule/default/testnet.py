#!/usr/bin/env python3
"""Real SSH hosts for the molecule scenario, made of network namespaces on this machine.

Each host is a network namespace with a veth into a hub namespace (a bridge on a private test
subnet that exists only inside these namespaces), its own mount and UTS namespace, a root
filesystem that is an overlay over one shared debootstrapped Debian 12 rootfs, and its own
`sshd -D` chrooted into that overlay. Ansible reaches the hosts through the hub namespace
(`ProxyCommand=ip netns exec HUB nc %h %p`). Everything a host mounts lives in its private
mount namespace, so killing the namespace's processes is the whole clean-up.

    testnet.py rootfs                      build (once) and print the cached rootfs path
    testnet.py up --state DIR node1 ...    start the hosts, write DIR/inventory.json
    testnet.py serve --state DIR --root R  serve R over HTTP inside the hub namespace
    testnet.py stranger                    a namespace on the test subnet that is no cluster host
    testnet.py down --state DIR            stop everything `up`/`serve` started

Root only; stdlib only. Every command has a timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

SUITE = "bookworm"
MIRROR = os.environ.get("PIPECATAPP_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# Everything the roles install with apt, so that apt tasks are no-ops on hosts that cannot
# reach a mirror (README: "Packages in the test rootfs"). Changing this list
# changes the cache key, so a new rootfs is built.
PACKAGES = (
    # ansible, sshd and the test network
    "python3",
    "python3-apt",
    "openssh-server",
    "iproute2",
    "procps",
    "ca-certificates",
    "acl",
    "sudo",
    "netcat-openbsd",
    # roles/nomad
    "gnupg",
    "gpgv",
    "unzip",
    # roles/primacpp
    "build-essential",
    "cmake",
    "git",
    "make",
    "pkg-config",
    "libzmq3-dev",
    "fio",
    "nftables",
    # roles/pipecatapp
    "python3-venv",
    "python3-pip",
    "python3-dev",
    "portaudio19-dev",
    "libportaudio2",
    "libsndfile1",
    "espeak-ng",
    "alsa-utils",
)
SUBNET = "10.213.47"
HUB_ADDR = f"{SUBNET}.1"
PREFIX = "pcm"
HUB = f"{PREFIX}-hub"
CMD_TIMEOUT = 60
# The namespaces have fixed names, so one run owns them at a time: this file names the
# owner's state directory. Another run waits for it; `down` of another run leaves them alone.
OWNER = Path("/run/pipecatapp-testnet.owner")


def cache_dir() -> Path:
    root = os.environ.get("PIPECATAPP_CACHE_DIR") or str(Path.home() / ".cache" / "pipecatapp")
    return Path(root)


def run(*args: str, timeout: float = CMD_TIMEOUT, check: bool = True) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(args)}\n{proc.stderr}")
    return proc.stdout


def rootfs_path() -> Path:
    key = hashlib.sha256(" ".join((SUITE, *PACKAGES)).encode()).hexdigest()[:12]
    return cache_dir() / "rootfs" / f"debian-{SUITE}-{key}"


def build_rootfs() -> Path:
    """Debootstrap the shared rootfs once; a second run finds it in the cache."""
    target = rootfs_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").exists():
            return target
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"debootstrap {SUITE} into {tmp} (a few minutes, once)", file=sys.stderr)
        run(
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(tmp),
            MIRROR,
            timeout=1800,
        )
        # Package lists inside, so `apt` with state=present answers from the local cache.
        with contextlib.suppress(SystemExit):
            run("chroot", str(tmp), "apt-get", "update", timeout=300)
        run("chroot", str(tmp), "apt-get", "clean", timeout=60)
        (tmp / "etc" / "ssh").mkdir(parents=True, exist_ok=True)
        for key_file in (tmp / "etc" / "ssh").glob("ssh_host_*"):
            key_file.unlink()  # each host generates its own
        (tmp / ".complete").write_text(" ".join(PACKAGES) + "\n")
        tmp.rename(target)
    return target


def ns_exists(name: str) -> bool:
    return name in run("ip", "netns", "list").split()


def owner() -> str:
    return OWNER.read_text().strip() if OWNER.exists() else ""


def wait_free(state: Path, timeout: float) -> None:
    """Another run of the scenario owns the namespaces: wait (bounded) until it is gone."""
    deadline = time.monotonic() + timeout
    while ns_exists(HUB):
        if owner() in ("", str(state)):
            down(state)  # ours, or left by a run that recorded no owner
            continue
        if time.monotonic() > deadline:
            raise SystemExit(
                f"namespace {HUB} still exists after {timeout:.0f}s: the scenario run with "
                f"state {owner()} holds the test network (`testnet.py down --state "
                f"{owner()}` removes it)"
            )
        time.sleep(2)


def write_host_files(upper: Path, name: str, pubkey: str) -> None:
    ssh = upper / "root" / ".ssh"
    ssh.mkdir(parents=True, exist_ok=True, mode=0o700)
    (ssh / "authorized_keys").write_text(pubkey)
    (ssh / "authorized_keys").chmod(0o600)
    (upper / "etc").mkdir(exist_ok=True)
    (upper / "etc" / "hostname").write_text(name + "\n")
    hosts = ["127.0.0.1 localhost", f"127.0.1.1 {name}"]
    (upper / "etc" / "hosts").write_text("\n".join(hosts) + "\n")
    conf = upper / "etc" / "ssh" / "sshd_config.d"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "molecule.conf").write_text(
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\n"
        "UseDNS no\nMaxStartups 50\nMaxSessions 50\n"
    )


HOST_SCRIPT = r"""
set -eu
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$DIR/upper,workdir=$DIR/work" "$DIR/merged"
m="$DIR/merged"
mount -t proc proc "$m/proc"
mount -t sysfs sysfs "$m/sys"
mount --rbind /dev "$m/dev"
mount -t tmpfs -o mode=0755 tmpfs "$m/run"
mkdir -p "$m/run/sshd" "$m/run/lock"
hostname "$NAME"
chroot "$m" /usr/bin/ssh-keygen -A >/dev/null
exec chroot "$m" /usr/sbin/sshd -D -e -o ListenAddress="$ADDR"
"""


def host_up(state: Path, lower: Path, index: int, name: str, pubkey: str) -> dict[str, str]:
    ns = f"{PREFIX}-{name}"
    addr = f"{SUBNET}.{10 + index}"
    hdir = state / "hosts" / name
    for sub in ("upper", "work", "merged"):
        (hdir / sub).mkdir(parents=True, exist_ok=True)
    write_host_files(hdir / "upper", name, pubkey)
    run("ip", "netns", "add", ns)
    peer = f"{PREFIX}v{index}"
    run(
        "ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", peer, "netns", HUB
    )
    run("ip", "-n", HUB, "link", "set", peer, "master", "br0", "up")
    run("ip", "-n", ns, "link", "set", "lo", "up")
    run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
    run("ip", "-n", ns, "link", "set", "eth0", "up")
    run("ip", "-n", ns, "route", "add", "default", "via", HUB_ADDR)
    env = dict(os.environ, LOWER=str(lower), DIR=str(hdir), NAME=name, ADDR=addr)
    log = open(hdir / "sshd.log", "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            ns,
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "sh",
            "-c",
            HOST_SCRIPT,
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (hdir / "pid").write_text(str(proc.pid))
    return {"name": name, "namespace": ns, "address": addr}


def wait_ssh(addr: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = subprocess.run(
            ["ip", "netns", "exec", HUB, "nc", "-z", "-w", "1", addr, "22"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        if probe.returncode == 0:
            return
        time.sleep(0.2)
    raise SystemExit(f"sshd on {addr} did not answer within {timeout:.0f}s")


def up(state: Path, names: list[str]) -> None:
    lower = build_rootfs()
    wait_free(state, float(os.environ.get("TESTNET_WAIT_S", "1800")))
    state.mkdir(parents=True, exist_ok=True)
    OWNER.write_text(f"{state}\n")
    key = state / "id_ed25519"
    if not key.exists():
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    pubkey = (state / "id_ed25519.pub").read_text()
    run("ip", "netns", "add", HUB)
    run("ip", "-n", HUB, "link", "set", "lo", "up")
    run("ip", "-n", HUB, "link", "add", "br0", "type", "bridge")
    run("ip", "-n", HUB, "addr", "add", f"{HUB_ADDR}/24", "dev", "br0")
    run("ip", "-n", HUB, "link", "set", "br0", "up")
    hosts = [host_up(state, lower, i + 1, n, pubkey) for i, n in enumerate(names)]
    for host in hosts:
        wait_ssh(host["address"], 30)
    inventory = {"hub": HUB, "hub_address": HUB_ADDR, "key": str(key), "hosts": hosts}
    (state / "inventory.json").write_text(json.dumps(inventory, indent=2) + "\n")
    print(json.dumps(inventory))


def serve(state: Path, root: Path) -> None:
    """A plain HTTP server on the hub's address: the release site the nodes download from."""
    log = open(state / "http.log", "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            HUB,
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            HUB_ADDR,
            "--directory",
            str(root),
            "8080",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (state / "http.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        probe = subprocess.run(
            ["ip", "netns", "exec", HUB, "nc", "-z", "-w", "1", HUB_ADDR, "8080"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        if probe.returncode == 0:
            print(f"http://{HUB_ADDR}:8080")
            return
        time.sleep(0.2)
    raise SystemExit("the artifact HTTP server did not start within 15s")


STRANGER = f"{PREFIX}-stranger"
STRANGER_ADDR = f"{SUBNET}.251"


def stranger() -> None:
    """A fourth namespace on the hub's bridge, with an address that belongs to no cluster host:
    what a laptop on the same LAN sees. Idempotent; `down` removes it with the others."""
    if not ns_exists(STRANGER):
        run("ip", "netns", "add", STRANGER)
        run("ip", "link", "add", "eth0", "netns", STRANGER, "type", "veth", "peer", "name",
            f"{PREFIX}vs", "netns", HUB)
        run("ip", "-n", HUB, "link", "set", f"{PREFIX}vs", "master", "br0", "up")
        run("ip", "-n", STRANGER, "link", "set", "lo", "up")
        run("ip", "-n", STRANGER, "addr", "add", f"{STRANGER_ADDR}/24", "dev", "eth0")
        run("ip", "-n", STRANGER, "link", "set", "eth0", "up")
    print(json.dumps({"namespace": STRANGER, "address": STRANGER_ADDR}))


def kill_namespace(ns: str) -> None:
    for _ in range(50):
        pids = [int(p) for p in run("ip", "netns", "pids", ns, check=False).split()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    run("ip", "netns", "del", ns, check=False)


def down(state: Path) -> None:
    """Every namespace this tool names (prefix `pcm-`), unless another run owns them."""
    if owner() not in ("", str(state)):
        print(f"test network owned by the run with state {owner()}: left alone", file=sys.stderr)
        shutil.rmtree(state / "hosts", ignore_errors=True)
        return
    ours = [ns for ns in run("ip", "netns", "list").split() if ns.startswith(f"{PREFIX}-")]
    for ns in sorted(ours, key=lambda n: n == HUB):  # the hub (and its HTTP server) last
        kill_namespace(ns)
    shutil.rmtree(state / "hosts", ignore_errors=True)
    OWNER.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("rootfs")
    p_up = sub.add_parser("up")
    p_up.add_argument("--state", type=Path, required=True)
    p_up.add_argument("names", nargs="+")
    p_serve = sub.add_parser("serve")
    p_serve.add_argument("--state", type=Path, required=True)
    p_serve.add_argument("--root", type=Path, required=True)
    sub.add_parser("stranger")
    p_down = sub.add_parser("down")
    p_down.add_argument("--state", type=Path, required=True)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("testnet.py needs root (network namespaces, mounts, chroot)")
    if args.cmd == "rootfs":
        print(build_rootfs())
    elif args.cmd == "up":
        up(args.state, args.names)
    elif args.cmd == "serve":
        serve(args.state, args.root)
    elif args.cmd == "stranger":
        stranger()
    else:
        down(args.state)


if __name__ == "__main__":
    main()
