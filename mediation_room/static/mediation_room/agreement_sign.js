// A drawn signature: pointer strokes on a canvas, sent as a PNG data URL in the hidden
// "signature" field. Without JavaScript (or with nothing drawn) the typed name is used instead.
(() => {
  const pad = document.getElementById("signature-pad");
  const canvas = document.getElementById("signature-canvas");
  const form = document.getElementById("sign-form");
  if (!pad || !canvas || !form) return;
  pad.hidden = false;
  const field = form.querySelector("input[name=signature]");
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.lineWidth = 4;
  ctx.lineCap = "round";
  ctx.strokeStyle = "#111";
  let drawing = false;
  let drawn = false;

  function point(event) {
    const rect = canvas.getBoundingClientRect();
    return [(event.clientX - rect.left) * (canvas.width / rect.width),
            (event.clientY - rect.top) * (canvas.height / rect.height)];
  }
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    canvas.setPointerCapture(event.pointerId);
    ctx.beginPath();
    ctx.moveTo(...point(event));
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    ctx.lineTo(...point(event));
    ctx.stroke();
    drawn = true;
  });
  const stop = () => { drawing = false; };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
  document.getElementById("signature-clear")?.addEventListener("click", () => {
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    drawn = false;
    field.value = "";
  });
  form.addEventListener("submit", () => {
    field.value = drawn ? canvas.toDataURL("image/png") : "";
  });
})();
