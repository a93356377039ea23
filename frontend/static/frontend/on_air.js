// "Live to N viewers" for the room's members: listens to the hearing's watch socket (no stream).
// A dropped socket is reopened with backoff.
(function () {
  "use strict";
  document.querySelectorAll("[data-on-air]").forEach((box) => {
    const texts = {};
    box.querySelector("[data-on-air-texts]").content.querySelectorAll("[data-key]").forEach(
      (el) => { texts[el.dataset.key] = el.textContent; });
    const line = box.querySelector("[data-on-air-text]");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    let backoff = 1000;
    const RESTART = 4503;  // close code: the server process is replaced, reconnect now
    function connect() {
      const socket = new WebSocket(`${scheme}://${location.host}/ws/watch/${box.dataset.onAir}/`);
      socket.addEventListener("message", (event) => {
        const message = JSON.parse(event.data);
        if (message.type !== "watch.state") return;
        backoff = 1000;
        const text = texts[message.state];
        box.hidden = !text;
        box.dataset.state = message.state;
        if (text) line.textContent = text.replace("%(n)s", message.viewers);
      });
      socket.addEventListener("close", (event) => {
        if (event.code === 4403 || event.code === 4404 || box.dataset.state === "ended") return;
        if (event.code === RESTART) { backoff = 1000; connect(); return; }
        setTimeout(connect, backoff);
        backoff = Math.min(backoff * 2, 15000);
      });
    }
    connect();
  });
})();
