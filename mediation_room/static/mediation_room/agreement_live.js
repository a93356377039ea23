// The agreement page follows the draft live: a WebSocket to /ws/case/<number>/agreement/ brings
// a fresh snapshot whenever the mediator saves, someone comments or signs. Without JavaScript the
// page still works (reload to see changes). Only textContent is used: no HTML from the wire.
(() => {
  const box = document.getElementById("agreement-live");
  if (!box || !window.WebSocket) return;
  const doc = document.getElementById("agreement-document");
  const note = document.getElementById("live-note");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  let delay = 1000;
  let lastVersion = null;

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }

  function commentItem(c) {
    const li = el("li", "", "comment comment-" + c.kind);
    li.append(el("strong", c.role), " ", el("span", c.kind_label, "chip"), " " + c.body + " ",
      el("span", "v" + c.version + " · " + c.at, "muted"));
    return li;
  }

  function render(msg) {
    const d = msg.document;
    const terms = doc.querySelector("[data-part=terms]");
    const before = new Map();
    terms.querySelectorAll("li[data-term]").forEach((li) => before.set(li.dataset.term, li));
    const fresh = [];
    d.terms.forEach((t) => {
      let li = before.get(t.key);
      const text = t.number + "、" + t.text;
      if (!li) {
        li = el("li");
        li.dataset.term = t.key;
        li.id = "term-" + t.key;
        li.prepend(el("span", "", "term-text"));
      }
      let span = li.querySelector(".term-text");
      if (!span) {
        // First update of a server-rendered row: wrap its text so later updates can replace it.
        span = el("span", "", "term-text");
        [...li.childNodes].filter((n) => n.nodeType === 3 || n.classList?.contains("term-no"))
          .forEach((n) => n.remove());
        li.prepend(span);
      }
      if (span.textContent !== text) {
        span.textContent = text;
        if (lastVersion !== null) li.classList.add("changed");
      }
      let list = li.querySelector(":scope > ul.comments");
      const mine = msg.comments.filter((c) => c.term === t.key);
      if (mine.length) {
        if (!list) { list = el("ul", undefined, "comments"); span.after(list); }
        list.replaceChildren(...mine.map(commentItem));
      }
      fresh.push(li);
    });
    terms.replaceChildren(...fresh);
    doc.querySelector("[data-part=facts]").textContent = d.facts;
    doc.querySelector("[data-part=check]").textContent = d.performance_check;
    const general = document.getElementById("general-comments");
    const generalComments = msg.comments.filter((c) => !c.term);
    if (general && generalComments.length) general.replaceChildren(...generalComments.map(commentItem));
    const state = document.getElementById("agreement-state");
    if (state) state.textContent = msg.state_label;
    const sigs = document.querySelector("#signatures tbody");
    if (sigs) {
      sigs.replaceChildren(...msg.signatures.map((s) => {
        const tr = el("tr");
        tr.append(el("td", s.role + " " + s.name), el("td", s.signed_at || "—"));
        return tr;
      }));
    }
    const stamp = doc.querySelector("p.muted");
    if (stamp && lastVersion !== null && lastVersion !== d.version) stamp.textContent = "v" + d.version + " · " + d.saved_at;
    lastVersion = d.version;
  }

  function connect() {
    const ws = new WebSocket(scheme + "://" + location.host + box.dataset.wsPath);
    ws.onopen = () => { delay = 1000; if (note) note.hidden = false; };
    ws.onmessage = (event) => {
      let msg;
      try { msg = JSON.parse(event.data); } catch { return; }
      if (msg.type === "draft") render(msg);
    };
    ws.onclose = (event) => {
      if (note) note.hidden = true;
      if (event.code === 4403) return;
      // 4503: this server process is being replaced and another one serves: come back at once
      if (event.code === 4503) { delay = 1000; connect(); return; }
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
})();
