// Loaded in <head> before anything is drawn: the reader's "large text, high contrast" choice for
// this device applies from the first paint (set by the switch in site.js).
try {
  if (localStorage.getItem("cloudbench.easyRead") === "1") {
    document.documentElement.classList.add("easy-read");
  }
} catch (e) {
  // storage refused (private mode): the page keeps the normal size
}
