// Every form that may take a while says so: the button is disabled and a note appears, so nobody
// presses twice or wonders whether anything happened.
document.addEventListener("submit", (event) => {
  const form = event.target;
  const note = form.dataset.busy;
  if (!note) return;
  const button = form.querySelector("button[type=submit], button:not([type])");
  if (button) {
    button.disabled = true;
  }
  const p = document.createElement("p");
  p.className = "busy-note";
  p.setAttribute("role", "status");
  p.textContent = note;
  form.appendChild(p);
});

// A <select data-autosubmit> sends its form as soon as a choice is made (the page keeps a
// <noscript> button for browsers without JavaScript).
document.addEventListener("change", (event) => {
  const field = event.target;
  if (field.matches && field.matches("select[data-autosubmit]") && field.form) {
    field.form.submit();
  }
});

// The "large text, high contrast" switch: remembered on this device, applied before the first
// paint by prefs.js.
document.querySelectorAll("[data-easy-read]").forEach((button) => {
  const html = document.documentElement;
  const show = () => button.setAttribute("aria-pressed", String(html.classList.contains("easy-read")));
  show();
  button.addEventListener("click", () => {
    const on = !html.classList.contains("easy-read");
    html.classList.toggle("easy-read", on);
    try { localStorage.setItem("cloudbench.easyRead", on ? "1" : "0"); } catch (e) { /* not kept */ }
    show();
  });
});
