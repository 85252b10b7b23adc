// rollwarden console: follows the event stream and re-renders the page's live regions;
// sends approvals, rejections and freezes to the API as JSON. No framework, no inline
// script (the Content-Security-Policy allows this file only).
"use strict";

(function () {
  // --- live updates -----------------------------------------------------------------
  let lastEvent = document.body ? document.body.dataset.lastEvent : undefined;
  let pending = null;

  function setStatus(text) {
    const el = document.getElementById("live-status");
    if (el) el.textContent = text;
  }

  // Fetches the page again and swaps each live region whose content changed, unless
  // the person is typing in it.
  async function refresh() {
    pending = null;
    const res = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!res.ok) return;
    const doc = new DOMParser().parseFromString(await res.text(), "text/html");
    for (const fresh of doc.querySelectorAll("[data-live]")) {
      const old = document.querySelector(`[data-live="${fresh.dataset.live}"]`);
      if (!old || old.innerHTML === fresh.innerHTML) continue;
      if (old.contains(document.activeElement) && document.activeElement !== document.body) {
        const field = document.activeElement;
        if (field.matches("input, textarea, select")) continue;
      }
      const typed = [...old.querySelectorAll("textarea, input")].some((f) => f.value);
      if (typed) continue;
      old.innerHTML = fresh.innerHTML;
      bind(old);
    }
    document.dispatchEvent(new CustomEvent("rollwarden:refreshed"));
  }

  function changed() {
    if (!pending) pending = setTimeout(refresh, 200);
  }

  // The stream, read with fetch: every frame, whatever its event name, is a change.
  async function follow() {
    if (lastEvent === undefined) return;
    for (;;) {
      try {
        const url = "/api/v1/events" + (lastEvent !== "" ? `?after=${encodeURIComponent(lastEvent)}` : "");
        const res = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/event-stream" } });
        if (!res.ok || !res.body) throw new Error(`events: ${res.status}`);
        setStatus("live");
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const frame = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const id = /^id: ?(\d+)$/m.exec(frame);
            if (id) {
              lastEvent = id[1];
              changed();
            }
          }
        }
      } catch (err) {
        // Retried below.
      }
      setStatus("reconnecting…");
      await new Promise((r) => setTimeout(r, 2000));
    }
  }

  // --- writes through the API -------------------------------------------------------
  function message(scope, text) {
    const el = scope.querySelector(".message") || document.getElementById("lift-message");
    if (el) el.textContent = text;
  }

  async function send(url, method, body) {
    const init = { method, credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(url, init);
    if (res.ok) return null;
    try {
      const err = await res.json();
      return (err.error && err.error.message) || `HTTP ${res.status}`;
    } catch (_) {
      return `HTTP ${res.status}`;
    }
  }

  function formBody(form) {
    const body = {};
    for (const field of form.querySelectorAll("input[name], textarea[name], select[name]")) {
      const value = field.value.trim();
      if (value === "") continue;
      // datetime-local has no zone: the label says UTC, so it is read as UTC.
      body[field.name] = field.dataset.utc !== undefined ? new Date(value + "Z").toISOString() : value;
    }
    return body;
  }

  function bind(root) {
    for (const form of root.querySelectorAll("form[data-api]")) {
      if (form.dataset.bound) continue;
      form.dataset.bound = "1";
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const button = ev.submitter;
        const url = (button && button.dataset.api) || form.dataset.api;
        const buttons = form.querySelectorAll("button");
        buttons.forEach((b) => (b.disabled = true));
        message(form, "");
        const error = await send(url, form.dataset.method || "POST", formBody(form));
        buttons.forEach((b) => (b.disabled = false));
        if (error) {
          message(form, error);
          return;
        }
        form.reset();
        refresh();
      });
    }
    for (const button of root.querySelectorAll("button[data-api]:not([type=submit])")) {
      if (button.dataset.bound) continue;
      button.dataset.bound = "1";
      button.addEventListener("click", async () => {
        button.disabled = true;
        const error = await send(button.dataset.api, button.dataset.method || "POST");
        button.disabled = false;
        if (error) message(document, error);
        else refresh();
      });
    }
    for (const button of root.querySelectorAll("button[data-copy]")) {
      if (button.dataset.bound) continue;
      button.dataset.bound = "1";
      button.addEventListener("click", async () => {
        try {
          await navigator.clipboard.writeText(button.dataset.copy);
          button.textContent = "Copied";
        } catch (_) {
          button.textContent = "Select and copy";
        }
      });
    }
  }

  function signIn() {
    const form = document.querySelector("form[data-sign-in]");
    if (!form) return;
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const error = await send("/session", "POST", { token: form.querySelector("#token").value });
      if (error) {
        message(form, error);
        return;
      }
      location.assign(form.dataset.next || "/");
    });
  }

  function signOut() {
    const button = document.querySelector("[data-sign-out]");
    if (!button) return;
    button.addEventListener("click", async () => {
      await send("/session", "DELETE");
      location.assign("/sign-in");
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    bind(document);
    signIn();
    signOut();
    follow();
  });
})();
