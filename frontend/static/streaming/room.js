/* The mediation room page: signaling socket, one peer connection to the media node, the grid.
 *
 * The offer publishes this member's microphone and camera and asks for SLOTS receive-only
 * audio+video pairs; the node says which member each pair shows ("layout"), so people coming
 * and going, caucuses and mutes never need a new offer. aiortc does not trickle ICE: the offer
 * is sent once gathering is complete. After a network drop the page builds a fresh connection
 * ("reconnect") and says so while it does; a dropped socket is reopened with backoff.
 * A dead network often leaves the socket looking open (nothing closes it): the page pings every
 * few seconds and treats a socket that has said nothing for a while as dropped.
 *
 * The check page hands over the chosen devices and "sound only" in sessionStorage. The person
 * speaking is shown large: the media node names them in a "speaker" frame, from the audio level
 * each member's packets carry. Until the node has named anyone (an older node, or nobody spoke
 * yet), the page falls back to the level of each received audio track (the inbound-rtp
 * audioLevel of the browser's own statistics), read a few times a second; that reading also
 * rings the tile of whoever is audible.
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
  const LEVEL_EVERY_MS = 200;
  const SPEAKING_LEVEL = 0.03;
  const SPEAKER_HOLD_MS = 1500;
  const choice = (() => {
    try { return JSON.parse(sessionStorage.getItem("cloudbench.devices") || "{}"); } catch (e) { return {}; }
  })();

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
  let camOn = !choice.noCamera;
  let audioOnly = !!choice.audioOnly;
  let mainMember = null;
  let nodeSpeaker = false;
  let spoken = null;
  // the room's screen share (one at a time), and this page's screen while it shares
  let share = { member: null, on_air: false };
  let screen = null;  // the member the node named last, shown large once their tile is there
  const loudAt = {};
  let reconnectTimer = null;
  let reconnecting = false;
  const RESTART = 4503;  // close code: the server process is replaced, reconnect now
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
    socket.onclose = (event) => socketLost(socket, event.code);
  }

  function socketLost(socket, code) {
    if (socket !== ws || finished) return;
    socket.onclose = null;
    socket.onmessage = null;
    ws = null;
    reconnecting = true;
    notice(text.reconnecting);
    root.dataset.state = "reconnecting";
    // 4503: this server process is being replaced and another one serves: come back at once
    if (code === RESTART) { wsBackoff = 500; connectSocket(); return; }
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
      case "moved":
        // the room moved to another media node (its node died, or is being upgraded): a
        // "hello" from the new node follows, and the page offers again by itself
        reconnecting = true;
        notice(text.reconnecting);
        root.dataset.state = "reconnecting";
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
        showButtons();
        break;
      case "recording":
        showRecording(frame.active);
        break;
      case "evidence":
        addEvidence(frame);
        break;
      case "share":
        share = { member: frame.member, on_air: !!frame.on_air };
        if (screen && share.member === config.me.id) await sendScreen();
        else if (screen && share.member !== config.me.id) await endScreen();
        render();
        showButtons();
        break;
      case "speaker":
        nodeSpeaker = true;
        root.dataset.speakerFrom = "node";
        // oneself speaking: the others stay where they are
        if (frame.member && frame.member !== config.me.id) {
          spoken = frame.member;
          loudAt[spoken] = Date.now();
          arrange();
        }
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
        else if (frame.ref === "share" || frame.ref === "share_air") {
          if (frame.ref === "share") await endScreen();
          notice(frame.message, { sticky: false });
        }
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
  function videoConstraints() {
    const video = { width: { ideal: 640 }, height: { ideal: 360 } };
    if (choice.video) video.deviceId = { ideal: choice.video };
    return video;
  }

  async function getLocal() {
    if (local) return local;
    const audio = choice.audio ? { deviceId: { ideal: choice.audio } } : true;
    const wantVideo = camOn && !audioOnly;
    try {
      local = await navigator.mediaDevices.getUserMedia(wantVideo ? { audio, video: videoConstraints() } : { audio });
    } catch (e) {
      try {
        local = await navigator.mediaDevices.getUserMedia({ audio });
      } catch (e2) {
        local = new MediaStream();
      }
      if (wantVideo) notice(text.noCamera);
      camOn = false;
    }
    $("self-video").srcObject = local;
    applyLocalState();
    return local;
  }

  // the camera is opened when it is first wanted (a member who joined with sound only)
  async function ensureCamera() {
    if (local && local.getVideoTracks().some((t) => t.readyState === "live")) return local.getVideoTracks()[0];
    try {
      const extra = await navigator.mediaDevices.getUserMedia({ video: videoConstraints() });
      const track = extra.getVideoTracks()[0];
      if (!local) local = new MediaStream();
      local.addTrack(track);
      $("self-video").srcObject = local;
      return track;
    } catch (e) {
      notice(text.noCamera);
      return null;
    }
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
    // an answer still on its way is for the connection just closed: the next one's offer gets a
    // ref of its own once gathered, and until then no answer fits it
    offerRef = null;
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
    const peer = new RTCPeerConnection({
      iceServers: config.iceServers,
      iceTransportPolicy: config.iceTransportPolicy || "all",
      bundlePolicy: "max-bundle",
    });
    pc = peer;
    const audio = local.getAudioTracks()[0];
    const video = local.getVideoTracks()[0];
    peer.addTransceiver(audio || "audio", { direction: "sendonly", streams: [local] });
    // sound only: the video transceiver carries no track, so no picture is sent at all
    peer.addTransceiver(video && camOn && !audioOnly ? video : "video", { direction: "sendonly", streams: [local] });
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

  function sendingVideo() {
    return camOn && !audioOnly && !!local && local.getVideoTracks().some((t) => t.readyState === "live");
  }

  function applyLocalState() {
    if (local) {
      local.getAudioTracks().forEach((t) => { t.enabled = micOn; });
      local.getVideoTracks().forEach((t) => { t.enabled = camOn && !audioOnly; });
    }
    document.querySelector(".tile.self").classList.toggle("no-video", !sendingVideo());
  }

  function sendMediaState() {
    send({ type: "media", audio: micOn, video: sendingVideo(), receive_video: !audioOnly });
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
      if (choice.speaker && audio.setSinkId) audio.setSinkId(choice.speaker).catch(() => {});
      const placeholder = document.createElement("div");
      placeholder.className = "placeholder";
      placeholder.setAttribute("aria-hidden", "true");
      const caption = document.createElement("figcaption");
      tile.append(video, audio, placeholder, caption);
      tile.addEventListener("click", () => { spoken = null; mainMember = slot.member; arrange(); });
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
      tile.classList.toggle("screen", share.member === slot.member);
      // sound only, or no picture from that member: their role stands in for it, never black
      const videoOff = (info.muted && info.muted.video) || (info.self_muted && info.self_muted.video);
      tile.classList.toggle("no-video", audioOnly || !!videoOff || !tracks[slot.video_mid]);
      tile.querySelector(".placeholder").textContent = slot.label || info.label || "";
      const caption = tile.querySelector("figcaption");
      caption.textContent = "";
      const label = document.createElement("strong");
      label.textContent = slot.label || info.label || "";
      caption.append(label);
      if (share.member === slot.member) caption.append(` · ${text.sharing}`);
      const notes = [];
      if (onHold) notes.push(text.onHold);
      if ((info.muted && info.muted.audio) || (info.self_muted && info.self_muted.audio)) notes.push(text.muted);
      if (notes.length) caption.append(" ", Object.assign(document.createElement("span"), { className: "muted", textContent: `(${notes.join(", ")})` }));
      if (info.quality) caption.append(Object.assign(document.createElement("span"), { className: `q q-${info.quality}`, textContent: text.quality[info.quality] || info.quality }));
    }
    document.querySelectorAll(".tile[data-member]").forEach((tile) => {
      if (!shown.has(tile.dataset.member)) tile.remove();
    });
    arrange();
  }

  // -- who is shown large ----------------------------------------------------------------------
  // The member speaking now; else the one who spoke last; else the mediator; else oneself alone.
  function arrange() {
    const tiles = [...document.querySelectorAll(".tile[data-member]")];
    const present = new Set(tiles.map((t) => t.dataset.member));
    if (share.member && present.has(share.member)) mainMember = share.member;
    else if (spoken && present.has(spoken)) mainMember = spoken;
    if (!present.has(mainMember)) {
      const expert = members.find((m) => m.role === "expert" && present.has(m.id));
      mainMember = expert ? expert.id : (tiles[0] ? tiles[0].dataset.member : null);
    }
    tiles.forEach((tile) => tile.classList.toggle("main", tile.dataset.member === mainMember));
    document.querySelector(".tile.self").classList.toggle("main", !mainMember);
    $("grid").dataset.count = String(tiles.length + 1);
    root.dataset.main = mainMember || "self";
  }

  // the level of each received audio track, as the browser measures what it plays
  // (inbound-rtp audioLevel, by transceiver mid)
  async function levels() {
    const out = {};
    const report = await pc.getStats();
    report.forEach((stat) => {
      if (stat.type === "inbound-rtp" && stat.kind === "audio" && stat.mid != null) {
        out[stat.mid] = stat.audioLevel || 0;
      }
    });
    return out;
  }

  let measuring = false;
  setInterval(async () => {
    if (!pc || !layout.length || measuring) return;
    measuring = true;
    let heard = {};
    try { heard = await levels(); } catch (e) { /* the connection is going */ } finally { measuring = false; }
    const now = Date.now();
    let loudest = null;
    let loudestLevel = SPEAKING_LEVEL;
    for (const slot of layout) {
      const info = memberInfo(slot.member);
      if ((info.muted && info.muted.audio) || (info.self_muted && info.self_muted.audio)) continue;
      const level = heard[slot.audio_mid] || 0;
      const tile = document.querySelector(`.tile[data-member="${slot.member}"]`);
      if (level > SPEAKING_LEVEL) loudAt[slot.member] = now;
      if (tile) tile.classList.toggle("speaking", now - (loudAt[slot.member] || 0) < 600);
      if (level > loudestLevel) { loudest = slot.member; loudestLevel = level; }
    }
    // the one shown large keeps their place while they pause for breath
    const currentQuiet = now - (loudAt[mainMember] || 0) > SPEAKER_HOLD_MS;
    if (!nodeSpeaker && loudest && loudest !== mainMember && currentQuiet) {
      root.dataset.speakerFrom = "page";
      mainMember = loudest;
      arrange();
    }
  }, LEVEL_EVERY_MS);

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
    // on a phone the panel is closed: the Tools button says someone is waiting
    const toggle = $("panel-toggle");
    let badge = toggle.querySelector(".badge");
    if (!badge) {
      badge = Object.assign(document.createElement("span"), { className: "badge" });
      toggle.append(badge);
    }
    badge.textContent = waiting.length ? String(waiting.length) : "";
    badge.hidden = !waiting.length;
    // Only what changed: a lobby list rebuilt while the host clicks would swallow the click
    // (the button pressed is not the one released), and the same list comes again often.
    const ids = new Set(waiting.map((m) => String(m.id)));
    for (const li of [...list.children]) {
      if (!ids.has(li.dataset.member)) li.remove();
    }
    const shown = new Map([...list.children].map((li) => [li.dataset.member, li]));
    for (const m of waiting) {
      const li = shown.get(String(m.id));
      if (li) {
        li.firstChild.textContent = m.label;
        continue;
      }
      const item = document.createElement("li");
      item.append(Object.assign(document.createElement("span"), { textContent: m.label }));
      item.append(button(text.admit, () => send({ type: "admit", member: m.id })));
      item.dataset.member = String(m.id);
      list.append(item);
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
    b.querySelector(".label").textContent = label;
  }

  $("mic").addEventListener("click", () => {
    micOn = !micOn;
    press("mic", !micOn, micOn ? text.micOn : text.micOff);
    applyLocalState();
    sendMediaState();
  });
  async function sendCamera() {
    if (!pc) return;
    const sender = pc.getTransceivers()[1].sender;
    const video = camOn && !audioOnly ? await ensureCamera() : null;
    if (!video && camOn && !audioOnly) camOn = false;
    await sender.replaceTrack(video);
  }

  // -- screen sharing: the screen goes on this member's video sender in place of the camera, so
  // the node forwards it like a camera and nothing is renegotiated; the room shows it large
  async function startScreen() {
    if (!pc || screen) return;
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    } catch (e) {
      return;  // the person chose nothing
    }
    screen = stream.getVideoTracks()[0];
    // text on a screen must stay readable: keep the resolution, let the frame rate give way
    if ("contentHint" in screen) screen.contentHint = "detail";
    screen.addEventListener("ended", () => stopScreen());
    send({ type: "share", active: true });
  }

  async function sendScreen() {
    if (!pc || !screen) return;
    await pc.getTransceivers()[1].sender.replaceTrack(screen);
    $("self-video").srcObject = new MediaStream([screen]);
    root.dataset.sharing = "1";
  }

  // the room's share ended, or was refused: back to the camera (or to nothing)
  async function endScreen() {
    if (!screen) return;
    const track = screen;
    screen = null;
    track.stop();
    delete root.dataset.sharing;
    $("self-video").srcObject = local;
    if (pc) await sendCamera();
  }

  async function stopScreen() {
    if (!screen) return;
    send({ type: "share", active: false });
    await endScreen();
    showButtons();
  }

  function showButtons() {
    const mine = share.member === config.me.id;
    press("share", mine, mine ? text.stopShare : text.share);
    // a laptop's browser can share its screen; a phone's cannot (no getDisplayMedia)
    $("share").hidden = !(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
    if ($("share-air")) {
      $("share-air-box").hidden = !share.member;
      $("share-air").disabled = caucus.active;
      $("share-air").setAttribute("aria-pressed", String(share.on_air));
      $("share-air").textContent = share.on_air ? text.shareOffAir : text.shareAir;
    }
    press("mic", !micOn, micOn ? text.micOn : text.micOff);
    press("cam", !camOn, camOn ? text.camOn : text.camOff);
    press("audio-only", audioOnly, audioOnly ? text.withVideo : text.audioOnly);
  }

  $("cam").addEventListener("click", async () => {
    camOn = !camOn;
    if (camOn && !audioOnly && !(await ensureCamera())) camOn = false;
    await sendCamera();
    showButtons();
    applyLocalState();
    sendMediaState();
  });
  $("audio-only").addEventListener("click", async () => {
    audioOnly = !audioOnly;
    if (!audioOnly && !camOn) camOn = !!(await ensureCamera());
    await sendCamera();
    showButtons();
    applyLocalState();
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
    $("join").querySelector(".label").textContent = text.rejoin;
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
  $("share").addEventListener("click", () => (share.member === config.me.id ? stopScreen() : startScreen()));
  if ($("share-air")) $("share-air").addEventListener("click", () => send({ type: "share_air", on_air: !share.on_air }));
  if ($("end-caucus")) $("end-caucus").addEventListener("click", () => send({ type: "caucus", member: null }));

  // -- the panel: the mediator's tools (and evidence) over the room on a phone, beside it on a laptop
  function openPanel(open) {
    $("panel").dataset.open = open ? "1" : "0";
    $("panel-toggle").setAttribute("aria-expanded", String(open));
    if (open) $("panel").querySelector("h2").focus({ preventScroll: true });
  }
  $("panel").querySelector("h2").tabIndex = -1;
  $("panel-toggle").addEventListener("click", () => openPanel($("panel").dataset.open !== "1"));
  $("panel-close").addEventListener("click", () => { openPanel(false); $("panel-toggle").focus(); });

  // pausing the livestream from the room keeps the mediator in the room
  document.querySelectorAll(".on-air form").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = new FormData(form);
      if (event.submitter) body.set(event.submitter.name, event.submitter.value);
      await fetch(form.action, {
        method: "POST", body, credentials: "same-origin",
        headers: { "X-CSRFToken": form.querySelector("[name=csrfmiddlewaretoken]").value },
      });
    });
  });

  showButtons();
  applyLocalState();
  (config.evidence || []).forEach(addEvidence);
  notice(text.connecting, { sticky: false });
  connectSocket();
})();
