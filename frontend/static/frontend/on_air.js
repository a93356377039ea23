// "Live to N viewers" for the room's members: listens to the hearing's watch socket (no stream).
(function () {
  "use strict";
  document.querySelectorAll("[data-on-air]").forEach((box) => {
    const texts = {};
    box.querySelector("[data-on-air-texts]").content.querySelectorAll("[data-key]").forEach(
      (el) => { texts[el.dataset.key] = el.textContent; });
    const line = box.querySelector("[data-on-air-text]");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/watch/${box.dataset.onAir}/`);
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.type !== "watch.state") return;
      const text = texts[message.state];
      box.hidden = !text;
      box.dataset.state = message.state;
      if (text) line.textContent = text.replace("%(n)s", message.viewers);
    });
  });
})();
