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
  const waiting = document.getElementById("waiting");
  const soundOnly = document.getElementById("sound-only");
  const soundOnlyNote = document.getElementById("sound-only-note");
  const texts = {};
  document.getElementById("watch-texts").content.querySelectorAll("[data-key]").forEach(
    (el) => { texts[el.dataset.key] = el.textContent; });
  const hlsUrl = root.dataset.hls;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socketUrl = `${scheme}://${location.host}/ws/watch/${root.dataset.publicId}/`;
  let socket = null;
  let backoff = 500;
  const RESTART = 4503;  // close code: the server process is replaced, reconnect now
  const OPEN_TIMEOUT = 10000;  // an attempt not open by then is given up and made again
  let reopened = false;
  let pc = null;
  let mode = null;
  let hls = null;
  let answerTimer = null;
  // sound only: every camera in the room is off (the server says), or this viewer's own stream
  // carries no picture: the ladder put its weak link on the audio-only layer (the node says so
  // with watch.layer; getStats shows it too, for a stream that stops without a word)
  let noCameras = false;
  let audioLayer = false;
  let videoStalled = false;

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
    audioLayer = false;
    if (pc) { pc.close(); pc = null; }
    clearTimeout(answerTimer);
  }

  function playHls() {
    if (mode === "hls") return;
    if (pc) { closePeer(); send({ type: "watch.leave" }); }
    setMode("hls");
    video.srcObject = null;
    if (window.Hls && window.Hls.isSupported()) {
      // The master playlist appears a segment after the session goes live: keep asking for it.
      // hls.js gives up on a 404 at once unless told otherwise, so the retry policy says so (for
      // the renditions' playlists too). hls.js picks the rendition (layer) its bandwidth allows.
      const keepAsking = { maxNumRetry: 60, retryDelayMs: 1000, maxRetryDelayMs: 2000,
        shouldRetry: (config, count) => count < config.maxNumRetry };
      const patiently = { default: { maxTimeToFirstByteMs: 10000, maxLoadTimeMs: 20000,
        timeoutRetry: keepAsking, errorRetry: keepAsking } };
      hls = new window.Hls({
        liveSyncDurationCount: 2,
        manifestLoadPolicy: patiently,
        playlistLoadPolicy: patiently,
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
      pc = new RTCPeerConnection({
        iceServers: JSON.parse(root.dataset.ice || "[]"),
        iceTransportPolicy: root.dataset.icePolicy || "all",
      });
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

  function showSoundOnly() {
    const live = root.dataset.state === "live";
    const weak = audioLayer || videoStalled;
    const why = !live ? null : noCameras ? "noCameras" : weak ? "weakLink" : null;
    soundOnly.hidden = !why;
    root.dataset.soundOnly = why || "";
    if (why) soundOnlyNote.textContent = texts[why];
  }

  // The viewer's video stream: frames decoded and audio packets received, once a second.
  let lastVideo = null;
  let lastAudio = null;
  let stillFor = 0;
  async function watchStream() {
    if (!pc || mode !== "webrtc") { stillFor = 0; lastVideo = null; return; }
    let frames = null;
    let packets = null;
    try {
      (await pc.getStats()).forEach((s) => {
        if (s.type !== "inbound-rtp") return;
        if (s.kind === "video") frames = s.framesDecoded || 0;
        if (s.kind === "audio") packets = s.packetsReceived || 0;
      });
    } catch (e) {
      return;
    }
    const pictures = frames !== null && lastVideo !== null && frames > lastVideo;
    const sound = packets !== null && lastAudio !== null && packets > lastAudio;
    // sound arriving without a picture for 4 s (a first picture takes a second or two)
    stillFor = pictures ? 0 : (sound ? stillFor + 1 : stillFor);
    lastVideo = frames;
    lastAudio = packets;
    const stalled = stillFor >= 4;
    if (stalled !== videoStalled) { videoStalled = stalled; showSoundOnly(); }
  }
  setInterval(watchStream, 1000);

  function showState(message) {
    errorEl.hidden = true;
    stateEl.dataset.state = message.state;
    stateEl.textContent = texts[message.state] || message.state;
    viewersEl.textContent = texts.viewers.replace("%(n)s", message.viewers);
    slateNote.hidden = message.state !== "hold";
    // nobody in the room yet: a waiting picture instead of a black one
    waiting.hidden = !(message.state !== "ended" && !message.members);
    root.dataset.members = String(message.members || 0);
    root.dataset.screen = message.screen ? "1" : "0";
    root.dataset.state = message.state;
    const pictures = message.pictures === undefined ? message.members : message.pictures;
    noCameras = !!message.members && !pictures;
    showSoundOnly();
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
    } else if (message.type === "watch.layer") {
      audioLayer = !message.video;
      root.dataset.layer = message.layer;
      showSoundOnly();
    } else if (message.type === "watch.moved") {
      // the session moved to another media node: offer again when its state comes
      reopened = true;
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
    // An attempt that hangs (a server swamped by everyone reconnecting at once after a crash)
    // would wait for the browser's own timeout: give it up and try again after the back-off.
    setTimeout(() => {
      if (ws !== socket || ws.readyState !== WebSocket.CONNECTING) return;
      lost(ws, 0);
      try { ws.close(); } catch (e) { /* already closing */ }
    }, OPEN_TIMEOUT);
  }

  function lost(ws, code) {
    if (ws !== socket) return;
    socket = null;
    if (code === 4403 || code === 4404) { closePeer(); return; }
    if (root.dataset.state === "ended") return;
    reopened = true;
    root.dataset.socket = "reconnecting";
    // 4503: this server process is being replaced and another one serves: come back at once
    if (code === RESTART) { backoff = 500; connect(); return; }
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
