//! Mission control (SPEC §10): the live control plane the daemon serves at `/`.
//!
//! Pages are rendered here, on the server, from the same library answers as the API routes
//! (missions, decisions, agents, the queue, analytics), so every read-only view works without
//! scripts. `control/app.js` (embedded, no build step) then keeps the page live: it listens to
//! `GET /api/events` (the browser's `EventSource` reconnects and sends `Last-Event-ID` by itself,
//! so a dropped connection catches up) and, when an event concerns a part of the page, fetches
//! that part again as an HTML fragment from `/control/fragment/<part>`. One renderer, in Rust,
//! for the first paint and for every update.
//!
//! Acting (decisions, retry, abort, inject) needs the token, sent by the script in
//! `Authorization`; forms never post by themselves (`form-action 'none'`), so nothing here works
//! through a cookie or a cross-site form. The pages carry a strict `Content-Security-Policy`: no
//! inline script or style, nothing from elsewhere.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::Value;

use super::api::Api;
use crate::analytics::{Analytics, Every, LogFilter};
use crate::missions::{AttemptRow, DecisionRow, MissionState};
use crate::render::escape_html as esc;
use crate::vault::Queue;
use crate::workflow::mission_ops::{self, Agent};
use crate::workflow::mission_remote::{self, Runners};
use crate::workflow::missions::{self as flow, MissionView};

/// The policy every control-plane page is served with.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Missions listed on the overview before "show all": keeps the page light with thousands.
const MISSIONS_SHOWN: usize = 100;
/// Events the overview starts with (the script adds the live ones).
const EVENTS_SHOWN: usize = 50;
/// Most of a diff or a log shown in a page.
const TEXT_SHOWN: usize = 64 * 1024;

fn page(title: &str, body: &str) -> Response {
    let mut html = String::with_capacity(body.len() + 1024);
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<link rel=\"stylesheet\" href=\"/control/tokens.css\">\n\
         <link rel=\"stylesheet\" href=\"/control/app.css\">\n\
         <script defer src=\"/control/app.js\"></script>\n</head>\n<body>\n\
         <a class=\"skip\" href=\"#main\">Skip to content</a>\n\
         <header class=\"bar\">\n<a class=\"brand\" href=\"/\">quire mission control</a>\n\
         <span id=\"live\" role=\"status\">Static view: live updates need JavaScript</span>\n\
         <button type=\"button\" id=\"bell\" aria-controls=\"drawer\" aria-expanded=\"false\" hidden>\
         Notifications <span id=\"count\" class=\"count\">0</span></button>\n\
         <button type=\"button\" id=\"token-button\" hidden>Set token</button>\n</header>\n\
         <aside id=\"drawer\" aria-labelledby=\"drawer-title\" hidden>\n\
         <h2 id=\"drawer-title\">Notifications</h2>\n<ul id=\"notes\"></ul>\n</aside>\n\
         <dialog id=\"token-dialog\" aria-labelledby=\"token-title\">\n\
         <form id=\"token-form\">\n<h2 id=\"token-title\">The daemon's token</h2>\n\
         <p>Acting needs <code>QUIRE_TOKEN</code> from the vault's <code>.env</code>. It is kept \
         for this tab only.</p>\n<p id=\"token-error\" class=\"error\" role=\"alert\"></p>\n\
         <label for=\"token-input\">Token</label>\n\
         <input id=\"token-input\" type=\"password\" autocomplete=\"off\" required>\n\
         <div class=\"buttons\"><button type=\"submit\">Use this token</button>\n\
         <button type=\"button\" id=\"token-cancel\">Cancel</button>\n\
         <button type=\"button\" id=\"token-forget\">Forget the token</button></div>\n\
         </form>\n</dialog>\n<main id=\"main\">\n{body}</main>\n</body>\n</html>\n",
        esc(title)
    );
    fragment(html)
}

/// HTML as the control plane serves it, whole page or part: under its CSP, never cached.
fn fragment(html: String) -> Response {
    let mut r = html.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn failed(e: impl std::fmt::Display) -> Response {
    tracing::error!("control plane: {e}");
    let mut r = page(
        "quire mission control: error",
        "<h1>Something failed</h1>\n<p>The daemon's log says what.</p>\n",
    );
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r
}

/// Runs `f` off the async workers.
async fn blocking(f: impl FnOnce() -> Response + Send + 'static) -> Response {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(failed)
}

fn state_badge(state: MissionState) -> String {
    format!(
        "<span class=\"state state-{0}\">{1}</span>",
        state.as_str(),
        state.as_str().replace('_', " ")
    )
}

/// A time as the page shows it: `2026-12-03 09:30:12` (UTC), in a `<time>` element.
fn time(rfc3339: &str) -> String {
    let shown = rfc3339
        .get(..19)
        .map(|t| t.replace('T', " "))
        .unwrap_or_else(|| rfc3339.to_owned());
    format!(
        "<time datetime=\"{}\">{} UTC</time>",
        esc(rfc3339),
        esc(&shown)
    )
}

// ---------------------------------------------------------------------------------------------
// Parts of the pages, each also a fragment.

fn decisions_html(vault: &crate::vault::Vault, decisions: &[DecisionRow]) -> String {
    let mut out = String::new();
    if decisions.is_empty() {
        out.push_str("<p class=\"empty\">No decision is waiting.</p>\n");
        return out;
    }
    for d in decisions {
        out.push_str(&decision_card(vault, d));
    }
    out
}

fn decision_card(vault: &crate::vault::Vault, d: &DecisionRow) -> String {
    let mut out = String::new();
    let sandbox = crate::missions::sandbox_id(&d.mission, d.item.as_deref());
    let what = match d.kind.as_str() {
        "start" => "may it start?",
        "round" => "a round is done: promote its work?",
        _ => "escalated: a failure no rule covers",
    };
    let _ = write!(
        out,
        "<article class=\"decision\" id=\"decision-{id}\" aria-labelledby=\"decision-{id}-title\">\n\
         <h3 id=\"decision-{id}-title\"><a href=\"/control/missions/{mission}\">{mission}</a>{item}: {what}</h3>\n\
         <p class=\"meta\">Decision <code>{id}</code>, requested {req}, expires {exp}.</p>\n",
        id = esc(&d.id),
        mission = esc(&d.mission),
        item = d
            .item
            .as_deref()
            .map(|i| format!(" (item <code>{}</code>)", esc(i)))
            .unwrap_or_default(),
        req = time(&d.requested),
        exp = time(&d.expires),
    );
    if let Some(reason) = &d.reason {
        let _ = writeln!(out, "<p class=\"reason\">{}</p>", esc(reason));
    }
    if d.kind == "round" {
        match crate::workflow::sandbox::diff(vault, &sandbox) {
            Ok(diff) => {
                let _ = write!(
                    out,
                    "<details class=\"diff\"><summary>Changes in <code>{}</code>: {} file{}</summary>\n<ul class=\"files\">",
                    esc(&sandbox),
                    diff.files.len(),
                    if diff.files.len() == 1 { "" } else { "s" }
                );
                for f in &diff.files {
                    let _ = write!(
                        out,
                        "<li><span class=\"change change-{0}\">{0}</span> <code>{1}</code></li>",
                        f.status,
                        esc(&f.path)
                    );
                }
                // Scrollable, so reachable by keyboard.
                out.push_str("</ul>\n<pre class=\"patch\" tabindex=\"0\">");
                out.push_str(&esc(cut(&diff.patch, TEXT_SHOWN)));
                out.push_str("</pre></details>\n");
            }
            Err(e) => {
                let _ = writeln!(
                    out,
                    "<p class=\"error\">The sandbox's changes cannot be shown: {}</p>",
                    esc(&e.to_string())
                );
            }
        }
    }
    let answers: &[(&str, &str)] = match d.kind.as_str() {
        "start" => &[("start", "Start"), ("reject", "Reject")],
        "round" => &[("approve", "Approve and promote"), ("reject", "Reject")],
        _ => &[("retry", "Retry"), ("abort", "Abort")],
    };
    let _ = write!(
        out,
        "<form class=\"act\" data-action=\"/api/decisions/{id}/resolve\" data-commit=\"{commit}\">\n\
         <label for=\"reason-{id}\">Reason (optional)</label>\n\
         <input id=\"reason-{id}\" name=\"reason\" type=\"text\" maxlength=\"500\">\n<div class=\"buttons\">",
        id = esc(&d.id),
        commit = esc(&d.commit),
    );
    for (value, label) in answers {
        let _ = write!(
            out,
            "<button type=\"submit\" name=\"decision\" value=\"{value}\" disabled>{label}</button>"
        );
    }
    out.push_str("</div>\n<p class=\"outcome\" role=\"status\"></p>\n</form>\n</article>\n");
    out
}

fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Active missions first (running, waiting, escalated), then the most recently changed.
fn missions_html(missions: &[MissionView], all: bool) -> String {
    let mut sorted: Vec<&MissionView> = missions.iter().collect();
    sorted.sort_by(|a, b| {
        a.state
            .is_final()
            .cmp(&b.state.is_final())
            .then_with(|| b.updated.cmp(&a.updated))
    });
    let shown = if all {
        sorted.len()
    } else {
        sorted.len().min(MISSIONS_SHOWN)
    };
    let mut out = String::new();
    if sorted.is_empty() {
        out.push_str(
            "<p class=\"empty\">No missions yet: drop a brief into <code>contributions/pending/</code> or POST it to <code>/api/missions</code>.</p>\n",
        );
        return out;
    }
    out.push_str(
        "<table class=\"missions\">\n<caption>Missions, active first</caption>\n<thead><tr>\
         <th scope=\"col\">Mission</th><th scope=\"col\">State</th><th scope=\"col\">Step</th>\
         <th scope=\"col\">Progress</th><th scope=\"col\">Attempts</th><th scope=\"col\">Changed</th>\
         </tr></thead>\n<tbody>\n",
    );
    for m in &sorted[..shown] {
        let (done, total) = m.runs.iter().fold((0, 0), |(d, t), r| {
            (d + r.step_index.min(r.steps), t + r.steps)
        });
        let step = m
            .runs
            .iter()
            .filter_map(|r| {
                r.step.as_deref().map(|s| match &r.item {
                    Some(i) => format!("{} <span class=\"muted\">({})</span>", esc(s), esc(i)),
                    None => esc(s),
                })
            })
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "<tr id=\"mission-{id}\" data-state=\"{state}\"><th scope=\"row\"><a href=\"/control/missions/{id}\">{id}</a> \
             <span class=\"title\">{title}</span></th><td>{badge}</td><td>{step}</td>\
             <td><progress max=\"{total}\" value=\"{done}\" aria-label=\"{id}: {done} of {total} steps done\">{done}/{total}</progress> \
             <span class=\"muted\">{done}/{total}</span></td><td>{attempts}</td><td>{updated}</td></tr>",
            id = esc(&m.id),
            state = m.state.as_str(),
            title = esc(&m.title),
            badge = state_badge(m.state),
            step = if step.is_empty() { "–".into() } else { step },
            total = total.max(1),
            done = done,
            attempts = m.attempts,
            updated = time(&m.updated),
        );
    }
    out.push_str("</tbody>\n</table>\n");
    if shown < sorted.len() {
        let _ = writeln!(
            out,
            "<p><a href=\"/?missions=all\">Show all {} missions</a></p>",
            sorted.len()
        );
    }
    out
}

fn agents_html(agents: &[Agent]) -> String {
    if agents.is_empty() {
        return "<p class=\"empty\">No step is running.</p>\n".into();
    }
    let mut out = String::from(
        "<table class=\"agents\">\n<caption>Steps running now</caption>\n<thead><tr>\
         <th scope=\"col\">Mission</th><th scope=\"col\">Step</th><th scope=\"col\">Attempt</th>\
         <th scope=\"col\">Runs on</th><th scope=\"col\">Since</th><th scope=\"col\">Last line</th></tr></thead>\n<tbody>\n",
    );
    for a in agents {
        let _ = writeln!(
            out,
            "<tr><th scope=\"row\"><a href=\"/control/missions/{m}\">{m}</a></th><td>{step}</td><td>{att}</td>\
             <td>{on}{dead}</td><td>{since}</td><td><code>{line}</code></td></tr>",
            m = esc(&a.mission),
            step = esc(&a.step),
            att = a.attempt,
            on = esc(&a.runs_on),
            dead = if a.alive {
                ""
            } else {
                " <span class=\"error\">(gone)</span>"
            },
            since = time(&a.since),
            line = esc(a.last_line.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

fn runners_html(vault: &crate::vault::Vault, r: &Runners) -> String {
    let mut out = String::new();
    if r.runners.is_empty() {
        let here = if vault.config().missions.local {
            "steps that ask for no labels run on this machine"
        } else {
            "every step waits for one (<code>[missions] local = false</code>)"
        };
        let _ = writeln!(
            out,
            "<p class=\"empty\">No runner has a token; {here}. <code>quire runner token new NAME</code> makes one.</p>"
        );
    } else {
        // An idle runner is heard from at least once a long poll; one silent for longer than
        // that and a lease holds no step and may be gone.
        let quiet = vault.config().runners.lease.duration() + mission_remote::LONGEST_POLL;
        let quiet =
            chrono::Duration::from_std(quiet).unwrap_or_else(|_| chrono::Duration::seconds(60));
        let now = Utc::now();
        out.push_str(
            "<table class=\"runners\">\n<caption>Runners</caption>\n<thead><tr>\
             <th scope=\"col\">Runner</th><th scope=\"col\">State</th><th scope=\"col\">Runs</th>\
             <th scope=\"col\">Labels</th><th scope=\"col\">Host</th><th scope=\"col\">Last seen</th></tr></thead>\n<tbody>\n",
        );
        for v in &r.runners {
            let x = &v.runner;
            let silent = chrono::DateTime::parse_from_rfc3339(&x.last_seen)
                .map(|t| now.signed_duration_since(t) > quiet)
                .unwrap_or(true);
            let state = if x.revoked {
                "<span class=\"error\">revoked</span>"
            } else if !v.running.is_empty() {
                "working"
            } else if x.last_seen.is_empty() {
                "not started yet"
            } else if silent {
                "silent"
            } else {
                "idle"
            };
            let mut runs = format!("{} of {}", v.running.len(), x.slots.max(1));
            for a in &v.running {
                let _ = write!(
                    runs,
                    " <a href=\"/control/missions/{m}\">{m}</a>&nbsp;<code>{step}</code>",
                    m = esc(&a.mission),
                    step = esc(&a.step)
                );
            }
            let _ = writeln!(
                out,
                "<tr><th scope=\"row\">{name}</th><td>{state}</td><td>{runs}</td><td>{labels}</td>\
                 <td>{host}</td><td>{seen}</td></tr>",
                name = esc(&x.name),
                labels = esc(&x.labels.join(", ")),
                host = esc(&x.host),
                seen = if x.last_seen.is_empty() {
                    "never".to_owned()
                } else {
                    time(&x.last_seen)
                },
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    if r.waiting.is_empty() {
        return out;
    }
    out.push_str(
        "<table class=\"waiting\">\n<caption>Steps waiting for a runner</caption>\n<thead><tr>\
         <th scope=\"col\">Mission</th><th scope=\"col\">Step</th><th scope=\"col\">Asks for</th>\
         <th scope=\"col\">Since</th></tr></thead>\n<tbody>\n",
    );
    for w in &r.waiting {
        // Said plainly when no runner with a token could ever take it.
        let takers = r
            .runners
            .iter()
            .any(|v| !v.runner.revoked && w.labels.iter().all(|l| v.runner.labels.contains(l)));
        let labels = if w.labels.is_empty() {
            "any runner".to_owned()
        } else {
            esc(&w.labels.join(", ")).to_string()
        };
        let _ = writeln!(
            out,
            "<tr><th scope=\"row\"><a href=\"/control/missions/{m}\">{m}</a></th><td>{step}</td>\
             <td>{labels}{none}</td><td>{since}</td></tr>",
            m = esc(&w.mission),
            step = esc(&w.step),
            none = if takers {
                ""
            } else {
                " <span class=\"error\">(no runner has these)</span>"
            },
            since = time(&w.since),
        );
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

fn queue_html(vault: &crate::vault::Vault) -> String {
    let mut out = String::new();
    let names = |q: Queue| -> Vec<String> {
        crate::contributions::queue::list(vault, q)
            .unwrap_or_default()
            .iter()
            .map(|p| crate::contributions::queue::file_stem(p))
            .collect()
    };
    let (pending, processing) = (names(Queue::Pending), names(Queue::Processing));
    let _ = writeln!(
        out,
        "<p class=\"queue-counts\"><strong>{}</strong> pending, <strong>{}</strong> being applied.</p>",
        pending.len(),
        processing.len()
    );
    if !pending.is_empty() || !processing.is_empty() {
        out.push_str("<ul class=\"queue\">");
        for n in processing.iter().take(20) {
            let _ = write!(out, "<li><code>{}</code> (applying)</li>", esc(n));
        }
        for n in pending.iter().take(20) {
            let _ = write!(out, "<li><code>{}</code></li>", esc(n));
        }
        out.push_str("</ul>\n");
    }
    let recent = Analytics::open(vault).and_then(|a| {
        a.logs(&LogFilter {
            kind: Some("bundle".into()),
            limit: 20,
            ..LogFilter::default()
        })
    });
    let items = match recent {
        Ok(v) => v["items"].as_array().cloned().unwrap_or_default(),
        Err(e) => {
            let _ = writeln!(
                out,
                "<p class=\"error\">Recent receipts cannot be read: {}</p>",
                esc(&e.to_string())
            );
            return out;
        }
    };
    if items.is_empty() {
        out.push_str("<p class=\"empty\">No receipts yet.</p>\n");
        return out;
    }
    out.push_str(
        "<table class=\"receipts\">\n<caption>Recent receipts</caption>\n<thead><tr><th scope=\"col\">Bundle</th>\
         <th scope=\"col\">Outcome</th><th scope=\"col\">Received</th><th scope=\"col\">Why refused</th></tr></thead>\n<tbody>\n",
    );
    for it in &items {
        let status = it["status"].as_str().unwrap_or("");
        let why = if status == "rejected" {
            receipt_message(vault, it["receipt"].as_str().unwrap_or(""))
                .map(|m| {
                    format!(
                        "<code>{}</code> {}",
                        esc(it["code"].as_str().unwrap_or("")),
                        esc(&m)
                    )
                })
                .unwrap_or_else(|| esc(it["code"].as_str().unwrap_or("")))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "<tr><th scope=\"row\"><code>{}</code></th><td><span class=\"outcome-{s}\">{s}</span></td><td>{}</td><td>{}</td></tr>",
            esc(it["id"]
                .as_str()
                .unwrap_or(it["receipt"].as_str().unwrap_or(""))),
            time(it["at"].as_str().unwrap_or("")),
            why,
            s = esc(status),
        );
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// A refused bundle's message, from its receipt (`rejected/<name>`).
fn receipt_message(vault: &crate::vault::Vault, file: &str) -> Option<String> {
    let name = file.strip_prefix("rejected/")?;
    if name.contains('/') || name.starts_with('.') {
        return None;
    }
    let path = vault.queue_dir(Queue::Rejected).join(format!(
        "{name}{}",
        crate::contributions::queue::RECEIPT_SUFFIX
    ));
    let receipt: crate::contributions::Receipt =
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    receipt.error.map(|e| e.message)
}

fn analytics_html(vault: &crate::vault::Vault) -> String {
    let a = match Analytics::open(vault) {
        Ok(a) => a,
        Err(e) => return format!("<p class=\"error\">{}</p>\n", esc(&e.to_string())),
    };
    let (stats, trends) = match (
        a.stats(None),
        a.trends(
            Every::Day,
            Some(Utc::now() - chrono::Duration::days(13)),
            Utc::now(),
        ),
    ) {
        (Ok(s), Ok(t)) => (s, t),
        (Err(e), _) | (_, Err(e)) => {
            return format!("<p class=\"error\">{}</p>\n", esc(&e.to_string()));
        }
    };
    let b = &stats["bundles"];
    let st = &stats["steps"];
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    let ms = |v: &Value| {
        v.as_f64()
            .map(|m| format!("{m:.1} ms"))
            .unwrap_or_else(|| "–".into())
    };
    let pct = |v: &Value| format!("{:.1} %", v.as_f64().unwrap_or(0.0) * 100.0);
    let mut out = String::new();
    let _ = write!(
        out,
        "<dl class=\"stats\">\n\
         <div><dt>Bundles</dt><dd>{}</dd></div>\n<div><dt>Applied</dt><dd>{}</dd></div>\n\
         <div><dt>Refused</dt><dd>{} ({})</dd></div>\n<div><dt>Apply p50 / p95</dt><dd>{} / {}</dd></div>\n\
         <div><dt>Step attempts</dt><dd>{}</dd></div>\n<div><dt>Step p50 / p95</dt><dd>{} / {}</dd></div>\n\
         <div><dt>Retries</dt><dd>{}</dd></div>\n<div><dt>Missions escalated</dt><dd>{} of {} ({})</dd></div>\n</dl>\n",
        n(&b["total"]),
        n(&b["by_status"]["applied"]),
        n(&b["by_status"]["rejected"]),
        pct(&b["rejection_rate"]),
        ms(&b["apply_ms"]["p50"]),
        ms(&b["apply_ms"]["p95"]),
        n(&st["attempts"]),
        ms(&st["step_ms"]["p50"]),
        ms(&st["step_ms"]["p95"]),
        pct(&st["retry_rate"]),
        n(&st["escalated_missions"]),
        n(&st["missions"]),
        pct(&st["escalation_rate"]),
    );
    if let Some(codes) = b["by_code"].as_object().filter(|c| !c.is_empty()) {
        out.push_str("<p>Refusals by code: ");
        let list: Vec<String> = codes
            .iter()
            .map(|(k, v)| format!("<code>{}</code> {}", esc(k), n(v)))
            .collect();
        out.push_str(&list.join(", "));
        out.push_str("</p>\n");
    }
    out.push_str(&trend_chart(&trends));
    out
}

/// Bars per day (applied and refused bundles, step attempts) as inline SVG, with a table of the
/// same numbers for screen readers and for reading exact values.
fn trend_chart(trends: &Value) -> String {
    let series = trends["series"].as_array().cloned().unwrap_or_default();
    let get = |p: &Value, k: &str| p[k].as_i64().unwrap_or(0);
    let max = series
        .iter()
        .map(|p| {
            (get(p, "applied") + get(p, "rejected") + get(p, "duplicate")).max(get(p, "attempts"))
        })
        .max()
        .unwrap_or(0)
        .max(1);
    let (w, h, pad) = (28i64, 120i64, 4i64);
    let width = series.len() as i64 * w;
    let mut out = String::new();
    let _ = write!(
        out,
        "<figure class=\"chart\">\n<svg viewBox=\"0 0 {width} {}\" role=\"img\" aria-labelledby=\"chart-title\" preserveAspectRatio=\"none\">\n\
         <title id=\"chart-title\">Bundles and step attempts per day, last {} days</title>\n",
        h + 16,
        series.len()
    );
    for (i, p) in series.iter().enumerate() {
        let x = i as i64 * w;
        let applied = get(p, "applied");
        let refused = get(p, "rejected");
        let attempts = get(p, "attempts");
        let bar = |v: i64| v * h / max;
        let (ha, hr) = (bar(applied), bar(refused));
        let _ = writeln!(
            out,
            "<rect class=\"bar-applied\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{ha}\"/>\
             <rect class=\"bar-refused\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{hr}\"/>\
             <rect class=\"bar-attempts\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
            x + pad,
            h - ha - hr,
            w / 2 - pad,
            x + pad,
            h - hr,
            w / 2 - pad,
            x + w / 2,
            h - bar(attempts),
            w / 2 - pad,
            bar(attempts),
        );
    }
    out.push_str("</svg>\n<figcaption><span class=\"key key-applied\">applied</span> <span class=\"key key-refused\">refused</span> <span class=\"key key-attempts\">step attempts</span></figcaption>\n");
    out.push_str("<details><summary>The numbers</summary><table class=\"trend\"><caption>Per day (UTC)</caption><thead><tr><th scope=\"col\">Day</th><th scope=\"col\">Applied</th><th scope=\"col\">Refused</th><th scope=\"col\">Duplicate</th><th scope=\"col\">Attempts</th><th scope=\"col\">Failed</th></tr></thead><tbody>");
    for p in &series {
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(p["at"].as_str().unwrap_or("").get(..10).unwrap_or("")),
            get(p, "applied"),
            get(p, "rejected"),
            get(p, "duplicate"),
            get(p, "attempts"),
            get(p, "failed_attempts"),
        );
    }
    out.push_str("</tbody></table></details>\n</figure>\n");
    out
}

fn events_html(api: &Api) -> String {
    let (_, newest) = api.daemon.journal_range();
    let events = api
        .daemon
        .replay((newest - EVENTS_SHOWN as i64).max(0), EVENTS_SHOWN);
    let mut out = format!(
        "<form id=\"event-filter\" class=\"filter\" role=\"search\"><label for=\"filter\">Show events containing</label> \
         <input id=\"filter\" type=\"search\" placeholder=\"mission.step, a mission id…\"></form>\n\
         <ol id=\"events\" class=\"events\" reversed tabindex=\"0\" aria-labelledby=\"events-title\" data-last=\"{newest}\">\n",
    );
    for (seq, e) in events.iter().rev() {
        out.push_str(&event_item(*seq, e));
    }
    out.push_str("</ol>\n");
    out
}

fn event_item(seq: i64, e: &crate::events::Event) -> String {
    format!(
        "<li data-seq=\"{seq}\" data-type=\"{t}\">{at} <code class=\"type\">{t}</code> {subject}</li>\n",
        at = time(&e.at),
        t = esc(&e.kind),
        subject = esc(&e.subject),
    )
}

// ---------------------------------------------------------------------------------------------
// Routes.

/// `GET /`: the overview.
pub(super) async fn overview(
    State(api): State<Api>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let all = q.get("missions").is_some_and(|v| v == "all");
    blocking(move || {
        let vault = api.daemon.vault();
        let (missions, decisions, agents) = match (
            flow::list(vault),
            flow::inbox(vault),
            mission_ops::agents(vault),
        ) {
            (Ok(m), Ok(d), Ok(a)) => (m, d, a),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return failed(e),
        };
        let runners = match mission_remote::runners(vault, &agents) {
            Ok(r) => r,
            Err(e) => return failed(e),
        };
        let mut body = String::with_capacity(64 * 1024);
        body.push_str("<h1 class=\"visually-hidden\">Mission control</h1>\n");
        section(&mut body, "decisions", "Decisions waiting for you", &decisions_html(vault, &decisions));
        section(&mut body, "missions", "Missions", &missions_html(&missions, all));
        section(&mut body, "agents", "Running steps", &agents_html(&agents));
        section(&mut body, "runners", "Runners", &runners_html(vault, &runners));
        section(&mut body, "queue", "Bundle queue", &queue_html(vault));
        section(&mut body, "analytics", "Analytics", &analytics_html(vault));
        let _ = write!(
            body,
            "<section class=\"panel\" aria-labelledby=\"events-title\"><h2 id=\"events-title\">Events</h2>\n{}</section>\n",
            events_html(&api)
        );
        page("quire mission control", &body)
    })
    .await
}

fn section(body: &mut String, part: &str, title: &str, html: &str) {
    let _ = write!(
        body,
        "<section class=\"panel\" aria-labelledby=\"{part}-title\"><h2 id=\"{part}-title\">{title}</h2>\n\
         <div id=\"part-{part}\" data-part=\"{part}\">\n{html}</div>\n</section>\n"
    );
}

/// `GET /control/fragment/{part}`: one part of the overview, for the script to swap in.
pub(super) async fn part(
    State(api): State<Api>,
    Path(part): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let all = q.get("missions").is_some_and(|v| v == "all");
    blocking(move || {
        let vault = api.daemon.vault();
        let html = match part.as_str() {
            "decisions" => flow::inbox(vault).map(|d| decisions_html(vault, &d)),
            "missions" => flow::list(vault).map(|m| missions_html(&m, all)),
            "agents" => mission_ops::agents(vault).map(|a| agents_html(&a)),
            "runners" => mission_ops::agents(vault)
                .and_then(|a| mission_remote::runners(vault, &a))
                .map(|r| runners_html(vault, &r)),
            "queue" => Ok(queue_html(vault)),
            "analytics" => Ok(analytics_html(vault)),
            _ => {
                return super::api::error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no part `{part}`"),
                );
            }
        };
        match html {
            Ok(h) => fragment(h),
            Err(e) => failed(e),
        }
    })
    .await
}

/// `GET /control/missions/{id}`: one mission, its runs and attempts, its decisions, the log of its
/// latest step (followed while it runs), and a box to message a running step.
pub(super) async fn mission(State(api): State<Api>, Path(id): Path<String>) -> Response {
    blocking(move || {
        let vault = api.daemon.vault();
        match flow::status(vault, &id) {
            Ok(Some(s)) => {
                let (_, newest) = api.daemon.journal_range();
                let body = mission_body(vault, &s, newest);
                page(&format!("{} – quire mission control", s.mission.id), &body)
            }
            Ok(None) => {
                let mut r = page(
                    "No such mission – quire mission control",
                    &format!(
                        "<h1>No mission <code>{}</code></h1>\n<p><a href=\"/\">Back to every mission</a></p>\n",
                        esc(&id)
                    ),
                );
                *r.status_mut() = StatusCode::NOT_FOUND;
                r
            }
            Err(e) => failed(e),
        }
    })
    .await
}

/// `GET /control/fragment/mission/{id}`: the mission page's live part.
pub(super) async fn mission_part(State(api): State<Api>, Path(id): Path<String>) -> Response {
    blocking(move || {
        let vault = api.daemon.vault();
        match flow::status(vault, &id) {
            Ok(Some(s)) => fragment(mission_live(vault, &s)),
            Ok(None) => super::api::error(StatusCode::NOT_FOUND, "not_found", "no such mission"),
            Err(e) => failed(e),
        }
    })
    .await
}

fn mission_body(vault: &crate::vault::Vault, s: &flow::MissionStatus, newest: i64) -> String {
    let m = &s.mission;
    let mut out = String::new();
    let _ = write!(
        out,
        "<p class=\"crumbs\"><a href=\"/\">Mission control</a> › {id}</p>\n\
         <h1>{title} <span class=\"muted\">({id})</span></h1>\n\
         <div id=\"part-mission\" data-part=\"mission/{id}\" data-last=\"{newest}\">\n{live}</div>\n",
        id = esc(&m.id),
        title = esc(&m.title),
        live = mission_live(vault, s),
    );
    // The log of the latest attempt: the script follows it while the step runs.
    if let Some(last) = s.attempts.last() {
        let text = std::fs::read(vault.root().join(&last.log))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let shown = if text.len() > TEXT_SHOWN {
            let mut start = text.len() - TEXT_SHOWN;
            while !text.is_char_boundary(start) {
                start += 1;
            }
            &text[start..]
        } else {
            &text[..]
        };
        let follow = if last.state == "running" {
            format!(
                " data-follow=\"/api/missions/{}/logs/{}?follow=1\"",
                esc(&m.id),
                esc(&last.step)
            )
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<section class=\"panel\" aria-labelledby=\"log-title\"><h2 id=\"log-title\">Log of step <code>{step}</code>, attempt {att}</h2>\n\
             <pre id=\"log\" class=\"log\" role=\"log\" tabindex=\"0\" aria-labelledby=\"log-title\"{follow}>{text}</pre>\n</section>\n",
            step = esc(&last.step),
            att = last.attempt,
            text = esc(shown),
        );
    }
    let _ = write!(
        out,
        "<section class=\"panel\" aria-labelledby=\"ops-title\"><h2 id=\"ops-title\">Act on this mission</h2>\n\
         <form class=\"act\" data-action=\"/api/missions/{id}/inject\" data-kind=\"inject\">\n\
         <label for=\"inject-message\">Message for the running step (appended to <code>$QUIRE_INBOX</code>)</label>\n\
         <textarea id=\"inject-message\" name=\"message\" rows=\"2\" maxlength=\"4000\"></textarea>\n\
         <div class=\"buttons\"><button type=\"submit\" name=\"op\" value=\"inject\" disabled>Send to the running step</button></div>\n\
         <p class=\"outcome\" role=\"status\"></p>\n</form>\n\
         <form class=\"act\" data-action=\"/api/missions/{id}/retry\" data-kind=\"retry\">\n\
         <label for=\"retry-from\">Retry from step (empty: the failed one)</label>\n\
         <input id=\"retry-from\" name=\"from\" type=\"text\" maxlength=\"100\">\n\
         <div class=\"buttons\"><button type=\"submit\" name=\"op\" value=\"retry\" disabled>Retry</button></div>\n\
         <p class=\"outcome\" role=\"status\"></p>\n</form>\n\
         <form class=\"act\" data-action=\"/api/missions/{id}/abort\" data-kind=\"abort\">\n\
         <label for=\"abort-reason\">Why abort</label>\n\
         <input id=\"abort-reason\" name=\"reason\" type=\"text\" maxlength=\"500\">\n\
         <div class=\"buttons\"><button type=\"submit\" name=\"op\" value=\"abort\" class=\"danger\" disabled>Abort the mission</button></div>\n\
         <p class=\"outcome\" role=\"status\"></p>\n</form>\n\
         <noscript><p>Acting needs JavaScript: the token is sent in a header, never in a form.</p></noscript>\n</section>\n",
        id = esc(&m.id),
    );
    out
}

fn mission_live(vault: &crate::vault::Vault, s: &flow::MissionStatus) -> String {
    let m = &s.mission;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<p>{} · {} attempt{} · accepted {} · changed {}</p>",
        state_badge(m.state),
        m.attempts,
        if m.attempts == 1 { "" } else { "s" },
        time(&m.created),
        time(&m.updated),
    );
    if !s.decisions.is_empty() {
        out.push_str("<h2>Waiting for you</h2>\n");
        out.push_str(&decisions_html(vault, &s.decisions));
    }
    out.push_str(
        "<table class=\"runs\">\n<caption>Runs (a sandbox each)</caption>\n<thead><tr><th scope=\"col\">Sandbox</th>\
         <th scope=\"col\">State</th><th scope=\"col\">Step</th><th scope=\"col\">Progress</th><th scope=\"col\">Round</th></tr></thead>\n<tbody>\n",
    );
    for r in &m.runs {
        let _ = writeln!(
            out,
            "<tr><th scope=\"row\"><code>{}</code></th><td>{}</td><td>{}</td>\
             <td><progress max=\"{t}\" value=\"{d}\" aria-label=\"{d} of {t} steps done\">{d}/{t}</progress> <span class=\"muted\">{d}/{t}</span></td><td>{}</td></tr>",
            esc(&r.sandbox),
            state_badge(r.state),
            esc(r.step.as_deref().unwrap_or("–")),
            r.round,
            t = r.steps.max(1),
            d = r.step_index.min(r.steps),
        );
    }
    out.push_str("</tbody>\n</table>\n");
    out.push_str(&attempts_html(&m.id, &s.attempts));
    out
}

fn attempts_html(mission: &str, attempts: &[AttemptRow]) -> String {
    if attempts.is_empty() {
        return "<p class=\"empty\">No step has run yet.</p>\n".into();
    }
    let mut out = String::from(
        "<table class=\"attempts\">\n<caption>Attempts, in the order they started</caption>\n<thead><tr>\
         <th scope=\"col\">Step</th><th scope=\"col\">Round</th><th scope=\"col\">Attempt</th><th scope=\"col\">Outcome</th>\
         <th scope=\"col\">Started</th><th scope=\"col\">Commit</th><th scope=\"col\">Log</th></tr></thead>\n<tbody>\n",
    );
    for a in attempts {
        let outcome = match (&a.class, a.exit) {
            (Some(c), Some(x)) => format!("{} ({}, exit {x})", esc(&a.state), esc(c)),
            (Some(c), None) => format!("{} ({})", esc(&a.state), esc(c)),
            _ => esc(&a.state),
        };
        let _ = writeln!(
            out,
            "<tr><th scope=\"row\"><code>{step}</code>{item}</th><td>{round}</td><td>{att}</td><td class=\"attempt-{state}\">{outcome}</td>\
             <td>{started}</td><td>{commit}</td><td><a href=\"/api/missions/{m}/logs/{step}\">log</a></td></tr>",
            step = esc(&a.step),
            item = a
                .item
                .as_deref()
                .map(|i| format!(" <span class=\"muted\">({})</span>", esc(i)))
                .unwrap_or_default(),
            round = a.round,
            att = a.attempt,
            state = esc(&a.state),
            started = time(&a.started),
            commit = a
                .commit
                .as_deref()
                .map(|c| format!("<code>{}</code>", esc(c.get(..10).unwrap_or(c))))
                .unwrap_or_else(|| "–".into()),
            m = esc(mission),
        );
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// The desk theme's tokens as CSS, made once: loading a theme compiles all its templates, which
/// took longer than the rest of the page. Made again when the vault's own `themes/` changes.
fn desk_tokens(vault: &crate::vault::Vault) -> Result<String, crate::render::theme::ThemeError> {
    use std::sync::Mutex;
    use std::time::SystemTime;
    static MADE: Mutex<Option<(Option<SystemTime>, String)>> = Mutex::new(None);
    let stamp = [
        "themes",
        "themes/desk",
        "themes/desk/tokens.json",
        "themes/base/tokens.json",
    ]
    .iter()
    .filter_map(|p| {
        std::fs::metadata(vault.root().join(p))
            .and_then(|m| m.modified())
            .ok()
    })
    .max();
    if let Ok(made) = MADE.lock()
        && let Some((at, css)) = made.as_ref()
        && *at == stamp
    {
        return Ok(css.clone());
    }
    let css = crate::render::tokens_css(vault, "desk")?;
    if let Ok(mut made) = MADE.lock() {
        *made = Some((stamp, css.clone()));
    }
    Ok(css)
}

/// `GET /control/{file}`: the control plane's own script, style and the desk theme's tokens.
pub(super) async fn asset(State(api): State<Api>, Path(file): Path<String>) -> Response {
    let (bytes, kind): (Vec<u8>, &'static str) = match file.as_str() {
        "tokens.css" => {
            let vault = api.daemon.vault().clone();
            match tokio::task::spawn_blocking(move || desk_tokens(&vault)).await {
                Ok(Ok(css)) => (css.into_bytes(), "text/css; charset=utf-8"),
                Ok(Err(e)) => return failed(e),
                Err(e) => return failed(e),
            }
        }
        _ => {
            let Some((_, bytes)) = crate::embedded::CONTROL.iter().find(|(p, _)| *p == file) else {
                return super::api::error(StatusCode::NOT_FOUND, "not_found", "no such file");
            };
            let kind = if file.ends_with(".js") {
                "text/javascript; charset=utf-8"
            } else if file.ends_with(".css") {
                "text/css; charset=utf-8"
            } else {
                "application/octet-stream"
            };
            (bytes.to_vec(), kind)
        }
    };
    let mut r = bytes.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // The binary is the version: revalidated by a reload, cheap either way.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}
