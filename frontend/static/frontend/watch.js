// The watch page: WebRTC from the media node by default; HLS (hls.js, or the browser's own player)
// when WebRTC is missing, fails, or the node has reached its viewer limit. A dropped socket (the
// server restarted, the network went away) is reopened with backoff, and a WebRTC viewer makes a
// fresh offer on the new socket: the node that answered the old one may be gone.
(function () {
  "use strict";
  const root = document.getElementById("watch");
  if (!root) return;
  const video = document.getElementById("player");
  const stateEl = document.getElementById("watch-state");
  const viewersEl = document.getElementById("watch-viewers");
  const modeEl = document.getElementById("watch-mode");
  const errorEl = document.getElementById("watch-error");
  const slateNote = document.getElementById("slate-note");
  const texts = {};
  document.getElementById("watch-texts").content.querySelectorAll("[data-key]").forEach(
    (el) => { texts[el.dataset.key] = el.textContent; });
  const hlsUrl = root.dataset.hls;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socketUrl = `${scheme}://${location.host}/ws/watch/${root.dataset.publicId}/`;
  let socket = null;
  let backoff = 500;
  let reopened = false;
  let pc = null;
  let mode = null;
  let hls = null;
  let answerTimer = null;

  function send(message) {
    if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function showError(text) {
    errorEl.textContent = text;
    errorEl.hidden = false;
  }

  function setMode(name) {
    mode = name;
    root.dataset.mode = name;
    modeEl.textContent = texts[name] || "";
  }

  function closePeer() {
    if (pc) { pc.close(); pc = null; }
    clearTimeout(answerTimer);
  }

  function playHls() {
    if (mode === "hls") return;
    if (pc) { closePeer(); send({ type: "watch.leave" }); }
    setMode("hls");
    video.srcObject = null;
    if (window.Hls && window.Hls.isSupported()) {
      // The playlist appears a segment after the session goes live: keep asking for it. hls.js
      // gives up on a 404 at once unless told otherwise, so the retry policy says so.
      const keepAsking = { maxNumRetry: 60, retryDelayMs: 1000, maxRetryDelayMs: 2000,
        shouldRetry: (config, count) => count < config.maxNumRetry };
      hls = new window.Hls({
        liveSyncDurationCount: 2,
        manifestLoadPolicy: { default: { maxTimeToFirstByteMs: 10000, maxLoadTimeMs: 20000,
          timeoutRetry: keepAsking, errorRetry: keepAsking } },
      });
      hls.loadSource(hlsUrl);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = hlsUrl;
    } else {
      showError(texts.unavailable);
      return;
    }
    video.play().catch(() => {});
  }

  function iceGathered(peer) {
    // aiortc does not take trickled candidates: send the offer with all of them in it.
    if (peer.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { if (peer.iceGatheringState === "complete") resolve(); };
      peer.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 3000);
    });
  }

  async function playWebRtc() {
    if (typeof window.RTCPeerConnection !== "function") { playHls(); return; }
    setMode("webrtc");
    try {
      pc = new RTCPeerConnection({ iceServers: JSON.parse(root.dataset.ice || "[]") });
      pc.addTransceiver("video", { direction: "recvonly" });
      pc.addTransceiver("audio", { direction: "recvonly" });
      const stream = new MediaStream();
      pc.addEventListener("track", (event) => {
        stream.addTrack(event.track);
        video.srcObject = stream;
        video.play().catch(() => {});
      });
      pc.addEventListener("connectionstatechange", () => {
        if (pc && pc.connectionState === "failed") playHls();
      });
      await pc.setLocalDescription(await pc.createOffer());
      await iceGathered(pc);
      send({ type: "watch.offer", sdp: pc.localDescription.sdp });
      answerTimer = setTimeout(() => { if (mode === "webrtc") playHls(); }, 10000);
    } catch (error) {
      playHls();
    }
  }

  function showState(message) {
    errorEl.hidden = true;
    stateEl.dataset.state = message.state;
    stateEl.textContent = texts[message.state] || message.state;
    viewersEl.textContent = texts.viewers.replace("%(n)s", message.viewers);
    slateNote.hidden = message.state !== "hold";
    root.dataset.state = message.state;
    if (message.state === "ended") {
      closePeer();
      if (hls) { hls.stopLoad(); }
    } else if (mode === null) {
      if (root.dataset.forceHls) playHls(); else playWebRtc();
    } else if (reopened && mode === "webrtc") {
      closePeer();
      playWebRtc();
    }
    reopened = false;
  }

  async function onMessage(event) {
    const message = JSON.parse(event.data);
    if (message.type === "watch.state") {
      backoff = 500;
      showState(message);
    } else if (message.type === "watch.answer" && pc) {
      clearTimeout(answerTimer);
      await pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
    } else if (message.type === "watch.fallback") {
      playHls();
    } else if (message.type === "error") {
      if (mode === "webrtc" && message.code === "offer_refused") playHls();
      else showError(message.message);
    }
  }

  let heardAt = 0;

  function connect() {
    const ws = new WebSocket(socketUrl);
    socket = ws;
    heardAt = Date.now();
    ws.addEventListener("message", (event) => { heardAt = Date.now(); onMessage(event); });
    ws.addEventListener("close", (event) => lost(ws, event.code));
    ws.addEventListener("open", () => { root.dataset.socket = "open"; });
  }

  function lost(ws, code) {
    if (ws !== socket) return;
    socket = null;
    if (code === 4403 || code === 4404) { closePeer(); return; }
    if (root.dataset.state === "ended") return;
    reopened = true;
    root.dataset.socket = "reconnecting";
    setTimeout(connect, backoff * (0.5 + Math.random()));  // jitter: not all viewers at once
    backoff = Math.min(backoff * 2, 2000);
  }

  // A dead network closes nothing: ping, and reopen a socket silent for too long.
  setInterval(() => {
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    if (Date.now() - heardAt > 15000) {
      const silent = socket;
      lost(silent, 0);
      try { silent.close(); } catch (e) { /* already closing */ }
      return;
    }
    send({ type: "ping" });
  }, 5000);

  connect();
})();
