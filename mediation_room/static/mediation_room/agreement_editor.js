// The editor works as a plain form. This adds: an "add a term" button (clones an empty row and
// bumps the formset's TOTAL_FORMS) and a live preview of the terms as they will read.
(() => {
  const form = document.getElementById("agreement-editor");
  if (!form) return;
  const rows = document.getElementById("terms-rows");
  const total = form.querySelector("input[name=terms-TOTAL_FORMS]");
  const add = document.getElementById("add-term");
  const preview = document.getElementById("agreement-preview");
  const list = document.getElementById("preview-terms");
  const roles = { applicant: "申请人", respondent: "被申请人" };

  if (add && rows && total) {
    add.hidden = false;
    add.addEventListener("click", () => {
      const template = rows.querySelector("[data-row]:last-child");
      if (!template || Number(total.value) >= 30) return;
      const index = Number(total.value);
      const clone = template.cloneNode(true);
      clone.querySelectorAll("input, select, label").forEach((node) => {
        for (const attr of ["name", "id", "for"]) {
          const value = node.getAttribute(attr);
          if (value) node.setAttribute(attr, value.replace(/terms-\d+-/, "terms-" + index + "-"));
        }
        if (node.tagName === "INPUT") node.value = "";
        if (node.tagName === "SELECT") node.selectedIndex = 0;
      });
      rows.append(clone);
      total.value = String(index + 1);
      update();
    });
  }

  function money(v) {
    const n = Number(v);
    return Number.isFinite(n) && v !== "" ? "¥" + n.toLocaleString("zh-CN", { minimumFractionDigits: 2, maximumFractionDigits: 2 }) : "";
  }

  function update() {
    if (!preview || !list) return;
    preview.hidden = false;
    const items = [];
    rows.querySelectorAll("[data-row]").forEach((row) => {
      const get = (suffix) => row.querySelector("[name$='-" + suffix + "']");
      const action = (get("action")?.value || "").trim();
      if (!action) return;
      const who = roles[get("obligor")?.value] || "";
      const due = get("due_date")?.value;
      let text = who + (due ? "于" + due.replace(/^(\d+)-0?(\d+)-0?(\d+)$/, "$1年$2月$3日") + "前" : "") + action;
      const amount = money(get("amount")?.value || "");
      if (amount) text += "，金额人民币" + amount + "元";
      const li = document.createElement("li");
      li.textContent = text + "。";
      items.push(li);
    });
    list.replaceChildren(...items);
  }
  form.addEventListener("input", update);
  update();
})();
