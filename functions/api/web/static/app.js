// cogplane web UI: progressive enhancement only (every page works without it).
"use strict";
(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  function seconds(v) {
    if (typeof v !== "number") return "—";
    if (v < 1) return Math.round(v * 1000) + " ms";
    if (v < 120) return v.toFixed(1) + " s";
    return Math.floor(v / 60) + " min " + Math.floor(v % 60) + " s";
  }

  // --- confirmations (Delete) ---------------------------------------------------------------
  $$("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (e) => { if (!window.confirm(form.dataset.confirm)) e.preventDefault(); });
  });

  // --- API snippet tabs and copy buttons ----------------------------------------------------
  const tabs = $$('[role="tab"]');
  function select(tab) {
    tabs.forEach((t) => {
      const on = t === tab;
      t.setAttribute("aria-selected", on ? "true" : "false");
      t.tabIndex = on ? 0 : -1;
      document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
    });
  }
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (e) => {
      const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
      if (!step) return;
      const next = tabs[(i + step + tabs.length) % tabs.length];
      select(next); next.focus();
    });
  });
  $$("[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy).textContent;
      try { await navigator.clipboard.writeText(text); button.textContent = "Copied"; }
      catch (_) { button.textContent = "Select and copy"; }
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
  });

  // --- the generated form: sliders and checks that mirror the schema ------------------------
  $$("input.slider[data-for]").forEach((slider) => {
    const number = document.getElementById(slider.dataset.for);
    slider.addEventListener("input", () => { number.value = slider.value; const f = number.closest(".field"); if (f.classList.contains("has-error")) check(f); });
    number.addEventListener("input", () => { if (number.value !== "") slider.value = number.value; });
  });

  function problem(field) {
    const kind = field.dataset.kind;
    const required = field.dataset.required === "true";
    const name = field.dataset.field;
    const control = document.getElementById(name);
    if (kind === "file" || kind === "files") {
      const url = document.getElementById(name + (kind === "file" ? "__url" : "__urls"));
      const hasFile = control.files && control.files.length > 0;
      const urls = url.value.split("\n").map((s) => s.trim()).filter(Boolean);
      if (required && !hasFile && !urls.length) return "Choose a file or paste its URL.";
      for (const u of urls) if (!/^(https?:\/\/|data:)/.test(u)) return "A URL must start with http:// or https://.";
      return "";
    }
    if (kind === "list") {
      const lines = control.value.split("\n").map((s) => s.trim()).filter(Boolean);
      if (required && !lines.length) return "This field is required.";
      const type = control.dataset.itemType;
      for (const line of lines) {
        if (type === "integer" && !/^[-+]?\d+$/.test(line)) return "Put one whole number on each line (“" + line + "” is not).";
        if (type === "number" && !isFinite(Number(line))) return "Put one number on each line (“" + line + "” is not).";
        if (type === "integer" || type === "number") {
          const n = Number(line);
          if (control.dataset.min !== undefined && n < Number(control.dataset.min)) return "Each item must be at least " + control.dataset.min + ".";
          if (control.dataset.max !== undefined && n > Number(control.dataset.max)) return "Each item must be at most " + control.dataset.max + ".";
        }
      }
      return "";
    }
    if (!control || !control.validity) return "";
    const v = control.validity;
    const value = control.value;
    if (v.valueMissing || (required && value === "")) return "This field is required.";
    if (v.badInput) return kind === "integer" ? "Enter a whole number." : "Enter a number.";
    if (v.rangeUnderflow) return "Must be at least " + control.min + ".";
    if (v.rangeOverflow) return "Must be at most " + control.max + ".";
    if (v.stepMismatch) return "Enter a whole number.";
    if (v.typeMismatch) return "Enter a full URL, like https://example.com/file.png.";
    if (v.patternMismatch) return "Does not have the expected form (" + control.getAttribute("pattern") + ").";
    const max = control.getAttribute("maxlength"), min = control.getAttribute("minlength");
    if (max && value.length > Number(max)) return "Must be at most " + max + " characters long.";
    if (min && value.length > 0 && value.length < Number(min)) return "Must be at least " + min + " characters long.";
    if (kind === "json" && value.trim()) { try { JSON.parse(value); } catch (_) { /* sent as text */ } }
    return "";
  }

  function check(field) {
    if (!field) return true;
    const message = problem(field);
    const slot = document.getElementById(field.dataset.field + "-error");
    const control = document.getElementById(field.dataset.field);
    field.classList.toggle("has-error", !!message);
    if (slot) { slot.textContent = message; slot.hidden = !message; }
    if (control) control.setAttribute("aria-invalid", message ? "true" : "false");
    return !message;
  }

  const form = $("#run-form");
  if (form) {
    $$(".field[data-field]", form).forEach((field) => {
      // Errors appear on submit (not on blur: a message appearing under the pointer would move the
      // Run button away from a click in progress) and go away as soon as the field is fixed.
      const recheck = () => { if (field.classList.contains("has-error")) check(field); };
      field.addEventListener("change", recheck);
      field.addEventListener("input", recheck);
    });
    form.addEventListener("submit", (e) => {
      const bad = $$(".field[data-field]", form).filter((f) => !check(f));
      if (bad.length) {
        e.preventDefault();
        const first = document.getElementById(bad[0].dataset.field);
        if (first) first.focus();
        return;
      }
      const run = $("#run-button");
      if (run) { run.disabled = true; run.textContent = "Starting…"; }
    });
    form.addEventListener("reset", () => setTimeout(() => $$(".field[data-field]", form).forEach((f) => {
      f.classList.remove("has-error");
      const slot = document.getElementById(f.dataset.field + "-error"); if (slot) slot.hidden = true;
      const slider = $("input.slider", f), number = document.getElementById(f.dataset.field);
      if (slider && number.value !== "") slider.value = number.value;
    }), 0));
  }

  // --- the prediction page: poll until finished ---------------------------------------------
  const stateTag = $("#prediction-state");
  if (stateTag) {
    let state = JSON.parse(stateTag.textContent);
    let lastHtml = null, ticking = null, base = Date.now(), baseElapsed = state.elapsed;
    const url = location.pathname.replace(/\/$/, "") + "/json";
    const logs = $("#logs");

    function paint(next, html) {
      const status = $("#status");
      status.textContent = next.status;
      status.className = "status status-" + next.status;
      if (logs && logs.textContent !== next.logs) {
        const atEnd = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 8;
        logs.textContent = next.logs;
        if (atEnd) logs.scrollTop = logs.scrollHeight;
      }
      const error = $("#error");
      error.hidden = !next.error; error.textContent = next.error || "";
      if (html !== null && html !== lastHtml) { $("#output").innerHTML = html; lastHtml = html; }
      $("#predict-time").textContent = seconds(next.predict_time);
      base = Date.now(); baseElapsed = next.elapsed;
      $("#elapsed").textContent = seconds(next.elapsed);
      const cancel = $("#cancel-form");
      if (cancel) cancel.hidden = !next.running;
      state = next;
    }

    async function poll() {
      try {
        const r = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        if (r.ok) {
          const next = await r.json();
          paint(next, next.output_html);
          if (!next.running) { clearInterval(ticking); return; }
        } else if (r.status === 404) {
          clearInterval(ticking); $("#status").textContent = "deleted"; return;
        }
      } catch (_) { /* try again */ }
      setTimeout(poll, document.hidden ? 3000 : 700);
    }

    if (state.running) {
      ticking = setInterval(() => {
        $("#elapsed").textContent = seconds(baseElapsed + (Date.now() - base) / 1000);
      }, 100);
      setTimeout(poll, 300);
    }
  }
})();
