"""The user's client, in a real browser: headless Chromium (Debian's chromium + chromedriver,
driven by Selenium) opens the page the app serves, connects, and talks to the app through
its fake microphone, a WAV made with espeak-ng that plays once from the moment the page asks
for the microphone. The app is ``python -m pipecatapp -t webrtc`` in embedded mode (its own
llama-server on SmolLM2, temperature 0).

The test injects a recorder into the page that taps the microphone track and the bot's
track on one AudioContext clock, and transcribes the bot's side with the project's STT:

1. "What is the capital of France?": the page's transcript shows the question (checked first,
   so a failure says which stage broke), and the bot's audio, as the page played it, says
   "Paris".
2. A question with a long answer (SmolLM2 tells a story of about a minute), then a question
   spoken over that answer: the app reports the interruption, the page's bot audio goes
   silent within 300 ms of the microphone's onset and stays silent while the user speaks
   (both measured in the page's recording), and the new question is answered.
3. The page made no request to another origin: every resource the page loaded is from its
   own origin, the browser logged no error and reported no CSP violation.
4. Disconnect ends the app's session.

Two shorter tests: a stray request from the page is blocked by the app's CSP and caught by
the same detector; Mute keeps speech from the app and Unmute lets it through.

The page runs as shipped, with one exception: the test asks for the microphone without the
browser's echo canceller (see NO_ECHO_CANCELLER_JS: with fake devices there is no echo, and
Chromium's canceller then removed the first syllable spoken over the bot).

Network: WebRTC needs an ICE host candidate on both sides, and both aioice (the app) and
Chromium leave loopback out. So the app, chromedriver and Chromium run in a network
namespace the test makes (loopback up, plus one interface holding 10.251.7.1, an address
that exists only inside it; see tests/app/browser.py); ICE pairs that address with itself.
The page is opened at http://127.0.0.1 (a secure context, so the microphone is allowed),
no STUN or TURN server is configured on either side, and the namespace has no route out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from pipecatapp.embedded import models
from pipecatapp.embedded.server import free_port
from tests.app import browser
from tests.app.voice import USER_RATE, USER_VOICE, compose, duration, events

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(browser.missing_tools() is not None,
                       reason=str(browser.missing_tools())),
]

Q1 = "What is the capital of France?"
Q2 = "Tell me a long story about a brave knight and a dragon."
Q3 = "How many legs does a spider have?"
Q1_AT = 10.0  # seconds into the microphone: the session's models load when the page connects
Q2_GAP = 14.0  # from the end of Q1: its short answer is over by then
# From the end of Q2: well inside the long answer (it starts 1.5 to 5 s after Q2 and lasts
# about a minute), once the LLM has mostly finished streaming it. At 6 s, with the LLM, Piper,
# Whisper and Chromium sharing 2 loaded cores, the app's VAD once fired 0.5 s late.
Q3_DELAY = 12.0
TAIL = 20.0  # after Q3: time for its answer
# Q1's voice: 50 ms between words, so that through the browser's audio processing and Opus,
# Whisper base hears "of France" (without the gap it sometimes hears "of friends"). Not for
# Q2: a pause after "knight" then ends the turn early.
SPEAKER = {"voice": USER_VOICE, "rate": USER_RATE, "word_gap": 5}
BARGE_IN_LIMIT = 0.300  # seconds from the microphone's onset to the bot's audio going silent


def segments(active: np.ndarray, window: float, min_gap: float) -> list[tuple[float, float]]:
    """(start, end) seconds of activity runs, joining runs separated by less than min_gap."""
    out: list[list[float]] = []
    for i in np.flatnonzero(active):
        t = i * window
        if out and t - out[-1][1] < min_gap:
            out[-1][1] = t + window
        else:
            out.append([t, t + window])
    return [(a, b) for a, b in out]


def bot_was_speaking(kinds: list[str], i: int) -> bool:
    """Whether, by the app's messages before message i, the bot was speaking."""
    for kind in reversed(kinds[:i]):
        if kind in ("bot-started-speaking", "bot-stopped-speaking"):
            return kind == "bot-started-speaking"
    return False


def arrivals(messages: list[dict], onset_ms: float, kinds: tuple[str, ...]) -> str:
    """When each of the app's messages ``kinds`` reached the page, in ms after the
    microphone's onset (both on the page's performance.now() clock; the recorder's start is
    known to within one of its 256 ms buffers, so read these as a split, not to the ms)."""
    out = []
    for kind in kinds:
        t = next((m["t"] for m in messages
                  if m["type"] == kind and m["t"] >= onset_ms - 1000), None)
        out.append(f"{kind} +{t - onset_ms:.0f} ms" if t is not None else f"no {kind}")
    return ", ".join(out)


def start_app(tmp: Path, port: int, timeline: Path, *args: str, **env: str) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PIPECATAPP_", "NOMAD_"))}
    clean.update(HF_HUB_OFFLINE="1", **env)
    log = (tmp / "app.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "pipecatapp", "-t", "webrtc", "--port", str(port),
         "--timeline", str(timeline), "--log-level", "DEBUG", *args],
        stdout=log, stderr=subprocess.STDOUT, env=clean, cwd=Path(__file__).parents[2],
    )


def stop_app(app: subprocess.Popen) -> None:
    app.terminate()
    try:
        app.wait(30)
    except subprocess.TimeoutExpired:
        app.kill()
        app.wait(10)


def leaks(driver: object, origin: str) -> list[str]:
    """What the page did that a private page must not: resources from another origin, CSP
    violations, errors in the browser's console (a blocked request logs one)."""
    resources = driver.execute_script(  # type: ignore[attr-defined]
        "return performance.getEntriesByType('resource').map(e => e.name);")
    found = [f"request to {u}" for u in resources if not u.startswith(origin + "/")]
    csp = driver.execute_script("return window.__hvCsp || [];")  # type: ignore[attr-defined]
    found += [f"CSP violation: {v}" for v in csp]
    logs = driver.get_log("browser")  # type: ignore[attr-defined]
    found += [f"console error: {e['message']}" for e in logs if e["level"] == "SEVERE"]
    return found


def wait_served(url: str, app: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(trust_env=False) as client:
        while time.monotonic() < deadline:
            if app.poll() is not None:
                raise AssertionError(f"the app exited with status {app.returncode}")
            try:
                if client.get(url, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
    raise AssertionError(f"the app did not serve {url} within {timeout:.0f} s")


WATCH_CSP_JS = """
window.__hvCsp = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__hvCsp.push(e.blockedURI + ' ' + e.violatedDirective));
"""


# The page asks for the browser's echo canceller (right for open speakers). With Chromium's
# fake devices there is no echo path at all, and its echo canceller then removed the first
# syllable spoken over the bot (measured: the whole "How" of Q3 zeroed, about 0.3 s; the app
# heard "Many legs does ..."), which makes the barge-in time that of the second word. So the
# test asks for the microphone without it; every other constraint is the page's own.
NO_ECHO_CANCELLER_JS = """
const orig = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = (c) => orig({audio: {echoCancellation: false,
  noiseSuppression: true, autoGainControl: true}, video: false});
"""


def test_browser_conversation(tmp_path, espeak_wav, transcribe, llama_bin):
    q1 = espeak_wav(Q1, tmp_path / "q1.wav", **SPEAKER)
    q2 = espeak_wav(Q2, tmp_path / "q2.wav", voice=USER_VOICE, rate=USER_RATE)
    q3 = espeak_wav(Q3, tmp_path / "q3.wav", voice=USER_VOICE, rate=USER_RATE)
    q2_at = Q1_AT + duration(q1) + Q2_GAP
    q3_at = q2_at + duration(q2) + Q3_DELAY
    total = q3_at + duration(q3) + TAIL
    mic = compose(tmp_path / "mic.wav", [(Q1_AT, q1), (q2_at, q2), (q3_at, q3)], total=total)
    timeline = tmp_path / "timeline.jsonl"

    with browser.network_namespace() as ns, browser.inside(ns):
        port = free_port()
        origin = f"http://127.0.0.1:{port}"
        app = start_app(tmp_path, port, timeline, "--set", "llm.temperature=0",
                        LLAMA_SERVER_BIN=str(llama_bin / "llama-server"))
        driver = None
        try:
            wait_served(f"{origin}/client/", app, timeout=240)
            driver = browser.chromium(mic, browser.temp_profile())
            driver.get(f"{origin}/")
            driver.execute_script(WATCH_CSP_JS)
            driver.execute_script(NO_ECHO_CANCELLER_JS)
            assert driver.find_element("id", "state").text == "disconnected"
            driver.find_element("id", "connect").click()
            deadline = time.monotonic() + 30
            while not driver.execute_script(
                "const h = window.homevoice; return !!(h.localStream && h.remoteStream"
                " && h.remoteStream.getAudioTracks().length);"
            ):
                assert time.monotonic() < deadline, "the page got no audio track from the app"
                time.sleep(0.05)
            assert driver.execute_script(browser.RECORDER_JS) == "running"
            time.sleep(total + 2)
            mic_rec, bot_rec, rate, rec_t0 = browser.recording(driver)
            messages = driver.execute_script("return window.homevoice.messages;")
            states = [s["state"] for s in driver.execute_script("return window.homevoice.states;")]
            transcript = [
                (e.get_attribute("data-who"), e.text)
                for e in driver.find_elements("css selector", "#transcript .turn")
            ]
            leaked = leaks(driver, origin)
            driver.find_element("id", "connect").click()  # Disconnect
            ended = False
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not ended:
                ended = any(e["event"] == "context" for e in events(timeline))
                time.sleep(0.2)
        finally:
            if driver is not None:
                driver.quit()
            stop_app(app)

    browser.write_wav(tmp_path / "page-mic.wav", mic_rec, rate)
    browser.write_wav(tmp_path / "page-bot.wav", bot_rec, rate)
    (tmp_path / "messages.json").write_text(json.dumps(messages, indent=1))
    where = f"(recordings, messages and app.log in {tmp_path})"

    # 3. Nothing from another origin.
    assert not leaked, f"the page went beyond its origin: {leaked}"

    # 1. The question reached the app and came back into the page as text.
    types = [m["type"] for m in messages]
    assert "bot-ready" in types, f"no bot-ready from the app {where}: {types[:20]}"
    shown = " ".join(states)
    assert "connecting listening thinking speaking listening" in shown, states
    users = [text for who, text in transcript if who == "user"]
    assert users, f"no user transcript in the page {where}; messages: {types}"
    assert "capital" in users[0].lower() and "france" in users[0].lower(), (users, where)
    bots = [text for who, text in transcript if who == "bot"]
    assert bots and "paris" in bots[0].lower(), (transcript, where)

    # ... and the bot's answer, as the page played it, says Paris.
    window = 0.02
    mic_on = segments(browser.active(mic_rec, rate), window, 0.8)
    bot_active = browser.active(bot_rec, rate)
    assert len(mic_on) >= 3, f"expected 3 utterances in the page's microphone: {mic_on} {where}"
    (u1, _), (u2, _), (u3, u3_end) = mic_on[0], mic_on[1], mic_on[-1]
    a, b = int(u1 * rate), int(u2 * rate)
    answer1 = transcribe(browser.write_wav(tmp_path / "answer1.wav", bot_rec[a:b], rate))
    assert "paris" in answer1.lower(), (answer1, where)

    # 2. Barge-in. The app had the bot speaking when the user began (its messages: no
    # bot-stopped-speaking between the long answer's start and the user's start, then
    # bot-interrupted) ...
    kinds = [m["type"] for m in messages]
    starts = [i for i, k in enumerate(kinds) if k == "user-started-speaking"]
    cut = next((i for i in reversed(starts) if bot_was_speaking(kinds, i)), None)
    assert cut is not None, f"the user never spoke while the bot was speaking {where}: {kinds}"
    assert "bot-interrupted" in kinds[cut : cut + 4], (kinds[cut : cut + 6], where)
    # ... and the page's audio, as recorded in the page, went silent within 300 ms of the
    # microphone's onset and stayed silent while the user spoke.
    # The onset: the start of the first 60 ms of sustained sound in the page's microphone
    # (a lone 20 ms blip is not speech).
    mic_active = browser.active(mic_rec, rate)
    i3_end = int(u3_end / window)
    i3 = next(i for i in range(int(u3 / window), i3_end) if mic_active[i : i + 3].all())
    u3 = i3 * window
    during = np.flatnonzero(bot_active[i3:i3_end])
    latency = (during[-1] + 1) * window if during.size else 0.0
    speaking_at_onset = bool(bot_active[max(0, i3 - 5) : i3 + 1].any())
    stages = arrivals(messages, rec_t0 + 1000 * u3, ("user-started-speaking", "bot-interrupted"))
    print(f"barge-in: microphone onset {u3:.2f} s, the page's bot audio went silent after "
          f"{latency * 1000:.0f} ms (bot audible at the onset: {speaking_at_onset}); {stages}")
    assert latency <= BARGE_IN_LIMIT, (
        f"bot audio went on {latency * 1000:.0f} ms ({stages}) {where}")

    # ... and the interruption is answered.
    assert any("spider" in t.lower() for t in users[1:]), (users, where)
    answer3 = bot_rec[int(u3_end * rate):]
    assert browser.active(answer3, rate).sum() * window > 0.5, f"no answer to {Q3!r} {where}"
    heard3 = transcribe(browser.write_wav(tmp_path / "answer3.wav", answer3, rate))
    assert heard3.strip(), where

    # 4. Disconnect ended the session in the app.
    assert ended, f"the app's session did not end after Disconnect {where}"


def test_a_stray_request_is_blocked_and_caught(tmp_path):
    """The detector of the test above works: a request to another origin, made from the
    served page, is blocked by the app's CSP and shows up in what ``leaks`` reports."""
    silence = compose(tmp_path / "silence.wav", [], total=1.0)
    with browser.network_namespace() as ns, browser.inside(ns):
        port = free_port()
        origin = f"http://127.0.0.1:{port}"
        # No LLM is needed to serve the page; the warm-up fails at once on a closed port.
        app = start_app(tmp_path, port, tmp_path / "timeline.jsonl",
                        "--llm-url", "http://127.0.0.1:9/v1")
        driver = None
        try:
            wait_served(f"{origin}/client/", app, timeout=120)
            driver = browser.chromium(silence, browser.temp_profile())
            driver.get(f"{origin}/")
            driver.execute_script(WATCH_CSP_JS)
            assert leaks(driver, origin) == []
            driver.execute_script(
                "const img = document.createElement('img');"
                "img.src = 'http://192.0.2.7/pixel.png'; document.body.append(img);"
                "fetch('http://192.0.2.7/beacon').catch(() => {});")
            time.sleep(1.0)
            found = leaks(driver, origin)
        finally:
            if driver is not None:
                driver.quit()
            stop_app(app)
    violations = [f for f in found if f.startswith("CSP violation: http://192.0.2.7/")]
    assert any(f.endswith("/pixel.png img-src") for f in violations), found
    assert any(f.endswith("/beacon connect-src") for f in violations), found
    assert any("console error" in f and "192.0.2.7" in f for f in found), found


def test_mute_keeps_speech_from_the_app(tmp_path, espeak_wav):
    """Mute microphone: what is said while muted never reaches the app; after Unmute it does.
    (No LLM: the app apologizes for every turn, which is enough here.)"""
    said_muted = espeak_wav(Q1, tmp_path / "muted.wav", **SPEAKER)
    said_unmuted = espeak_wav(Q3, tmp_path / "unmuted.wav", voice=USER_VOICE, rate=USER_RATE)
    mic = compose(tmp_path / "mic.wav", [(6.0, said_muted), (14.0, said_unmuted)], total=24.0)
    timeline = tmp_path / "timeline.jsonl"
    with browser.network_namespace() as ns, browser.inside(ns):
        port = free_port()
        origin = f"http://127.0.0.1:{port}"
        app = start_app(tmp_path, port, timeline, "--llm-url", "http://127.0.0.1:9/v1")
        driver = None
        try:
            wait_served(f"{origin}/client/", app, timeout=120)
            driver = browser.chromium(mic, browser.temp_profile())
            driver.get(f"{origin}/")
            mute = driver.find_element("id", "mute")
            assert not mute.is_enabled()  # nothing to mute before Connect
            driver.find_element("id", "connect").click()
            clicked = time.monotonic()
            while not mute.is_enabled():
                assert time.monotonic() - clicked < 5, "Mute never became available"
                time.sleep(0.05)
            mute.click()
            assert mute.get_attribute("aria-pressed") == "true"
            time.sleep(max(0.0, clicked + 11.0 - time.monotonic()))  # after the first question
            mute.click()
            assert mute.get_attribute("aria-pressed") == "false"
            time.sleep(max(0.0, clicked + 24.0 - time.monotonic()))
            users = [e.text for e in driver.find_elements("css selector", "#transcript .user")]
        finally:
            if driver is not None:
                driver.quit()
            stop_app(app)
    heard = [e["text"] for e in events(timeline) if e["event"] == "stt_final"]
    assert not any("france" in t.lower() for t in heard), heard
    assert any("spider" in t.lower() for t in heard), heard
    assert any("spider" in t.lower() for t in users), users


def test_lan_device_over_https(tmp_path, espeak_wav):
    """The LAN recipe of docs/client.md: ``--host 0.0.0.0 --https``, page opened at the
    host's network address (not localhost, so only HTTPS allows the microphone), the
    self-signed certificate accepted. The browser trusts exactly that certificate (its key's
    hash), as a user does by accepting the warning; the conversation then works."""
    import ssl

    question = espeak_wav(Q1, tmp_path / "q.wav", **SPEAKER)
    mic = compose(tmp_path / "mic.wav", [(8.0, question)], total=18.0)
    # A cache of its own for the certificate, sharing the assembled models with the real one.
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "models").symlink_to(models.cache_dir() / "models")
    with browser.network_namespace() as ns, browser.inside(ns):
        port = free_port(browser.NS_ADDRESS)
        url = f"https://{browser.NS_ADDRESS}:{port}/"
        app = start_app(tmp_path, port, tmp_path / "timeline.jsonl", "--host", "0.0.0.0",
                        "--https", "--llm-url", "http://127.0.0.1:9/v1",
                        PIPECATAPP_CACHE_DIR=str(cache))
        driver = None
        try:
            cert = cache / "tls" / "homevoice-cert.pem"
            deadline = time.monotonic() + 120
            while not cert.is_file():
                assert app.poll() is None and time.monotonic() < deadline, "no certificate"
                time.sleep(0.2)
            trust = ssl.create_default_context(cafile=str(cert))  # checks the address too
            with httpx.Client(verify=trust, trust_env=False) as client:
                deadline = time.monotonic() + 120
                while True:
                    try:
                        assert client.get(f"{url}client/").status_code == 200
                        break
                    except httpx.ConnectError:
                        assert app.poll() is None and time.monotonic() < deadline
                        time.sleep(0.3)
            driver = browser.chromium(
                mic, browser.temp_profile(),
                f"--ignore-certificate-errors-spki-list={browser.spki_sha256(cert)}")
            driver.get(url)
            driver.execute_script(WATCH_CSP_JS)
            assert driver.execute_script("return window.isSecureContext;")
            driver.find_element("id", "connect").click()
            deadline = time.monotonic() + 25
            users: list[str] = []
            while time.monotonic() < deadline and not any("france" in u.lower() for u in users):
                time.sleep(0.5)
                users = [e.text for e in driver.find_elements("css selector", "#transcript .user")]
            error = driver.find_element("id", "error").text
            found = leaks(driver, url.rstrip("/"))
        finally:
            if driver is not None:
                driver.quit()
            stop_app(app)
    assert any("france" in u.lower() for u in users), (users, error)
    assert found == []
    log = (tmp_path / "app.log").read_text()
    assert f"https://{browser.NS_ADDRESS}:{port}/" in log  # the app told the user this URL
