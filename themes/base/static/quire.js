// quire's page script: search, and everything that depends on the reader's today (a static page
// cannot know it): overdue marks, the agenda's sections, mission counts, the calendar's today.
// No external requests (served by quire's daemon, mission cards ask the same origin's
// /api/missions); the site works without it, just without these extras.
(function () {
  "use strict";

  function isoDay(d) {
    var m = String(d.getMonth() + 1).padStart(2, "0");
    var day = String(d.getDate()).padStart(2, "0");
    return d.getFullYear() + "-" + m + "-" + day;
  }
  var now = new Date();
  var today = isoDay(now);
  function inDays(n) {
    var d = new Date(now.getFullYear(), now.getMonth(), now.getDate() + n);
    return isoDay(d);
  }

  function markTasks() {
    document.querySelectorAll(".task[data-date]").forEach(function (li) {
      var status = li.getAttribute("data-status");
      if (status === "done" || status === "cancelled") return;
      var date = li.getAttribute("data-date");
      if (date < today) li.classList.add("is-overdue");
      else if (date === today) li.classList.add("is-today");
    });
  }

  // The agenda page carries only dates and counts; the tasks come from the month pages around
  // today, fetched from the same site.
  function agenda() {
    var root = document.querySelector("[data-agenda]");
    if (!root) return;
    var windowDays = parseInt(root.getAttribute("data-window") || "7", 10);
    var last = inDays(windowDays);
    var lookback = inDays(-92);
    var sections = {};
    root.querySelectorAll("[data-agenda-section]").forEach(function (s) {
      sections[s.getAttribute("data-agenda-section")] = s;
    });
    var months = [];
    var older = 0;
    (root.getAttribute("data-agenda-days") || "").split(" ").filter(Boolean).forEach(function (pair) {
      var d = pair.slice(0, 10);
      if (d < lookback) older += parseInt(pair.slice(11), 10) || 0;
      else if (d <= last && months.indexOf(d.slice(0, 7)) < 0) months.push(d.slice(0, 7));
    });
    var summary = document.querySelector("[data-agenda-summary]");
    function done() {
      var counts = ["overdue", "today", "upcoming"].map(function (k) {
        return sections[k] ? sections[k].querySelectorAll(".task").length : 0;
      });
      if (summary) {
        summary.textContent = counts[0] + " overdue · " + counts[1] + " today · " + counts[2] +
          " in the next " + windowDays + " days (as of " + today + ")." +
          (older ? " " + older + " more overdue from before " + lookback + ": see the months below." : "");
      }
      if (!counts[0] && !counts[1] && !counts[2]) {
        var p = document.createElement("p");
        p.className = "empty";
        p.textContent = "Nothing overdue, today or in the next " + windowDays + " days.";
        root.appendChild(p);
      }
      markTasks();
    }
    if (!months.length) { done(); return; }
    var loading = root.querySelector("[data-agenda-loading]");
    if (loading) loading.hidden = false;
    var base = document.body.getAttribute("data-root") || "";
    Promise.all(months.map(function (m) {
      var url = new URL(base + "calendar/" + m + "/", window.location.href);
      return fetch(url).then(function (r) { return r.ok ? r.text() : ""; })
        .catch(function () { return ""; })
        .then(function (html) { return { url: url, html: html }; });
    })).then(function (pages) {
      pages.forEach(function (page) {
        var doc = new DOMParser().parseFromString(page.html, "text/html");
        doc.querySelectorAll(".month-days .agenda-day[data-date]").forEach(function (day) {
          var date = day.getAttribute("data-date");
          var where = date < lookback ? null : date < today ? "overdue" : date === today ? "today" : date <= last ? "upcoming" : null;
          if (!where || !sections[where]) return;
          day.querySelectorAll(".task").forEach(function (t) {
            var s = t.getAttribute("data-status");
            if (s === "done" || s === "cancelled") t.parentNode.removeChild(t);
          });
          if (!day.querySelector(".task")) return;
          // Links in the month page are relative to it.
          day.querySelectorAll("a[href]").forEach(function (a) {
            a.setAttribute("href", new URL(a.getAttribute("href"), page.url).href);
          });
          sections[where].appendChild(document.importNode(day, true));
          sections[where].hidden = false;
        });
      });
      if (loading) loading.hidden = true;
      done();
    });
  }

  function missions() {
    var soon = inDays(7);
    document.querySelectorAll("[data-open-due]").forEach(function (card) {
      var dates = (card.getAttribute("data-open-due") || "").split(" ").filter(Boolean);
      var overdue = dates.filter(function (d) { return d < today; }).length;
      var upcoming = dates.filter(function (d) { return d >= today && d <= soon; }).length;
      var o = card.querySelector('[data-count="overdue"]');
      var s = card.querySelector('[data-count="soon"]');
      if (o) { o.textContent = overdue; if (overdue) o.classList.add("has-some"); }
      if (s) s.textContent = upcoming;
    });
    document.querySelectorAll("[data-agenda-days]").forEach(function (el) {
      // "date:count date:count …" → overdue / today / next 7 days totals.
      var totals = { overdue: 0, today: 0, soon: 0 };
      (el.getAttribute("data-agenda-days") || "").split(" ").filter(Boolean).forEach(function (pair) {
        var i = pair.indexOf(":");
        var d = pair.slice(0, i), n = parseInt(pair.slice(i + 1), 10) || 0;
        if (d < today) totals.overdue += n;
        else if (d === today) totals.today += n;
        else if (d <= soon) totals.soon += n;
      });
      Object.keys(totals).forEach(function (k) {
        var t = el.querySelector('[data-total="' + k + '"]');
        if (t) t.textContent = totals[k];
      });
    });
  }

  // Where each mission shown runs, when the page is served by quire's daemon: its state, the
  // step its runs are at, and the decision it waits for, from the daemon's own API on the same
  // origin. Anywhere else (a static host, a file) the request fails and the cards stay as built.
  function missionRuns() {
    var lines = document.querySelectorAll("[data-mission-run]");
    if (!lines.length || !window.fetch) return;
    fetch("/api/missions", { credentials: "omit", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        if (!body || !Array.isArray(body.missions)) return;
        var byId = {};
        body.missions.forEach(function (m) { byId[m.id] = m; });
        lines.forEach(function (line) {
          var m = byId[line.getAttribute("data-mission-run")];
          if (!m) return;
          var steps = (m.runs || []).filter(function (r) { return r.step; }).map(function (r) {
            return (r.item ? r.item + ": " : "") + r.step + " (round " + r.round + ", attempt " + r.attempt + ")";
          });
          var decisions = (m.open_decisions || []).join(", ");
          var text;
          if (m.state === "running" || m.state === "queued") text = "Running: step " + (steps.join("; ") || "…");
          else if (m.state === "awaiting_decision") text = "Waiting for a decision: " + decisions + " (quire decide " + (m.open_decisions[0] || "ID") + " approve|reject)";
          else if (m.state === "escalated") text = "Escalated, waiting for a decision: " + decisions + " (retry|abort)";
          else if (m.state === "awaiting_start") text = "Waiting for a token holder to start it: " + decisions;
          else text = "Mission " + m.state.replace(/_/g, " ");
          line.textContent = text;
          line.setAttribute("data-state", m.state);
          line.hidden = false;
        });
      })
      .catch(function () {});
  }

  // A page may show this month's grid: it is fetched from the month's calendar page.
  function monthEmbed() {
    var box = document.querySelector("[data-month-embed]");
    if (!box) return;
    var base = document.body.getAttribute("data-root") || "";
    var url = new URL(base + "calendar/" + today.slice(0, 7) + "/", window.location.href);
    fetch(url).then(function (r) { return r.ok ? r.text() : ""; }).catch(function () { return ""; }).then(function (html) {
      var doc = new DOMParser().parseFromString(html, "text/html");
      var grid = doc.querySelector(".calendar-month");
      if (!grid) {
        box.textContent = "";
        var p = document.createElement("p");
        p.className = "empty";
        p.textContent = "No dated tasks this month.";
        box.appendChild(p);
        return;
      }
      grid.querySelectorAll("a[href]").forEach(function (a) {
        a.setAttribute("href", new URL(a.getAttribute("href"), url).href);
      });
      box.textContent = "";
      box.appendChild(document.importNode(grid, true));
      calendar();
    });
  }

  function calendar() {
    var cell = document.querySelector('.calendar-month td[data-date="' + today + '"]');
    if (cell) cell.classList.add("is-today");
    var month = today.slice(0, 7);
    var item = document.querySelector('[data-months] [data-month="' + month + '"]');
    if (item) item.classList.add("is-current");
  }

  function callouts() {
    document.querySelectorAll(".callout[data-fold] > .callout-title").forEach(function (title) {
      title.setAttribute("role", "button");
      title.setAttribute("tabindex", "0");
      var box = title.parentNode;
      function sync() { title.setAttribute("aria-expanded", String(box.getAttribute("data-fold") === "open")); }
      function toggle() {
        box.setAttribute("data-fold", box.getAttribute("data-fold") === "open" ? "closed" : "open");
        sync();
      }
      sync();
      title.addEventListener("click", toggle);
      title.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(); }
      });
    });
  }

  function search() {
    var input = document.querySelector("[data-search-input]");
    var list = document.querySelector("[data-search-results]");
    var status = document.querySelector("[data-search-status]");
    if (!input || !list) return;
    var root = document.body.getAttribute("data-root") || "";
    var indexUrl = document.body.getAttribute("data-search-index");
    var entries = null;
    var loading = null;
    var selected = -1;

    function load() {
      if (!loading) {
        loading = fetch(indexUrl).then(function (r) { return r.json(); }).then(function (data) {
          entries = data.map(function (e) {
            return {
              e: e,
              title: e.t.toLowerCase(),
              heads: (e.h || []).join(" ").toLowerCase(),
              tags: (e.g || []).join(" ").toLowerCase(),
              text: (e.x || "").toLowerCase()
            };
          });
        }).catch(function () { entries = []; });
      }
      return loading;
    }

    function score(item, terms) {
      var total = 0;
      for (var i = 0; i < terms.length; i++) {
        var t = terms[i], s = 0;
        if (item.title.indexOf(t) === 0) s += 12;
        else if (item.title.indexOf(t) >= 0) s += 8;
        if (item.tags.indexOf(t) >= 0) s += 5;
        if (item.heads.indexOf(t) >= 0) s += 3;
        if (item.text.indexOf(t) >= 0) s += 1;
        if (!s) return 0;
        total += s;
      }
      return total;
    }

    function show(results) {
      list.textContent = "";
      selected = -1;
      results.forEach(function (r) {
        var li = document.createElement("li");
        var a = document.createElement("a");
        a.href = root + r.e.u;
        a.textContent = r.e.t;
        a.setAttribute("data-search-hit", "");
        if (r.e.x) {
          var small = document.createElement("small");
          small.textContent = r.e.x;
          a.appendChild(small);
        }
        li.appendChild(a);
        list.appendChild(li);
      });
      if (!results.length && input.value.trim()) {
        var none = document.createElement("li");
        none.className = "empty";
        none.textContent = "No note matches.";
        list.appendChild(none);
      }
      var open = !!input.value.trim();
      list.hidden = !open;
      // A plain search box has no aria-expanded; the count is said through a live region.
      if (status) status.textContent = open ? (results.length + (results.length === 1 ? " note matches" : " notes match")) : "";
    }

    function run() {
      var q = input.value.trim().toLowerCase();
      if (!q) { show([]); return; }
      load().then(function () {
        var terms = q.split(/\s+/);
        var hits = [];
        for (var i = 0; i < entries.length; i++) {
          var s = score(entries[i], terms);
          if (s) hits.push({ e: entries[i].e, s: s });
        }
        hits.sort(function (a, b) { return b.s - a.s || (a.e.t < b.e.t ? -1 : 1); });
        if (input.value.trim().toLowerCase() === q) show(hits.slice(0, 12));
      });
    }

    function move(step) {
      var links = list.querySelectorAll("[data-search-hit]");
      if (!links.length) return;
      if (selected >= 0) links[selected].removeAttribute("aria-selected");
      selected = (selected + step + links.length) % links.length;
      links[selected].setAttribute("aria-selected", "true");
      links[selected].scrollIntoView({ block: "nearest" });
    }

    input.addEventListener("focus", load);
    input.addEventListener("input", run);
    input.addEventListener("keydown", function (e) {
      if (e.key === "ArrowDown") { e.preventDefault(); move(1); }
      else if (e.key === "ArrowUp") { e.preventDefault(); move(-1); }
      else if (e.key === "Enter") {
        var links = list.querySelectorAll("[data-search-hit]");
        var target = links[selected >= 0 ? selected : 0];
        if (target) { e.preventDefault(); window.location.href = target.href; }
      } else if (e.key === "Escape") { input.value = ""; show([]); }
    });
    document.addEventListener("click", function (e) {
      if (!list.contains(e.target) && e.target !== input) { list.hidden = true; }
    });
    document.addEventListener("keydown", function (e) {
      if (e.key === "/" && document.activeElement !== input && !/input|textarea/i.test(document.activeElement.tagName)) {
        e.preventDefault();
        input.focus();
      }
    });
  }

  function start() {
    markTasks();
    agenda();
    missions();
    missionRuns();
    calendar();
    monthEmbed();
    callouts();
    search();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
