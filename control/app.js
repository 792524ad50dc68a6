// quire mission control: keeps the server-rendered page live and lets a person act on it.
//
// Live: one EventSource on /api/events. The browser reconnects by itself and sends
// Last-Event-ID, so a dropped connection replays what it missed; a `reset` event (the journal was
// lost) refreshes everything. An event that concerns a part of the page has that part fetched
// again as HTML from /control/fragment/<part> (rendered by the same code as the first paint).
//
// Acting: the token is asked for once and kept in sessionStorage (this tab only), and sent in
// Authorization; a refused token is forgotten and asked for again. Every action shows its outcome.
"use strict";

(function () {
  const TOKEN_KEY = "quire-token";
  const NOTIFY = new Set(["decision.requested", "mission.escalated", "heal.escalated"]);
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  // ---- Token -------------------------------------------------------------------------------
  const dialog = $("#token-dialog");
  let tokenWaiter = null;

  function token() { return sessionStorage.getItem(TOKEN_KEY); }

  function askToken(message) {
    $("#token-error").textContent = message || "";
    $("#token-input").value = "";
    if (!dialog.open) dialog.showModal();
    $("#token-input").focus();
    return new Promise((resolve) => { tokenWaiter = resolve; });
  }

  $("#token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const t = $("#token-input").value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    dialog.close();
    tokenButton();
    if (tokenWaiter) { tokenWaiter(t); tokenWaiter = null; }
  });
  $("#token-cancel").addEventListener("click", () => {
    dialog.close();
    if (tokenWaiter) { tokenWaiter(null); tokenWaiter = null; }
  });
  $("#token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    dialog.close();
    tokenButton();
    if (tokenWaiter) { tokenWaiter(null); tokenWaiter = null; }
  });
  dialog.addEventListener("cancel", () => { if (tokenWaiter) { tokenWaiter(null); tokenWaiter = null; } });

  function tokenButton() {
    const b = $("#token-button");
    b.hidden = false;
    b.textContent = token() ? "Token set" : "Set token";
  }
  $("#token-button").addEventListener("click", () => askToken());
  tokenButton();

  // ---- Actions -----------------------------------------------------------------------------
  function enableForms(root) {
    $$("form.act button[type=submit]", root).forEach((b) => { b.disabled = false; });
  }

  async function post(url, body) {
    let t = token() || (await askToken());
    for (let tries = 0; t && tries < 3; tries++) {
      const res = await fetch(url, {
        method: "POST",
        headers: { "Authorization": "Bearer " + t, "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      if (res.status !== 401) return res;
      sessionStorage.removeItem(TOKEN_KEY);
      tokenButton();
      t = await askToken("That token was refused. Use QUIRE_TOKEN from the vault's .env.");
    }
    return null;
  }

  function describe(kind, ok, v) {
    if (!ok) {
      const err = (v && v.error) || v || {};
      return "Refused (" + (err.code || "error") + "): " + (err.message || "no reason given");
    }
    if (kind === "decision") {
      let s = "Done: " + v.answer + (v.again ? " (it had been given already)" : "");
      if (v.commit) s += ". Promoted as commit " + v.commit.slice(0, 10);
      return s + ". The mission is now " + String(v.state).replace("_", " ") + ".";
    }
    if (kind === "inject") return "Sent to the running step.";
    return "Done. The mission is now " + String((v && (v.state || (v.mission && v.mission.state))) || "updated").replace("_", " ") + ".";
  }

  document.addEventListener("submit", async (e) => {
    const form = e.target.closest("form.act");
    if (!form) return;
    e.preventDefault();
    const button = e.submitter;
    const out = $(".outcome", form);
    const url = form.dataset.action;
    let kind = form.dataset.kind || "decision";
    let body = {};
    if (kind === "decision") {
      body = { decision: button && button.value };
      if (form.dataset.commit) body.commit = form.dataset.commit;
      const reason = form.elements.reason && form.elements.reason.value.trim();
      if (reason) body.reason = reason;
    } else if (kind === "inject") {
      body = { message: form.elements.message.value };
    } else if (kind === "retry") {
      const from = form.elements.from.value.trim();
      if (from) body.from = from;
    } else if (kind === "abort") {
      const reason = form.elements.reason.value.trim();
      if (reason) body.reason = reason;
    }
    $$("button", form).forEach((b) => { b.disabled = true; });
    // While the action is in flight (the token dialog may be open for a while), events must not
    // swap this form for a fresh copy: its outcome would be written into a detached element.
    form.dataset.working = "1";
    out.className = "outcome";
    out.textContent = "Working…";
    try {
      const res = await post(url, body);
      if (!res) {
        out.className = "outcome refused";
        out.textContent = "Not sent: acting needs the daemon's token.";
      } else {
        const v = await res.json().catch(() => null);
        out.className = res.ok ? "outcome" : "outcome refused";
        out.textContent = describe(kind, res.ok, v);
        if (res.ok && kind === "inject") form.elements.message.value = "";
      }
    } catch (err) {
      out.className = "outcome refused";
      out.textContent = "The daemon did not answer: " + err;
    }
    $$("button", form).forEach((b) => { b.disabled = false; });
    delete form.dataset.working;
    // The outcome stays readable: the part around it is refreshed by the events it causes, but
    // not while it shows this message.
    form.dataset.keep = String(Date.now());
  });

  // ---- Parts of the page -------------------------------------------------------------------
  const pending = new Map();

  function busy(el) {
    // A person typing, or reading an outcome just given: refresh later.
    if (el.contains(document.activeElement) && document.activeElement.matches("input, textarea")) return true;
    if ($$("input, textarea", el).some((i) => i.value)) return true;
    if ($$("form[data-working]", el).length) return true;
    return $$("form[data-keep]", el).some((f) => Date.now() - Number(f.dataset.keep) < 8000);
  }

  function refresh(part) {
    if (pending.has(part)) return;
    pending.set(part, setTimeout(() => load(part), 60));
  }

  async function load(part) {
    pending.delete(part);
    const el = document.querySelector('[data-part="' + CSS.escape(part) + '"]');
    if (!el) return;
    if (busy(el)) { pending.set(part, setTimeout(() => load(part), 1000)); return; }
    const all = new URLSearchParams(location.search).get("missions") === "all" ? "?missions=all" : "";
    try {
      const res = await fetch("/control/fragment/" + part + all, { cache: "no-store" });
      if (!res.ok) return;
      const html = await res.text();
      if (busy(el)) { pending.set(part, setTimeout(() => load(part), 1000)); return; }
      el.innerHTML = html;
      enableForms(el);
      document.dispatchEvent(new CustomEvent("quire:part", { detail: part }));
    } catch (_) { /* the next event tries again */ }
  }

  function partsFor(type, ev) {
    const parts = [];
    const missionPart = $('[data-part^="mission/"]');
    if (type.startsWith("mission.") || type.startsWith("decision.") || type.startsWith("heal.")) {
      parts.push("decisions", "missions", "agents", "runners", "analytics");
      if (missionPart && missionPart.dataset.part === "mission/" + (ev.correlation_id || ev.subject)) {
        parts.push(missionPart.dataset.part);
      }
    }
    if (type.startsWith("runner.")) parts.push("runners");
    if (type.startsWith("contribution.")) parts.push("queue", "analytics");
    if (type === "sandbox.promoted" || type === "sandbox.rolled_back") parts.push("missions");
    return parts;
  }

  // ---- Events ------------------------------------------------------------------------------
  const list = $("#events");
  const filter = $("#filter");

  function matches(li) {
    const q = filter ? filter.value.trim().toLowerCase() : "";
    return !q || li.textContent.toLowerCase().includes(q);
  }
  if (filter) {
    filter.addEventListener("input", () => $$("li", list).forEach((li) => { li.hidden = !matches(li); }));
  }

  function addEvent(seq, ev) {
    if (!list) return;
    if (list.querySelector('li[data-seq="' + seq + '"]')) return;
    const li = document.createElement("li");
    li.dataset.seq = seq;
    li.dataset.type = ev.type;
    const t = document.createElement("time");
    t.dateTime = ev.at;
    t.textContent = String(ev.at).slice(0, 19).replace("T", " ") + " UTC";
    const code = document.createElement("code");
    code.className = "type";
    code.textContent = ev.type;
    li.append(t, " ", code, " ", String(ev.subject || ""));
    li.hidden = !matches(li);
    list.prepend(li);
    while (list.children.length > 200) list.lastElementChild.remove();
  }

  // ---- Notifications -----------------------------------------------------------------------
  const baseTitle = document.title;
  let unseen = 0;
  const bell = $("#bell");
  const drawer = $("#drawer");
  bell.hidden = false;

  function notify(ev) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    const mission = ev.correlation_id || ev.subject;
    a.href = "/control/missions/" + encodeURIComponent(mission);
    const what = ev.type === "decision.requested" ? "decision requested" : ev.type.replace(".", " ");
    a.textContent = mission + ": " + what;
    li.append(a);
    $("#notes").prepend(li);
    if (drawer.hidden) {
      unseen++;
      $("#count").textContent = String(unseen);
      document.title = "(" + unseen + ") " + baseTitle;
    }
  }
  bell.addEventListener("click", () => {
    drawer.hidden = !drawer.hidden;
    bell.setAttribute("aria-expanded", String(!drawer.hidden));
    if (!drawer.hidden) {
      unseen = 0;
      $("#count").textContent = "0";
      document.title = baseTitle;
    }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !drawer.hidden) { drawer.hidden = true; bell.setAttribute("aria-expanded", "false"); bell.focus(); }
  });

  // ---- The stream --------------------------------------------------------------------------
  const live = $("#live");
  window.quireEvents = { last: 0, received: 0 };

  function onEvent(type, msg) {
    let ev;
    try { ev = JSON.parse(msg.data); } catch (_) { return; }
    const seq = Number(msg.lastEventId) || 0;
    window.quireEvents.last = Math.max(window.quireEvents.last, seq);
    window.quireEvents.received++;
    addEvent(seq, ev);
    if (NOTIFY.has(type)) notify(ev);
    partsFor(type, ev).forEach(refresh);
    document.dispatchEvent(new CustomEvent("quire:event", { detail: { seq: seq, type: type, event: ev } }));
  }

  function connect() {
    // From the last event the page was rendered with: nothing between render and connect is lost.
    // On a reconnect the browser sends Last-Event-ID itself, which the daemon prefers.
    // Back from the back/forward cache, the stream starts again after the last event seen.
    const marked = $("[data-last]");
    const seen = window.quireEvents.last;
    const since = seen ? String(seen) : (marked ? marked.dataset.last : "");
    const source = new EventSource("/api/events?unnamed=1" + (since ? "&last_event_id=" + encodeURIComponent(since) : ""));
    source.onopen = () => { live.textContent = "Live"; };
    source.onerror = () => { live.textContent = "Reconnecting…"; };
    source.addEventListener("reset", () => {
      ["decisions", "missions", "agents", "queue", "analytics"].forEach(refresh);
      const m = $('[data-part^="mission/"]');
      if (m) refresh(m.dataset.part);
    });
    // Unnamed events (?unnamed=1): every type, quire's and those posted by others, arrives here.
    source.onmessage = (m) => {
      let type = "";
      try { type = JSON.parse(m.data).type || ""; } catch (_) { return; }
      onEvent(type, m);
    };
    window.quireSource = source;
  }

  // ---- The log of a running step -----------------------------------------------------------
  let following = null;

  async function followLog() {
    const pre = $("#log[data-follow]");
    if (!pre) return;
    following = new AbortController();
    try {
      const res = await fetch(pre.dataset.follow, { cache: "no-store", signal: following.signal });
      if (!res.ok || !res.body) return;
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let first = true;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const text = decoder.decode(value, { stream: true });
        // The stream starts from the beginning of the log: replace what the page was rendered with.
        if (first) { pre.textContent = ""; first = false; }
        const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.append(text);
        if (atEnd) pre.scrollTop = pre.scrollHeight;
      }
    } catch (_) { /* a reload follows again */ }
  }

  // A page left for another stays in the browser's back/forward cache with its connections open,
  // and a browser keeps at most six to one host: a few clicks on, the next page would wait for
  // the daemon to drop an idle one. So the page lets go of its streams when it is hidden and
  // takes them up again if it is shown from the cache.
  window.addEventListener("pagehide", () => {
    if (window.quireSource) window.quireSource.close();
    if (following) following.abort();
  });
  window.addEventListener("pageshow", (e) => {
    if (!e.persisted) return;
    connect();
    followLog();
  });

  enableForms(document);
  connect();
  followLog();
})();
