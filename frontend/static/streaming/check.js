/* The check page before a member joins the room: camera preview, microphone level, device
 * pickers, a test sound, and a connection test (round trip and loss of pings over the room's
 * own socket). The choices go to the room page in sessionStorage ("cloudbench.devices").
 * When the browser refuses the camera or microphone, the page says why and how to allow it, and
 * the member can still join with sound only.
 */
(() => {
  "use strict";
  const config = JSON.parse(document.getElementById("check-config").textContent);
  const texts = {};
  document.getElementById("check-texts").content.querySelectorAll("[data-key]").forEach(
    (el) => { texts[el.dataset.key] = el.textContent; });
  const $ = (id) => document.getElementById(id);
  const root = $("check");
  const STORE = "cloudbench.devices";
  const PINGS = 20;
  const PING_GAP_MS = 250;
  const PING_TIMEOUT_MS = 2000;

  let stream = null;
  let audioContext = null;
  let meterTimer = null;
  let cameraRefused = false;

  function saved() {
    try { return JSON.parse(sessionStorage.getItem(STORE) || "{}"); } catch (e) { return {}; }
  }

  function browserKind() {
    const ua = navigator.userAgent;
    if (/MicroMessenger/i.test(ua)) return "wechat";
    if (/iPhone|iPad|iPod/i.test(ua)) return "ios";
    if (/Android/i.test(ua)) return "android";
    return "";
  }

  // the help for this phone's browser first; the others stay below it
  function orderHelp() {
    const kind = browserKind();
    const box = document.querySelector(".howto");
    const mine = kind && box.querySelector(`[data-browser="${kind}"]`);
    if (mine) {
      box.prepend(mine);
      mine.classList.add("mine");
    }
  }

  function explain(error, { cameraOnly = false } = {}) {
    let why = texts.denied;
    const name = error && error.name;
    if (cameraOnly) why = texts.deniedCamera;
    else if (name === "NotFoundError" || name === "OverconstrainedError") why = texts.notFound;
    else if (name === "NotReadableError" || name === "AbortError") why = texts.busy;
    else if (!navigator.mediaDevices || name === "TypeError") why = texts.insecure;
    $("denied-why").textContent = why;
    $("denied").hidden = false;
    root.dataset.state = cameraOnly ? "camera-refused" : "refused";
  }

  function stopStream() {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    clearInterval(meterTimer);
  }

  async function open() {
    stopStream();
    const choice = saved();
    const audio = choice.audio ? { deviceId: { exact: choice.audio } } : true;
    const video = choice.video
      ? { deviceId: { exact: choice.video }, width: { ideal: 640 }, height: { ideal: 360 } }
      : { width: { ideal: 640 }, height: { ideal: 360 } };
    cameraRefused = false;
    $("denied").hidden = true;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      explain(null);
      showPicture();
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio, video });
      root.dataset.state = "ready";
    } catch (error) {
      // the camera may be what was refused: try the microphone alone
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio });
        cameraRefused = true;
        explain(error, { cameraOnly: true });
      } catch (error2) {
        explain(error2);
      }
    }
    showPicture();
    startMeter();
    await listDevices();
  }

  function showPicture() {
    const hasVideo = stream && stream.getVideoTracks().length > 0;
    $("preview").srcObject = hasVideo ? stream : null;
    $("preview").hidden = !hasVideo;
    $("no-picture").hidden = hasVideo;
    $("join-video").hidden = !hasVideo;
    $("join-audio").classList.toggle("primary", !hasVideo);
  }

  function startMeter() {
    const track = stream && stream.getAudioTracks()[0];
    if (!track) return;
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    audioContext = audioContext || new Context();
    const source = audioContext.createMediaStreamSource(new MediaStream([track]));
    const analyser = audioContext.createAnalyser();
    analyser.fftSize = 512;
    source.connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    const meter = $("mic-level");
    meterTimer = setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const s of samples) sum += s * s;
      const rms = Math.sqrt(sum / samples.length);
      // speech is around 0.02–0.2 RMS: show it on a scale people can see move
      const value = Math.min(100, Math.round(Math.sqrt(rms) * 160));
      meter.value = value;
      meter.textContent = String(value);
      root.dataset.micLevel = String(value);
    }, 100);
  }

  async function listDevices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
    const devices = await navigator.mediaDevices.enumerateDevices();
    const choice = saved();
    const current = {
      audioinput: stream && stream.getAudioTracks()[0] && stream.getAudioTracks()[0].getSettings().deviceId,
      videoinput: stream && stream.getVideoTracks()[0] && stream.getVideoTracks()[0].getSettings().deviceId,
      audiooutput: choice.speaker,
    };
    const pickers = { videoinput: $("camera-pick"), audioinput: $("mic-pick"), audiooutput: $("speaker-pick") };
    for (const [kind, select] of Object.entries(pickers)) {
      select.textContent = "";
      const mine = devices.filter((d) => d.kind === kind && d.deviceId);
      if (!mine.length) select.append(new Option(texts.defaultDevice, ""));
      mine.forEach((d, i) => {
        const option = new Option(d.label || `${texts.defaultDevice} ${i + 1}`, d.deviceId);
        option.selected = d.deviceId === current[kind];
        select.append(option);
      });
    }
    // only some browsers can choose where sound goes
    $("speaker-field").hidden = !("setSinkId" in HTMLMediaElement.prototype);
    $("spk-h").hidden = $("speaker-field").hidden;
  }

  function remember(patch) {
    sessionStorage.setItem(STORE, JSON.stringify({ ...saved(), ...patch }));
  }

  $("camera-pick").addEventListener("change", (e) => { remember({ video: e.target.value }); open(); });
  $("mic-pick").addEventListener("change", (e) => { remember({ audio: e.target.value }); open(); });
  $("speaker-pick").addEventListener("change", (e) => remember({ speaker: e.target.value }));
  $("retry").addEventListener("click", open);

  // -- test sound: a short two-note chime through the chosen speaker ----------------------------
  $("test-sound").addEventListener("click", async () => {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    audioContext = audioContext || new Context();
    await audioContext.resume();
    const out = audioContext.createMediaStreamDestination();
    const gain = audioContext.createGain();
    gain.gain.value = 0.25;
    gain.connect(out);
    const now = audioContext.currentTime;
    [[660, 0], [880, 0.35]].forEach(([frequency, at]) => {
      const tone = audioContext.createOscillator();
      tone.frequency.value = frequency;
      tone.connect(gain);
      tone.start(now + at);
      tone.stop(now + at + 0.3);
    });
    const player = new Audio();
    player.srcObject = out.stream;
    const speaker = saved().speaker;
    if (speaker && player.setSinkId) {
      try { await player.setSinkId(speaker); } catch (e) { /* the default speaker then */ }
    }
    player.play().catch(() => {});
    $("sound-note").textContent = texts.playing;
    root.dataset.sound = "played";
    setTimeout(() => { player.srcObject = null; }, 1200);
  });

  // -- connection test: pings over the room socket (as a probe: it does not enter the room) -----
  function rate(rtt, loss) {
    if (loss >= 0.1 || rtt >= 400) return "poor";
    if (loss >= 0.02 || rtt >= 150) return "fair";
    return "good";
  }

  function testConnection() {
    const result = $("net-result");
    result.dataset.quality = "";
    result.textContent = texts.testing || result.textContent;
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    let socket;
    try {
      socket = new WebSocket(scheme + location.host + config.ws);
    } catch (e) {
      result.textContent = texts.failed;
      result.dataset.quality = "poor";
      return;
    }
    const sent = new Map();
    const times = [];
    let count = 0;
    let timer = null;
    const finish = () => {
      clearInterval(timer);
      try { socket.close(); } catch (e) { /* already closed */ }
      const lost = PINGS - times.length;
      if (!times.length) {
        result.textContent = texts.failed;
        result.dataset.quality = "poor";
        root.dataset.net = "poor";
        return;
      }
      times.sort((a, b) => a - b);
      const rtt = Math.round(times[Math.floor(times.length / 2)]);
      const loss = lost / PINGS;
      const quality = rate(rtt, loss);
      result.dataset.quality = quality;
      result.textContent = texts[quality];
      $("net-figures").textContent = texts.figures.replace(/%+\(rtt\)s/, rtt).replace(/%+\(loss\)s/, `${Math.round(loss * 100)}%`);
      root.dataset.net = quality;
      root.dataset.rtt = String(rtt);
      root.dataset.loss = String(loss);
      if (quality === "poor") $("join-audio").classList.add("primary");
    };
    socket.onmessage = (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame.type === "pong" && sent.has(frame.ref)) {
        const at = sent.get(frame.ref);
        sent.delete(frame.ref);
        if (performance.now() - at <= PING_TIMEOUT_MS) times.push(performance.now() - at);
      } else if (frame.type === "refused") {
        result.textContent = frame.message;
        result.dataset.quality = "poor";
      }
    };
    socket.onopen = () => {
      timer = setInterval(() => {
        if (count >= PINGS) {
          clearInterval(timer);
          setTimeout(finish, PING_TIMEOUT_MS);
          return;
        }
        count += 1;
        const ref = `check-${count}`;
        sent.set(ref, performance.now());
        socket.send(JSON.stringify({ v: config.protocol, type: "ping", ref }));
      }, PING_GAP_MS);
    };
    socket.onerror = () => { if (!count) finish(); };
  }

  $("net-retry").addEventListener("click", testConnection);

  // -- join -------------------------------------------------------------------------------------
  function join(audioOnly) {
    // sound only by choice (a weak connection) also stops the others' pictures coming in; a
    // refused or missing camera only means nothing is sent
    const hasCamera = !!(stream && stream.getVideoTracks().length);
    remember({ audioOnly: audioOnly && hasCamera, noCamera: !hasCamera || audioOnly, checked: config.hearing });
    stopStream();
    location.assign(config.room);
  }

  $("join-video").addEventListener("click", () => join(false));
  $("join-audio").addEventListener("click", () => join(true));

  orderHelp();
  open();
  testConnection();
})();
