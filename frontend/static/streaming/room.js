/* The mediation room page: signaling socket, one peer connection to the media node, the grid.
 *
 * The offer publishes this member's microphone and camera and asks for SLOTS receive-only
 * audio+video pairs; the node says which member each pair shows ("layout"), so people coming
 * and going, caucuses and mutes never need a new offer. aiortc does not trickle ICE: the offer
 * is sent once gathering is complete. After a network drop the page builds a fresh connection
 * ("reconnect") and says so while it does; a dropped socket is reopened with backoff.
 * A dead network often leaves the socket looking open (nothing closes it): the page pings every
 * few seconds and treats a socket that has said nothing for a while as dropped.
 */
(() => {
  "use strict";
  const config = JSON.parse(document.getElementById("room-config").textContent);
  const text = JSON.parse(document.getElementById("room-text").textContent);
  const $ = (id) => document.getElementById(id);
  const root = $("room");
  const SLOTS = 5;
  const GATHER_TIMEOUT_MS = 4000;
  const RECONNECT_AFTER_MS = 2500;
  const PING_EVERY_MS = 4000;
  const SILENT_LIMIT_MS = 10000;

  let ws = null;
  let wsBackoff = 500;
  let heardAt = 0;
  let heartbeat = null;
  let pc = null;
  // each offer carries its own ref; an answer to an older offer (media started over meanwhile)
  // is not for the current connection and is dropped
  let offers = 0;
  let offerRef = null;
  let local = null;
  let admitted = false;
  let wantMedia = true;
  let inMedia = false;
  let finished = false;
  let layout = [];
  let members = [];
  let caucus = { active: false, members: [], on_hold: false };
  const tracks = {};
  let micOn = true;
  let camOn = true;
  let audioOnly = false;
  let reconnectTimer = null;
  let reconnecting = false;
  const shownEvidence = new Set();

  function notice(message, { sticky = true } = {}) {
    const el = $("notice");
    if (!message) {
      el.hidden = true;
      return;
    }
    el.textContent = message;
    el.hidden = false;
    if (!sticky) setTimeout(() => { if (el.textContent === message) el.hidden = true; }, 3000);
  }

  function send(frame) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ v: config.protocol, ...frame }));
  }

  // -- signaling -----------------------------------------------------------------------------
  function connectSocket() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + config.ws);
    ws = socket;
    heardAt = Date.now();
    socket.onopen = () => { wsBackoff = 500; heardAt = Date.now(); };
    socket.onmessage = (event) => {
      heardAt = Date.now();
      let frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      handle(frame);
    };
    socket.onclose = () => socketLost(socket);
  }

  function socketLost(socket) {
    if (socket !== ws || finished) return;
    socket.onclose = null;
    socket.onmessage = null;
    ws = null;
    reconnecting = true;
    notice(text.reconnecting);
    root.dataset.state = "reconnecting";
    setTimeout(connectSocket, wsBackoff * (0.5 + Math.random()));  // jitter: not all at once
    wsBackoff = Math.min(wsBackoff * 2, 2000);
  }

  heartbeat = setInterval(() => {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    if (Date.now() - heardAt > SILENT_LIMIT_MS) {
      const silent = ws;
      socketLost(silent);
      try { silent.close(); } catch (e) { /* already closing */ }
      return;
    }
    send({ type: "ping" });
  }, PING_EVERY_MS);

  async function handle(frame) {
    switch (frame.type) {
      case "hello":
        admitted = frame.admitted;
        showRecording(frame.recording);
        $("lobby-wait").hidden = admitted;
        root.dataset.state = admitted ? "admitted" : "lobby";
        // after a dropped socket the node has forgotten our media: a fresh connection follows,
        // and the notice stays up until it is connected
        inMedia = false;
        if (admitted && wantMedia) {
          await startMedia();
        } else if (reconnecting) {
          reconnecting = false;
          notice(text.reconnected, { sticky: false });
        }
        break;
      case "waiting":
        $("lobby-wait").hidden = false;
        root.dataset.state = "lobby";
        break;
      case "admitted":
        admitted = true;
        $("lobby-wait").hidden = true;
        if (wantMedia) await startMedia();
        break;
      case "answer":
        if (!pc || frame.ref !== offerRef || pc.signalingState !== "have-local-offer") break;
        offerRef = null;
        layout = frame.layout || [];
        await pc.setRemoteDescription({ type: "answer", sdp: frame.sdp });
        inMedia = true;
        root.dataset.state = "in-room";
        render();
        break;
      case "layout":
        layout = frame.slots || [];
        render();
        break;
      case "members":
        members = frame.members || [];
        render();
        renderHost();
        break;
      case "lobby":
        renderLobby(frame.waiting || []);
        break;
      case "caucus":
        caucus = frame;
        $("hold").hidden = !frame.on_hold;
        if ($("end-caucus")) $("end-caucus").hidden = !frame.active;
        render();
        renderHost();
        break;
      case "recording":
        showRecording(frame.active);
        break;
      case "evidence":
        addEvidence(frame);
        break;
      case "removed":
        finish(text.removed);
        break;
      case "refused":
        finish(frame.message || text.refused);
        break;
      case "error":
        if (frame.code === "superseded") finish(text.left);
        else if (frame.code === "bad_offer" && wantMedia) notice(frame.message);
        break;
      default:
        break;
    }
  }

  function finish(message) {
    finished = true;
    wantMedia = false;
    notice(message);
    closePeer();
    stopLocal();
    root.dataset.state = "ended";
    clearInterval(heartbeat);
    if (ws) ws.close();
  }

  // -- media ---------------------------------------------------------------------------------
  async function getLocal() {
    if (local) return local;
    try {
      local = await navigator.mediaDevices.getUserMedia({
        audio: true,
        video: { width: { ideal: 640 }, height: { ideal: 360 } },
      });
    } catch (e) {
      try {
        local = await navigator.mediaDevices.getUserMedia({ audio: true });
      } catch (e2) {
        notice(text.noCamera);
        local = new MediaStream();
      }
    }
    $("self-video").srcObject = local;
    applyLocalState();
    return local;
  }

  function stopLocal() {
    if (local) local.getTracks().forEach((t) => t.stop());
    local = null;
  }

  function closePeer() {
    if (pc) {
      pc.onconnectionstatechange = null;
      pc.close();
    }
    pc = null;
    for (const mid of Object.keys(tracks)) delete tracks[mid];
  }

  function waitForGathering(peer) {
    if (peer.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { peer.removeEventListener("icegatheringstatechange", check); resolve(); };
      const check = () => { if (peer.iceGatheringState === "complete") done(); };
      peer.addEventListener("icegatheringstatechange", check);
      setTimeout(done, GATHER_TIMEOUT_MS);
    });
  }

  async function startMedia() {
    const type = inMedia || reconnecting ? "reconnect" : "join";
    await getLocal();
    closePeer();
    const peer = new RTCPeerConnection({ iceServers: config.iceServers, bundlePolicy: "max-bundle" });
    pc = peer;
    const audio = local.getAudioTracks()[0];
    const video = local.getVideoTracks()[0];
    peer.addTransceiver(audio || "audio", { direction: "sendonly", streams: [local] });
    peer.addTransceiver(video && !audioOnly ? video : "video", { direction: "sendonly", streams: [local] });
    for (let i = 0; i < SLOTS; i += 1) {
      peer.addTransceiver("audio", { direction: "recvonly" });
      peer.addTransceiver("video", { direction: "recvonly" });
    }
    peer.ontrack = (event) => {
      tracks[event.transceiver.mid] = event.track;
      render();
    };
    peer.onconnectionstatechange = () => onPeerState(peer);
    await peer.setLocalDescription(await peer.createOffer());
    await waitForGathering(peer);
    if (pc !== peer) return;
    offers += 1;
    offerRef = `${type}-${offers}`;
    send({ type, offer: peer.localDescription.sdp, ref: offerRef });
    sendMediaState();
  }

  function onPeerState(peer) {
    if (peer !== pc) return;
    const state = peer.connectionState;
    if (state === "connected") {
      clearTimeout(reconnectTimer);
      reconnectTimer = null;
      if (reconnecting) notice(text.reconnected, { sticky: false });
      else if ($("notice").textContent === text.connecting) notice("");
      reconnecting = false;
      root.dataset.state = "in-room";
    } else if (state === "disconnected" || state === "failed") {
      if (reconnectTimer) return;
      reconnectTimer = setTimeout(() => {
        reconnectTimer = null;
        if (!pc || pc.connectionState === "connected" || finished || !wantMedia) return;
        // aiortc cannot restart ICE in place: a fresh connection replaces this one
        reconnecting = true;
        notice(text.reconnecting);
        root.dataset.state = "reconnecting";
        startMedia();
      }, state === "failed" ? 0 : RECONNECT_AFTER_MS);
    }
  }

  function applyLocalState() {
    if (!local) return;
    local.getAudioTracks().forEach((t) => { t.enabled = micOn; });
    local.getVideoTracks().forEach((t) => { t.enabled = camOn && !audioOnly; });
  }

  function sendMediaState() {
    send({ type: "media", audio: micOn, video: camOn && !audioOnly, receive_video: !audioOnly });
  }

  function showRecording(active) {
    $("recording").hidden = !active;
  }

  // -- the grid ------------------------------------------------------------------------------
  function memberInfo(id) {
    return members.find((m) => m.id === id) || {};
  }

  function tileFor(slot) {
    let tile = document.querySelector(`.tile[data-member="${slot.member}"]`);
    if (!tile) {
      tile = document.createElement("figure");
      tile.className = "tile";
      tile.dataset.member = slot.member;
      const video = document.createElement("video");
      video.className = "remote";
      video.autoplay = true;
      video.playsInline = true;
      video.muted = true; // sound goes through the <audio> element, so video never waits for it
      const audio = document.createElement("audio");
      audio.autoplay = true;
      const caption = document.createElement("figcaption");
      tile.append(video, audio, caption);
      $("grid").append(tile);
    }
    return tile;
  }

  function attach(element, track) {
    const current = element.srcObject && element.srcObject.getTracks()[0];
    if (track && current !== track) {
      element.srcObject = new MediaStream([track]);
      element.play().catch(() => {});
    } else if (!track && element.srcObject) {
      element.srcObject = null;
    }
  }

  function render() {
    const shown = new Set();
    for (const slot of layout) {
      shown.add(slot.member);
      const tile = tileFor(slot);
      attach(tile.querySelector("video"), tracks[slot.video_mid]);
      attach(tile.querySelector("audio"), tracks[slot.audio_mid]);
      const info = memberInfo(slot.member);
      const onHold = caucus.active && (caucus.on_hold || !caucus.members.includes(slot.member));
      tile.classList.toggle("hold", onHold);
      tile.hidden = audioOnly;
      const caption = tile.querySelector("figcaption");
      caption.textContent = "";
      const label = document.createElement("strong");
      label.textContent = slot.label || info.label || "";
      caption.append(label);
      const notes = [];
      if (onHold) notes.push(text.onHold);
      if ((info.muted && info.muted.audio) || (info.self_muted && info.self_muted.audio)) notes.push(text.muted);
      if (notes.length) caption.append(" ", Object.assign(document.createElement("span"), { className: "muted", textContent: `(${notes.join(", ")})` }));
      if (info.quality) caption.append(Object.assign(document.createElement("span"), { className: `q q-${info.quality}`, textContent: text.quality[info.quality] || info.quality }));
    }
    document.querySelectorAll(".tile[data-member]").forEach((tile) => {
      if (!shown.has(tile.dataset.member)) tile.remove();
    });
  }

  // -- the mediator's controls ---------------------------------------------------------------
  function button(label, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.addEventListener("click", onClick);
    return b;
  }

  function renderLobby(waiting) {
    const list = $("lobby-list");
    if (!list) return;
    list.textContent = "";
    for (const m of waiting) {
      const li = document.createElement("li");
      li.append(Object.assign(document.createElement("span"), { textContent: m.label }));
      li.append(button(text.admit, () => send({ type: "admit", member: m.id })));
      li.dataset.member = m.id;
      list.append(li);
    }
  }

  function renderHost() {
    const list = $("member-list");
    if (!list) return;
    list.textContent = "";
    for (const m of members) {
      if (m.id === config.me.id || !m.admitted) continue;
      const li = document.createElement("li");
      li.dataset.member = m.id;
      li.append(Object.assign(document.createElement("span"), { textContent: m.label + (m.in_media ? "" : " …") }));
      li.append(button(m.muted.audio ? text.unmute : text.mute, () => send({ type: "mute", member: m.id, audio: !m.muted.audio })));
      li.append(button(m.muted.video ? text.startVideo : text.stopVideo, () => send({ type: "mute", member: m.id, video: !m.muted.video })));
      if (!caucus.active && m.in_media && (m.role === "applicant" || m.role === "respondent")) {
        li.append(button(text.caucus, () => send({ type: "caucus", member: m.id })));
      }
      li.append(button(text.remove, () => send({ type: "remove", member: m.id })));
      list.append(li);
    }
  }

  // -- evidence ------------------------------------------------------------------------------
  function addEvidence(item) {
    if (shownEvidence.has(item.id)) return;
    shownEvidence.add(item.id);
    const li = document.createElement("li");
    const link = Object.assign(document.createElement("a"), { href: item.url, target: "_blank", rel: "noopener" });
    if (item.content_type.startsWith("image/")) {
      link.append(Object.assign(document.createElement("img"), { src: item.url, alt: item.title }));
    } else {
      link.textContent = "PDF";
    }
    li.append(link, document.createElement("br"), `${item.label}: ${item.title}`);
    $("evidence-list").prepend(li);
  }

  $("evidence-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const error = $("evidence-error");
    error.textContent = "";
    const response = await fetch(config.evidenceUrl, {
      method: "POST",
      body: new FormData(form),
      headers: { "X-CSRFToken": form.querySelector("[name=csrfmiddlewaretoken]").value },
      credentials: "same-origin",
    });
    let body = {};
    try { body = await response.json(); } catch (e) { /* not JSON */ }
    if (response.ok) {
      addEvidence(body);
      form.reset();
    } else {
      error.textContent = body.message || response.statusText;
    }
  });

  // -- controls ------------------------------------------------------------------------------
  function press(id, pressed, label) {
    const b = $(id);
    b.setAttribute("aria-pressed", String(pressed));
    b.textContent = label;
  }

  $("mic").addEventListener("click", () => {
    micOn = !micOn;
    press("mic", !micOn, micOn ? text.micOn : text.micOff);
    applyLocalState();
    sendMediaState();
  });
  $("cam").addEventListener("click", () => {
    camOn = !camOn;
    press("cam", !camOn, camOn ? text.camOn : text.camOff);
    applyLocalState();
    sendMediaState();
  });
  $("audio-only").addEventListener("click", async () => {
    audioOnly = !audioOnly;
    press("audio-only", audioOnly, audioOnly ? text.withVideo : text.audioOnly);
    applyLocalState();
    if (pc) {
      const sender = pc.getTransceivers()[1].sender;
      const video = local && local.getVideoTracks()[0];
      await sender.replaceTrack(audioOnly ? null : video || null);
    }
    render();
    sendMediaState();
  });
  $("leave").addEventListener("click", () => {
    wantMedia = false;
    inMedia = false;
    send({ type: "leave" });
    closePeer();
    stopLocal();
    layout = [];
    render();
    notice(text.left);
    $("join").textContent = text.rejoin;
    $("join").hidden = false;
    $("leave").hidden = true;
  });
  $("join").addEventListener("click", async () => {
    wantMedia = true;
    notice("");
    $("join").hidden = true;
    $("leave").hidden = false;
    if (admitted) await startMedia();
  });
  if ($("end-caucus")) $("end-caucus").addEventListener("click", () => send({ type: "caucus", member: null }));

  (config.evidence || []).forEach(addEvidence);
  notice(text.connecting, { sticky: false });
  connectSocket();
})();
