"""Helpers for the real-browser test: a network namespace to run in, headless Chromium
driven by Selenium, and a recorder injected into the page.

Why a namespace: WebRTC needs an ICE host candidate on both sides, and both aioice (the app)
and Chromium leave loopback out of their candidates. The test makes a network namespace with
its loopback up and one interface (a veth pair, both ends inside) holding a private test
address (10.251.7.1) that exists only inside it; the app, chromedriver and Chromium all run
in it, so ICE pairs that address with itself and nothing can reach any other address. The
test process joins the namespace only on the thread that drives the browser (``setns`` is
per thread), which is also the thread that starts the app and chromedriver, so they are
born inside it.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

CLONE_NEWNET = 0x40000000
NS_ADDRESS = "10.251.7.1"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def missing_tools() -> str | None:
    """Why the browser test cannot run here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} missing: apt-get install {package} (scripts/setup.sh test)"
    if shutil.which("ip") is None:
        return "ip missing: apt-get install iproute2"
    if os.geteuid() != 0:
        return "needs root to make a network namespace"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def network_namespace() -> Iterator[str]:
    """A fresh namespace: ``lo`` up and an interface with :data:`NS_ADDRESS`."""
    name = f"hvbrowser{os.getpid()}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        # A veth pair with both ends inside (this kernel has no dummy interfaces).
        _ip("-n", name, "link", "add", "hv0", "type", "veth", "peer", "name", "hv1")
        _ip("-n", name, "addr", "add", f"{NS_ADDRESS}/24", "dev", "hv0")
        _ip("-n", name, "link", "set", "hv0", "up")
        _ip("-n", name, "link", "set", "hv1", "up")
        yield name
    finally:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                              timeout=30).stdout.split()
        for pid in pids:  # only processes this test started live in its namespace
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 9)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Move the calling thread into the namespace ``name`` until the block ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name} failed")
        try:
            yield
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back failed")
    finally:
        os.close(target)
        os.close(own)


def chromium(mic_wav: Path, profile: Path, *extra_flags: str) -> Any:
    """Headless Chromium whose microphone plays ``mic_wav`` once, from the moment the page
    asks for it; browser console and performance logs kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic_wav}%noloop",
        "--autoplay-policy=no-user-gesture-required",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-quic", f"--user-data-dir={profile}",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--disable-dev-shm-usage",
        *extra_flags,
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(CHROMEDRIVER, log_output=str(profile.parent / "chromedriver.log"))
    return webdriver.Chrome(service=service, options=options)


# Injected into the page: records the microphone track and the bot's track on one
# AudioContext clock (16 kHz, left = microphone, right = bot), as the page holds them.
RECORDER_JS = """
const hv = window.homevoice;
const ctx = new AudioContext({sampleRate: 16000});
const merger = ctx.createChannelMerger(2);
ctx.createMediaStreamSource(hv.localStream).connect(merger, 0, 0);
ctx.createMediaStreamSource(hv.remoteStream).connect(merger, 0, 1);
const proc = ctx.createScriptProcessor(4096, 2, 2);
const rec = {ctx, chunks: [[], []], frames: 0, t0: null, running: true};
proc.onaudioprocess = (e) => {
  if (!rec.running) return;
  if (rec.t0 === null) rec.t0 = performance.now() - 1000 * e.inputBuffer.duration;
  for (let c = 0; c < 2; c++) rec.chunks[c].push(new Float32Array(e.inputBuffer.getChannelData(c)));
  rec.frames += e.inputBuffer.length;
};
merger.connect(proc);
proc.connect(ctx.destination);
rec.dump = () => {
  rec.running = false;
  const out = new Int16Array(rec.frames * 2);
  let i = 0;
  for (let k = 0; k < rec.chunks[0].length; k++) {
    const l = rec.chunks[0][k], r = rec.chunks[1][k];
    for (let j = 0; j < l.length; j++) {
      out[i++] = Math.max(-1, Math.min(1, l[j])) * 32767;
      out[i++] = Math.max(-1, Math.min(1, r[j])) * 32767;
    }
  }
  const bytes = new Uint8Array(out.buffer);
  let s = "";
  for (let k = 0; k < bytes.length; k += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(k, k + 0x8000));
  }
  return {t0: rec.t0, rate: ctx.sampleRate, pcm: btoa(s)};
};
window.__hvRecorder = rec;
return ctx.state;
"""


def spki_sha256(cert_pem: Path) -> str:
    """Base64 SHA-256 of a certificate's public key, for Chromium's
    ``--ignore-certificate-errors-spki-list`` (trust that one self-signed certificate)."""
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def recording(driver: Any) -> tuple[np.ndarray, np.ndarray, int, float]:
    """(microphone, bot, sample rate, performance.now() of sample 0) from the recorder."""
    got = driver.execute_script("return window.__hvRecorder.dump();")
    pcm = np.frombuffer(base64.b64decode(got["pcm"]), dtype=np.int16).reshape(-1, 2)
    return pcm[:, 0].copy(), pcm[:, 1].copy(), int(got["rate"]), float(got["t0"] or 0.0)


def write_wav(path: Path, pcm: np.ndarray, rate: int) -> Path:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype(np.int16).tobytes())
    return path


def active(pcm: np.ndarray, rate: int, *, window: float = 0.02,
           threshold: float = 300.0) -> np.ndarray:
    """Per ``window`` seconds: whether the RMS level is above ``threshold`` (int16 units)."""
    n = int(rate * window)
    frames = pcm[: pcm.size // n * n].astype(np.float64).reshape(-1, n)
    return np.sqrt((frames**2).mean(axis=1)) > threshold


def temp_profile() -> Path:
    return Path(tempfile.mkdtemp(prefix="hv-chromium-"))
