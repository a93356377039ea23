// The replay page: the HLS replay (hls.js, or the browser's own player), and beside it what the
// audience said at each moment. Every item carries its second in the replay; "At this moment"
// shows the latest few up to the playing time, whether played there or seeked.
(function () {
  "use strict";
  const root = document.getElementById("replay");
  if (!root) return;
  const video = document.getElementById("player");
  const now = document.getElementById("now");
  const empty = document.getElementById("now-empty");
  const items = [...document.querySelectorAll("#all > li[data-t]")];
  const SHOWN = 6;

  function clock(seconds) {
    const s = Math.floor(seconds);
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  items.forEach((item) => {
    const button = item.querySelector("button.seek");
    button.addEventListener("click", () => {
      video.currentTime = Number(item.dataset.t);
      video.play().catch(() => {});
    });
  });

  let shownUpTo = -1;
  function show() {
    const t = video.currentTime + 0.05;
    const upto = items.filter((item) => Number(item.dataset.t) <= t);
    if (upto.length === shownUpTo) return;
    shownUpTo = upto.length;
    now.textContent = "";
    upto.slice(-SHOWN).forEach((item) => {
      const copy = item.cloneNode(true);
      copy.querySelector("button.seek").replaceWith(
        Object.assign(document.createElement("span"), { className: "at", textContent: clock(Number(item.dataset.t)) }));
      now.append(copy);
    });
    items.forEach((item) => item.classList.toggle("past", Number(item.dataset.t) <= t));
    empty.hidden = upto.length > 0;
    root.dataset.shown = String(upto.length);
  }
  video.addEventListener("timeupdate", show);
  video.addEventListener("seeked", show);

  const url = root.dataset.hls;
  if (window.Hls && window.Hls.isSupported()) {
    const hls = new window.Hls();
    hls.on(window.Hls.Events.ERROR, (event, data) => {
      if (data.fatal) document.getElementById("replay-error").hidden = false;
    });
    hls.loadSource(url);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = url;
  } else {
    document.getElementById("replay-error").hidden = false;
  }
  video.addEventListener("loadedmetadata", () => { root.dataset.ready = "1"; show(); });
})();
