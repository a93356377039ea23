// The live audience panel: comments and polls over /ws/live/<room>/.
// Every event carries the room's sequence number: events are applied strictly in order, repeats
// are ignored, and a gap that does not fill within a second is fetched over HTTP. Comments are
// kept in a local outbox with their client id until the server acknowledges them, so one typed
// while the connection was down is sent on reconnect exactly once (the server deduplicates).
// All text goes into the page with textContent: nothing a viewer types is ever parsed as HTML.
// A dead network closes nothing, so the panel pings now and then and reopens a socket that has
// been silent too long.
(function () {
  "use strict";
  const panel = document.getElementById("live-panel");
  if (!panel || !window.WebSocket) return;
  const d = panel.dataset;
  const room = d.room;
  let lastSeq = parseInt(d.seq, 10) || 0;
  const pending = new Map();
  let gapTimer = null;
  let socket = null;
  let backoff = 500;
  const list = panel.querySelector(".comments");
  const status = panel.querySelector(".live-status");
  const form = panel.querySelector(".comment-form");
  const errorBox = panel.querySelector(".comment-error");
  const pollsBox = panel.querySelector(".live-polls");
  const outboxKey = "cb-outbox-" + room;
  const MAX_SHOWN = 300;
  const RESTART = 4503;  // close code: the server process is replaced, reconnect now
  const OPEN_TIMEOUT = 10000;  // an attempt not open by then is given up and made again

  function outbox() {
    try { return JSON.parse(localStorage.getItem(outboxKey) || "[]"); } catch (e) { return []; }
  }
  function saveOutbox(items) {
    try { localStorage.setItem(outboxKey, JSON.stringify(items)); } catch (e) { /* private mode */ }
  }
  function newClientId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "c" + Date.now().toString(36) + Math.random().toString(36).slice(2, 12);
  }
  function setStatus(text) { if (status) status.textContent = text; }
  function showError(text) {
    if (!errorBox) return;
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  function addComment(ev) {
    const empty = list.querySelector(".empty");
    if (empty) empty.remove();
    if (list.querySelector('li[data-id="' + ev.id + '"]')) return;
    const li = document.createElement("li");
    li.dataset.id = String(ev.id);
    const nick = document.createElement("span");
    nick.className = "nick";
    nick.textContent = ev.nick;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = ev.text;
    li.append(nick, text);
    list.append(li);
    while (list.children.length > MAX_SHOWN) list.firstElementChild.remove();
    const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 120;
    if (nearBottom) list.scrollTop = list.scrollHeight;
  }

  function removeComment(ev) {
    const li = list.querySelector('li[data-id="' + ev.id + '"]');
    if (!li) return;
    li.classList.add("removed");
    li.querySelector(".text").textContent = "(" + d.tRemoved + ")";
  }

  function pollForm(p) {
    let f = pollsBox.querySelector('form[data-poll="' + p.poll + '"]');
    if (f) return f;
    f = document.createElement("form");
    f.className = "poll card";
    f.dataset.poll = p.poll;
    const q = document.createElement("p");
    q.className = "poll-q";
    const strong = document.createElement("strong");
    strong.textContent = p.question;
    q.append(strong);
    f.append(q);
    p.options.forEach(function (o) {
      const label = document.createElement("label");
      label.className = "poll-option";
      const input = document.createElement("input");
      input.type = "radio";
      input.name = "option";
      input.value = String(o.n);
      input.required = true;
      const span = document.createElement("span");
      span.textContent = " " + o.text + " ";
      const count = document.createElement("span");
      count.className = "poll-count";
      label.append(input, span, count);
      f.append(label);
    });
    if (d.canComment === "1") {
      const b = document.createElement("button");
      b.type = "submit";
      b.className = "primary";
      b.textContent = d.tVote;
      f.append(b);
    }
    const note = document.createElement("p");
    note.className = "poll-note muted";
    f.append(note);
    pollsBox.prepend(f);
    return f;
  }

  function showCounts(f, counts, total) {
    f.querySelectorAll(".poll-option").forEach(function (label, i) {
      const c = label.querySelector(".poll-count");
      if (c && counts) c.textContent = counts[i] + " " + d.tVotes;
    });
    const note = f.querySelector(".poll-note");
    if (note && total !== undefined) note.textContent = "Σ " + total;
  }

  function apply(ev) {
    switch (ev.kind) {
      case "comment": addComment(ev); break;
      case "comment.removed": removeComment(ev); break;
      case "poll.opened": {
        const f = pollForm(ev);
        if (ev.counts) showCounts(f, ev.counts, ev.total);
        else f.querySelector(".poll-note").textContent = d.tHidden;
        break;
      }
      case "poll.tally": { const f = pollForm(ev); showCounts(f, ev.counts, ev.total); break; }
      case "poll.closed": {
        const f = pollForm(ev);
        showCounts(f, ev.counts, ev.total);
        f.classList.add("closed");
        f.querySelectorAll("input, button").forEach(function (el) { el.disabled = true; });
        const q = f.querySelector(".poll-q");
        if (q && !q.querySelector(".badge")) {
          const badge = document.createElement("span");
          badge.className = "badge";
          badge.textContent = d.tClosed;
          q.append(" ", badge);
        }
        break;
      }
      default: break;
    }
  }

  function receiveEvents(events) {
    events.forEach(function (ev) {
      if (ev.seq > lastSeq) pending.set(ev.seq, ev);
    });
    while (pending.has(lastSeq + 1)) {
      const ev = pending.get(lastSeq + 1);
      pending.delete(lastSeq + 1);
      lastSeq += 1;
      apply(ev);
    }
    for (const seq of pending.keys()) if (seq <= lastSeq) pending.delete(seq);
    if (pending.size && !gapTimer) gapTimer = setTimeout(fillGap, 1000);
    if (!pending.size && gapTimer) { clearTimeout(gapTimer); gapTimer = null; }
  }

  function fillGap() {
    gapTimer = null;
    if (!pending.size) return;
    fetch(d.eventsUrl + "?after=" + lastSeq, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (body) {
        // The server's list is complete up to its last_seq: anything it lacks was never sent.
        const byseq = body.events;
        receiveEvents(byseq);
        if (!body.more && pending.size) {
          const next = Math.min.apply(null, Array.from(pending.keys()));
          if (next > lastSeq + 1 && body.last_seq >= next - 1) { lastSeq = next - 1; receiveEvents([]); }
        }
      })
      .catch(function () { gapTimer = setTimeout(fillGap, 3000); });
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(Object.assign({ v: 1 }, message)));
      return true;
    }
    return false;
  }

  function flushOutbox() {
    outbox().forEach(function (item) { send({ type: "comment", client_id: item.client_id, text: item.text }); });
  }

  function onFrame(frame) {
    switch (frame.type) {
      case "welcome": setStatus(d.tLive); backoff = 500; flushOutbox(); break;
      case "events": receiveEvents(frame.events); break;
      case "comment.ack":
        saveOutbox(outbox().filter(function (i) { return i.client_id !== frame.client_id; }));
        if (frame.state === "held") showError(d.tHeld); else showError("");
        break;
      case "vote.ack": {
        const f = pollsBox.querySelector('form[data-poll="' + frame.poll + '"]');
        if (f) f.querySelector(".poll-note").textContent = d.tVoted;
        break;
      }
      case "error":
        // A refused comment leaves the outbox: resending it would be refused again.
        if (frame.ref) saveOutbox(outbox().filter(function (i) { return i.client_id !== frame.ref; }));
        showError(frame.message);
        break;
      default: break;
    }
  }

  let heardAt = 0;

  function connect() {
    setStatus(d.tConnecting);
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + "/ws/live/" + encodeURIComponent(room) + "/?after=" + lastSeq);
    socket = ws;
    heardAt = Date.now();
    ws.addEventListener("message", function (e) {
      heardAt = Date.now();
      let frame;
      try { frame = JSON.parse(e.data); } catch (err) { return; }
      onFrame(frame);
    });
    ws.addEventListener("close", function (e) { lost(ws, e.code); });
    // An attempt that hangs (a server swamped by everyone reconnecting at once after a crash)
    // would wait for the browser's own timeout: give it up and try again after the back-off.
    setTimeout(function () {
      if (ws !== socket || ws.readyState !== WebSocket.CONNECTING) return;
      lost(ws, 0);
      try { ws.close(); } catch (err) { /* already closing */ }
    }, OPEN_TIMEOUT);
  }

  function lost(ws, code) {
    if (ws !== socket) return;
    socket = null;
    if (code === 4404) { setStatus(""); return; }
    // 4503: this server process is being replaced and another one serves: come back at once
    // (the server closes its sockets a few at a time, so not every viewer knocks at once)
    if (code === RESTART) { backoff = 500; connect(); return; }
    setStatus(d.tOffline);
    // jitter: hundreds of viewers dropped at once must not all knock again in the same instant
    setTimeout(connect, backoff * (0.5 + Math.random()));
    backoff = Math.min(backoff * 2, 2000);
  }

  setInterval(function () {
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    if (Date.now() - heardAt > 15000) {
      const silent = socket;
      lost(silent, 0);
      try { silent.close(); } catch (err) { /* already closing */ }
      return;
    }
    send({ type: "ping" });
  }, 5000);

  if (form) {
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      const input = form.querySelector("input[name=text]");
      const text = input.value.trim();
      if (!text) return;
      const item = { client_id: newClientId(), text: text };
      saveOutbox(outbox().concat([item]));
      input.value = "";
      showError("");
      send({ type: "comment", client_id: item.client_id, text: item.text });
    });
  }
  pollsBox.addEventListener("submit", function (e) {
    const f = e.target.closest("form.poll");
    if (!f) return;
    e.preventDefault();
    const choice = f.querySelector("input[name=option]:checked");
    if (!choice) return;
    send({ type: "vote", poll: f.dataset.poll, option: parseInt(choice.value, 10) });
  });
  list.scrollTop = list.scrollHeight;
  connect();
})();
