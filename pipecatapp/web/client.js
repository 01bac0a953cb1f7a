// homevoice browser client: plain browser WebRTC against the app's /api/offer endpoint.
//
// Audio goes both ways on one RTCPeerConnection; transcripts and the bot's state arrive as
// RTVI messages (pipecat's client protocol, label "rtvi-ai") on a data channel. Nothing is
// loaded from anywhere but this page's own origin, and no STUN/TURN server is used: the
// connection only works between this browser and the assistant's host, directly.
"use strict";

(() => {
  const RTVI_LABEL = "rtvi-ai";
  const RTVI_VERSION = "2.2.0"; // the RTVI protocol version this page speaks
  const PING_MS = 1000; // keep-alive: the server treats 3 s without one as a lost peer
  const KEEP_MESSAGES = 2000; // the most recent RTVI messages kept in window.homevoice

  const el = {
    state: document.getElementById("state"),
    connect: document.getElementById("connect"),
    mute: document.getElementById("mute"),
    error: document.getElementById("error"),
    transcript: document.getElementById("transcript"),
    audio: document.getElementById("bot-audio"),
  };

  // What the page is doing, readable from the console (and by the browser test).
  const status = {
    state: "disconnected",
    pc: null,
    localStream: null,
    remoteStream: null,
    messages: [], // the RTVI messages received, with performance.now() of their arrival
    states: [], // every state shown, with performance.now() of the change
  };
  window.homevoice = status;

  let dc = null;
  let pingTimer = null;
  let userTurn = null; // the user's bubble of the current turn
  let botTurn = null; // the bot's bubble of the current turn
  let msgId = 0;

  function setState(state) {
    if (state !== status.state) status.states.push({ t: performance.now(), state });
    if (status.states.length > KEEP_MESSAGES) status.states.splice(0, KEEP_MESSAGES / 2);
    status.state = state;
    el.state.dataset.state = state;
    el.state.textContent = state;
  }

  function showError(text) {
    el.error.textContent = text;
    el.error.hidden = !text;
  }

  // ---- transcript -------------------------------------------------------------------

  function bubble(who) {
    const div = document.createElement("div");
    div.className = `turn ${who}`;
    div.dataset.who = who;
    el.transcript.append(div);
    div.scrollIntoView({ block: "end" });
    return div;
  }

  function onUserText(text, final) {
    if (!text) return;
    if (!userTurn) {
      userTurn = { div: bubble("user"), done: "" };
      botTurn = null;
    }
    if (final) {
      userTurn.done = `${userTurn.done} ${text}`.trim();
      userTurn.div.textContent = userTurn.done;
      userTurn.div.classList.remove("interim");
    } else {
      userTurn.div.textContent = `${userTurn.done} ${text}`.trim();
      userTurn.div.classList.add("interim");
    }
  }

  function onBotOutput(data) {
    if (data.spoken_status === "new" && data.will_be_spoken) return; // shown once spoken
    const text = (data.spoken_progress && data.spoken_progress.accumulated_text) || data.text;
    if (!text) return;
    if (!botTurn) {
      botTurn = { div: bubble("bot"), segments: new Map() };
      userTurn = null;
    }
    const key = data.segment_id ?? `s${botTurn.segments.size}`;
    let span = botTurn.segments.get(key);
    if (!span) {
      span = document.createElement("span");
      botTurn.div.append(span);
      botTurn.segments.set(key, span);
    }
    span.textContent = `${text} `;
  }

  // A disabled track plays silence everywhere it goes (and keeps the echo canceller's
  // reference, unlike rerouting the audio through Web Audio).
  function playBot(on) {
    if (status.remoteStream) status.remoteStream.getAudioTracks().forEach((t) => {
      t.enabled = on;
    });
  }

  // ---- RTVI messages ----------------------------------------------------------------

  function send(type, data) {
    if (!dc || dc.readyState !== "open") return;
    msgId += 1;
    const message = { label: RTVI_LABEL, type, id: `c${msgId}` };
    if (data !== undefined) message.data = data;
    dc.send(JSON.stringify(message));
  }

  function onMessage(raw) {
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      return;
    }
    if (msg.label !== RTVI_LABEL) return;
    status.messages.push({ t: performance.now(), type: msg.type, data: msg.data });
    if (status.messages.length > KEEP_MESSAGES) status.messages.splice(0, KEEP_MESSAGES / 2);
    const data = msg.data || {};
    switch (msg.type) {
      case "bot-ready":
        setState("listening");
        break;
      case "user-started-speaking":
        botTurn = null;
        if (status.state !== "speaking") setState("listening");
        break;
      case "user-stopped-speaking":
        setState("thinking");
        break;
      case "user-input":
        if (data.input_type === "transcription") onUserText(data.text, data.final);
        break;
      case "bot-llm-started":
        if (status.state !== "speaking") setState("thinking");
        break;
      case "bot-started-speaking":
        playBot(true);
        setState("speaking");
        break;
      case "bot-interrupted":
        // Silence at once what is still on its way: the browser's jitter buffer can hold
        // a few hundred ms of the interrupted answer.
        playBot(false);
        if (botTurn) botTurn.div.classList.add("interrupted");
        setState("listening");
        break;
      case "bot-stopped-speaking":
        setState("listening");
        break;
      case "bot-output":
        onBotOutput(data);
        break;
      case "error":
        showError(`assistant error: ${data.message || data.error || "unknown"}`);
        break;
      default:
        break;
    }
  }

  // ---- connection -------------------------------------------------------------------

  function gathered(pc, timeoutMs) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (pc.iceGatheringState === "complete") {
          pc.removeEventListener("icegatheringstatechange", done);
          resolve();
        }
      };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, timeoutMs); // host candidates come at once; do not hang on others
    });
  }

  async function connect() {
    showError("");
    setState("connecting");
    el.connect.disabled = true;
    try {
      if (!navigator.mediaDevices) {
        throw new Error(
          "this browser allows the microphone only on HTTPS pages or on localhost"
        );
      }
      const mic = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
        video: false,
      });
      status.localStream = mic;
      const pc = new RTCPeerConnection({ iceServers: [] });
      status.pc = pc;
      status.remoteStream = new MediaStream();
      pc.addEventListener("track", (ev) => {
        status.remoteStream.addTrack(ev.track);
        el.audio.srcObject = status.remoteStream;
        el.audio.play().catch(() => {});
      });
      pc.addEventListener("connectionstatechange", () => {
        if (pc !== status.pc) return;
        if (pc.connectionState === "failed") disconnect("the connection to the assistant failed");
      });
      pc.addTransceiver(mic.getAudioTracks()[0], { direction: "sendrecv", streams: [mic] });
      dc = pc.createDataChannel("rtvi", { ordered: true });
      dc.addEventListener("open", () => {
        send("client-ready", {
          version: RTVI_VERSION,
          about: { library: "homevoice-web", library_version: "1" },
        });
        pingTimer = setInterval(() => {
          if (dc && dc.readyState === "open") dc.send(`ping: ${Date.now()}`);
        }, PING_MS);
      });
      dc.addEventListener("message", (ev) => onMessage(ev.data));
      dc.addEventListener("close", () => {
        if (status.pc === pc) disconnect("the assistant ended the session");
      });

      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, 2000);
      const reply = await fetch("/api/offer", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
      });
      if (!reply.ok) throw new Error(`the assistant refused the call (HTTP ${reply.status})`);
      const answer = await reply.json();
      await pc.setRemoteDescription({ type: answer.type, sdp: answer.sdp });
      el.connect.textContent = "Disconnect";
      el.connect.disabled = false;
      el.mute.disabled = false;
    } catch (e) {
      disconnect(e && e.message ? e.message : String(e));
    }
  }

  // Close once the assistant has ended the session (it closes the data channel), or after
  // a few seconds: closing first would leave the assistant writing audio to no one.
  function closeWhenEnded(pc, channel) {
    const close = () => pc.close();
    if (!channel || channel.readyState !== "open") {
      close();
      return;
    }
    const timer = setTimeout(close, 3000);
    channel.addEventListener("close", () => {
      clearTimeout(timer);
      close();
    });
  }

  function disconnect(reason) {
    const pc = status.pc;
    status.pc = null;
    if (pingTimer) clearInterval(pingTimer);
    pingTimer = null;
    if (dc && dc.readyState === "open") send("disconnect-bot");
    const channel = dc;
    dc = null;
    if (pc) closeWhenEnded(pc, channel);
    if (status.localStream) status.localStream.getTracks().forEach((t) => t.stop());
    status.localStream = null;
    el.audio.srcObject = null;
    userTurn = null;
    botTurn = null;
    setState("disconnected");
    el.connect.textContent = "Connect";
    el.connect.disabled = false;
    el.mute.disabled = true;
    el.mute.setAttribute("aria-pressed", "false");
    el.mute.textContent = "Mute microphone";
    showError(reason || "");
  }

  el.connect.addEventListener("click", () => {
    if (status.pc) disconnect("");
    else connect();
  });

  el.mute.addEventListener("click", () => {
    if (!status.localStream) return;
    const muted = el.mute.getAttribute("aria-pressed") !== "true";
    status.localStream.getAudioTracks().forEach((t) => {
      t.enabled = !muted;
    });
    el.mute.setAttribute("aria-pressed", String(muted));
    el.mute.textContent = muted ? "Unmute microphone" : "Mute microphone";
  });
})();
