// Progressive enhancement only: every page works without it.
// Shows the inputs of the chosen schedule kind, and previews an add form's next fire times as it is filled in.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const fieldset of document.querySelectorAll("fieldset.kinds")) {
    const form = fieldset.closest("form");
    const show = () => {
      const chosen = form.querySelector("input[name=kind]:checked");
      for (const box of fieldset.querySelectorAll(".kind")) {
        box.hidden = !chosen || box.dataset.kind !== chosen.value;
      }
    };
    fieldset.addEventListener("change", show);
    show();
  }
  const form = document.getElementById("add-form");
  const target = document.getElementById("preview");
  if (!form || !target) return;
  let timer = null;
  let asked = 0;
  const refresh = async () => {
    const data = new FormData(form);
    data.delete("csrf_token");
    const mine = ++asked;
    const response = await fetch(form.dataset.preview + "?" + new URLSearchParams(data), {credentials: "same-origin"});
    // 400 carries why the form has no fire times yet; both are server-rendered, escaped HTML
    if (mine === asked && (response.ok || response.status === 400)) target.innerHTML = await response.text();
  };
  form.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refresh, 250); });
  form.addEventListener("change", () => { clearTimeout(timer); timer = setTimeout(refresh, 50); });
});
