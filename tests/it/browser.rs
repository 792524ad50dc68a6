//! A real browser on a served site: Debian's headless `chromium`, driven over the Chrome DevTools
//! Protocol, loads a page from `quire serve`, searches for a note with the search box, follows a
//! wikilink, sees an edited note reload by itself, and saves a screenshot.
//!
//! Without `chromium` on the PATH the test says so and passes, unless `QUIRE_REQUIRE_BROWSER=1`
//! (which `.ci/run` sets after installing it).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{VaultTest, isolated};

/// A process killed when dropped, so a failing test leaves nothing running.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Chrome DevTools Protocol session with one page.
struct Page {
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next: u64,
}

impl Page {
    fn call(&mut self, method: &str, params: Value) -> Value {
        match self.try_call(method, params) {
            Ok(v) => v,
            Err(e) => panic!("{method} failed: {e}"),
        }
    }

    /// Like `call`, but hands back the protocol's error instead of failing the test.
    fn try_call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next += 1;
        let id = self.next;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.ws.send(tungstenite::Message::text(msg)).unwrap();
        loop {
            let reply = self.ws.read().unwrap();
            let Ok(text) = reply.to_text() else { continue };
            let v: Value = serde_json::from_str(text).unwrap();
            if v["id"] == id {
                return match v.get("error") {
                    Some(e) => Err(e.clone()),
                    None => Ok(v["result"].clone()),
                };
            }
        }
    }

    /// Evaluates a JavaScript expression in the page and returns its value.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(r.get("exceptionDetails").is_none(), "`{expr}` threw: {r}");
        r["result"]["value"].clone()
    }

    /// Waits until `expr` is truthy in the page. An evaluation that fails because the page is
    /// navigating (a click or a live reload) counts as "not yet".
    fn wait_for(&mut self, expr: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self.try_call(
                "Runtime.evaluate",
                json!({ "expression": expr, "returnByValue": true }),
            );
            if v.is_ok_and(|v| v["result"]["value"].as_bool() == Some(true)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} (`{expr}`)"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks the first element matching `selector`. The click may navigate away before the
    /// evaluation answers, so only a missing element fails the test.
    fn click(&mut self, selector: &str) {
        let expr = format!(
            "(() => {{ const e = document.querySelector({selector:?}); if (!e) return false; setTimeout(() => e.click(), 0); return true; }})()"
        );
        assert_eq!(self.eval(&expr), json!(true), "nothing matches {selector}");
    }

    /// Presses one key as a keyboard would (key down, key up), to the focused element.
    fn press(&mut self, key: &str) {
        let (code, text) = match key {
            "Tab" => (9, ""),
            "Enter" => (13, "\r"),
            "Escape" => (27, ""),
            other => panic!("no key code for {other}"),
        };
        // A key that types text is a `keyDown`; one that only moves or dismisses is `rawKeyDown`.
        let kind = if text.is_empty() {
            "rawKeyDown"
        } else {
            "keyDown"
        };
        self.call(
            "Input.dispatchKeyEvent",
            json!({ "type": kind, "key": key, "code": key, "text": text,
                    "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code }),
        );
        self.call(
            "Input.dispatchKeyEvent",
            json!({ "type": "keyUp", "key": key, "code": key,
                    "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code }),
        );
    }

    /// Presses Tab until the focus is on the element with `id`, as a keyboard user gets there.
    fn tab_to(&mut self, id: &str) -> usize {
        for presses in 0..60 {
            if self.eval("document.activeElement ? document.activeElement.id : ''") == json!(id) {
                return presses;
            }
            self.press("Tab");
        }
        panic!("60 presses of Tab never reached #{id}");
    }

    fn location(&mut self) -> String {
        self.eval("window.location.pathname")
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

/// A GET over HTTP/1.1; the body, read to its `Content-Length` (chromium keeps the connection
/// open). Retried briefly while the answer is empty: chromium lists its page a moment after it
/// starts listening.
fn http_get(host: &str, path: &str) -> String {
    for _ in 0..50 {
        let s = TcpStream::connect(host).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut w = s.try_clone().unwrap();
        write!(
            w,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut r = BufReader::new(s);
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        let body = String::from_utf8(body).unwrap();
        if body.contains("webSocketDebuggerUrl") {
            return body;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no answer from http://{host}{path}");
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH")?
                .to_str()?
                .split(':')
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
        })
}

/// Headless chromium with the DevTools Protocol on a free port, and a session with its page.
/// Its stderr is drained by a thread (a full pipe would stall it) that passes on the DevTools
/// address.
fn open_browser(browser: &Path, t: &VaultTest) -> (Killed, Page) {
    let profile = t.tmp.path().join("chromium-profile");
    let mut chrome = Killed(
        Command::new(browser)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1200,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = BufReader::new(chrome.0.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Some((_, rest)) = line.split_once("DevTools listening on ws://") {
                let _ = tx.send(rest.split('/').next().unwrap_or("").to_owned());
            }
        }
    });
    let devtools = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("chromium did not print its DevTools address");
    let targets: Value = serde_json::from_str(&http_get(&devtools, "/json/list")).unwrap();
    let ws_url = targets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "page")
        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        .expect("a page target")
        .to_owned();
    let (ws, _) = tungstenite::connect(ws_url.as_str()).unwrap();
    let mut page = Page { ws, next: 0 };
    page.call("Page.enable", json!({}));
    page.call("Runtime.enable", json!({}));
    (chrome, page)
}

/// Skips (or, with `QUIRE_REQUIRE_BROWSER=1`, fails) without chromium.
fn chromium_or_skip() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        assert!(
            std::env::var("QUIRE_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "QUIRE_REQUIRE_BROWSER=1 but no chromium on the PATH; install Debian's `chromium`"
        );
        eprintln!(
            "skipping the browser test: no `chromium` on the PATH (apt-get install chromium; .ci/run does)"
        );
    }
    found
}

#[test]
fn a_mission_card_served_by_the_daemon_shows_where_the_mission_runs() {
    let Some(browser) = chromium_or_skip() else {
        return;
    };
    let t = crate::missions::engine_vault(&[("plan", "echo planned > PLAN.md")]);
    let toml = t
        .read("quire.toml")
        .replace("themes = [\"paper\"]", "themes = [\"paper\", \"desk\"]");
    t.commit(&[("quire.toml", &toml)], "the dashboard too");
    let d = crate::daemon::start_env(&t, &[]);
    let b = crate::missions::brief("moon-1", json!([{ "step": "plan", "uses": "plan" }]));
    let auth = format!("Bearer {}", crate::daemon::token(&t));
    let (status, _, _) = crate::daemon::http(
        &d.addr,
        "POST",
        "/api/missions",
        &[("Authorization", &auth)],
        &serde_json::to_vec(&b).unwrap(),
    );
    assert_eq!(status, 200);
    crate::daemon::wait_until("the decision", Duration::from_secs(60), || {
        crate::daemon::get_json(&d.addr, "/api/decisions").1["decisions"][0]["id"] == "moon-1.r1"
    });
    crate::daemon::wait_until("the mission page", Duration::from_secs(60), || {
        crate::daemon::http(&d.addr, "GET", "/site/desk/missions/moon-1/", &[], b"").0 == 200
    });
    let (_chrome, mut page) = open_browser(&browser, &t);
    let url = format!("http://{}/site/desk/missions/moon-1/", d.addr);
    page.call("Page.navigate", json!({ "url": url }));
    page.wait_for(
        "document.readyState === 'complete' && !!document.querySelector('[data-mission-run]') && !document.querySelector('[data-mission-run]').hidden",
        "the mission's live state",
    );
    let line = page.eval("document.querySelector('[data-mission-run]').textContent");
    assert!(
        line.as_str()
            .unwrap()
            .contains("Waiting for a decision: moon-1.r1"),
        "{line}"
    );
    // Approved over the API: the page, loaded again, says so.
    let (status, _, _) = crate::daemon::http(
        &d.addr,
        "POST",
        "/api/decisions/moon-1.r1/resolve",
        &[("Authorization", &auth)],
        br#"{"decision": "approve"}"#,
    );
    assert_eq!(status, 200);
    page.call("Page.navigate", json!({ "url": url }));
    page.wait_for(
        "document.readyState === 'complete' && /Mission (promoted|completed)/.test((document.querySelector('[data-mission-run]') || {}).textContent || '')",
        "the promoted state",
    );
}

#[test]
fn a_browser_searches_follows_a_wikilink_and_sees_a_live_edit() {
    let Some(browser) = chromium_or_skip() else {
        return;
    };
    let t = VaultTest::new();
    t.write(
        "02_PROJECTS/Garden Plan.md",
        "# Garden plan\n\nRead the [[Seed Catalogue]] first.\n\n- [ ] Dig 📅 2026-04-02\n",
    );
    t.write(
        "02_PROJECTS/Seed Catalogue.md",
        "# Seed Catalogue\n\nHeirloom tomatoes and beans.\n",
    );
    t.write("03_NOTES/Other.md", "# Other\n\nNothing about seeds.\n");

    // quire serve on a free port; its first line says where.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quire"));
    cmd.current_dir(&t.root)
        .args(["serve", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    isolated(&mut cmd, t.tmp.path());
    let mut server = Killed(cmd.spawn().unwrap());
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();

    let (chrome, mut page) = open_browser(&browser, &t);

    // The front page loads, with its script.
    page.call("Page.navigate", json!({ "url": base }));
    page.wait_for(
        "document.readyState === 'complete' && !!document.querySelector('[data-search-input]')",
        "the front page",
    );

    // Type into the search box; the index is fetched and matching notes are listed.
    page.eval("document.querySelector('[data-search-input]').focus()");
    page.call("Input.insertText", json!({ "text": "catalogue" }));
    page.wait_for(
        "document.querySelectorAll('[data-search-hit]').length > 0",
        "search results",
    );
    let first = page.eval("document.querySelector('[data-search-hit]').textContent");
    assert!(
        first.as_str().unwrap().starts_with("Seed Catalogue"),
        "first hit: {first}"
    );
    let hits = page.eval("Array.from(document.querySelectorAll('[data-search-hit]')).map(a => a.firstChild.textContent).join('|')");
    assert_eq!(
        hits,
        json!("Seed Catalogue|Garden plan"),
        "title matches first, then text matches; Other does not match"
    );

    // Enter opens the first hit.
    for kind in ["keyDown", "keyUp"] {
        page.call(
            "Input.dispatchKeyEvent",
            json!({ "type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13 }),
        );
    }
    page.wait_for("window.location.pathname.endsWith('/02_projects/seed-catalogue/') && document.readyState === 'complete'", "the search hit's page");

    // Its backlink leads to the garden plan, whose wikilink leads back.
    page.click(".backlinks a");
    page.wait_for("window.location.pathname.endsWith('/02_projects/garden-plan/') && document.readyState === 'complete'", "the backlink's page");
    let link = page.eval("document.querySelector('a.wikilink').textContent");
    assert_eq!(link, json!("Seed Catalogue"));
    page.click("a.wikilink");
    page.wait_for("window.location.pathname.endsWith('/02_projects/seed-catalogue/') && document.readyState === 'complete'", "the wikilink's page");
    assert!(page.location().ends_with("/seed-catalogue/"));

    // Editing the note updates the open page by itself (live reload).
    page.wait_for("typeof EventSource !== 'undefined'", "EventSource");
    std::thread::sleep(Duration::from_millis(300)); // let the page subscribe to the reload events
    let started = Instant::now();
    t.write(
        "02_PROJECTS/Seed Catalogue.md",
        "# Seed Catalogue\n\nHeirloom tomatoes, beans and sweet peas.\n",
    );
    page.wait_for(
        "document.readyState === 'complete' && document.body.textContent.includes('sweet peas')",
        "the live reload",
    );
    eprintln!("live reload showed the edit after {:?}", started.elapsed());

    // A screenshot of where we ended up, kept in target/ for people to look at.
    let shot = page.call("Page.captureScreenshot", json!({ "format": "png" }));
    let png = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        shot["data"].as_str().unwrap(),
    )
    .unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "a real screenshot"
    );
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("browser-search-and-wikilink.png");
    std::fs::write(&file, png).unwrap();
    eprintln!("screenshot saved to {}", file.display());

    drop(page);
    drop(chrome);
    drop(server);
}

/// Mission control in the browser: a brief posted elsewhere appears and moves step by step without
/// a reload; a wrong token is refused and asked for again; the right one approves the decision
/// from the page, and the promotion lands; the daemon killed and restarted, the page catches up
/// on what it missed.
#[test]
fn mission_control_follows_a_mission_and_approves_it_from_the_page() {
    let Some(browser) = chromium_or_skip() else {
        return;
    };
    let t = crate::missions::engine_vault(&[
        ("plan", "sleep 1; echo planned > PLAN.md"),
        ("build", "sleep 1; echo built > BUILD.md"),
    ]);
    let d = crate::daemon::start_env(&t, &[]);
    let addr = d.addr.clone();
    let (_chrome, mut page) = open_browser(&browser, &t);
    page.call("Page.navigate", json!({ "url": format!("http://{addr}/") }));
    page.wait_for(
        "document.readyState === 'complete' && document.querySelector('#live').textContent === 'Live'",
        "the live stream",
    );
    // A mark that a reload would wipe.
    page.eval("window.__sameDocument = true");

    let b = crate::missions::brief(
        "moon-1",
        json!([{ "step": "plan", "uses": "plan" }, { "step": "build", "uses": "build" }]),
    );
    let auth = format!("Bearer {}", crate::daemon::token(&t));
    let (status, _, _) = crate::daemon::http(
        &addr,
        "POST",
        "/api/missions",
        &[("Authorization", &auth)],
        &serde_json::to_vec(&b).unwrap(),
    );
    assert_eq!(status, 200);
    // The mission appears and moves: record every (state, progress) the row shows.
    page.eval(
        "window.__seen = []; setInterval(() => { const r = document.querySelector('#mission-moon-1'); \
         if (r) { const s = r.dataset.state + ' ' + r.querySelector('progress').value; \
         if (window.__seen[window.__seen.length - 1] !== s) window.__seen.push(s); } }, 20)",
    );
    page.wait_for(
        "!!document.querySelector('#mission-moon-1[data-state=awaiting_decision]')",
        "the mission to wait for a decision",
    );
    // The recorder samples on its own clock: let it see the last state too.
    page.wait_for(
        "window.__seen[window.__seen.length - 1] === 'awaiting_decision 2'",
        "the recorder to see the decision",
    );
    let seen = page.eval("window.__seen");
    let seen: Vec<&str> = seen
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        seen.contains(&"running 0") && seen.contains(&"running 1"),
        "{seen:?}"
    );
    assert_eq!(seen.last(), Some(&"awaiting_decision 2"), "{seen:?}");
    assert_eq!(
        page.eval("window.__sameDocument === true"),
        json!(true),
        "the page reloaded"
    );
    // The decision is in the inbox, with the sandbox's changes, and the bell rang.
    let approve = "form[data-action='/api/decisions/moon-1.r1/resolve'] button[value=approve]";
    page.wait_for(
        &format!("!!document.querySelector(\"{approve}\")"),
        "the decision card",
    );
    let files = page.eval("document.querySelector('.decision .files').textContent");
    assert!(files.as_str().unwrap().contains("BUILD.md"), "{files}");
    page.wait_for("document.title.startsWith('(')", "the title's count");

    // A wrong token: refused, said so, asked for again; nothing decided.
    page.eval("sessionStorage.setItem('quire-token', 'not-the-token')");
    page.click(approve);
    page.wait_for(
        "document.querySelector('#token-dialog').open && /refused/.test(document.querySelector('#token-error').textContent)",
        "the refusal of a wrong token",
    );
    assert_eq!(
        crate::daemon::get_json(&addr, "/api/decisions").1["decisions"][0]["id"],
        "moon-1.r1"
    );
    // Events that arrive while the dialog waits would refresh the inbox; the form in flight must
    // survive them, or the outcome lands in a detached copy nobody sees.
    let (status, _, _) = crate::daemon::http(
        &addr,
        "POST",
        "/api/events",
        &[("Authorization", &auth)],
        br#"{"type": "mission.nudged", "subject": "moon-1"}"#,
    );
    assert_eq!(status, 201);
    page.wait_for(
        "!!document.querySelector('#events li[data-type=\"mission.nudged\"]')",
        "the nudge to arrive",
    );
    std::thread::sleep(Duration::from_millis(300));
    // The right one: the decision goes through and the page says what happened.
    let token = crate::daemon::token(&t);
    page.eval(&format!(
        "document.querySelector('#token-input').value = {token:?}; document.querySelector('#token-form').requestSubmit(); true"
    ));
    page.wait_for(
        "/Promoted as commit [0-9a-f]{10}/.test(document.querySelector(\"form[data-action='/api/decisions/moon-1.r1/resolve'] .outcome\").textContent)",
        "the promotion's outcome",
    );
    page.wait_for(
        "!!document.querySelector('#mission-moon-1[data-state=promoted], #mission-moon-1[data-state=completed]')",
        "the mission row to show the promotion",
    );
    assert!(t.exists("BUILD.md") || t.git(&["show", "main:BUILD.md"]).contains("built"));
    assert_eq!(
        page.eval("sessionStorage.getItem('quire-token')"),
        json!(token)
    );

    // The daemon dies and comes back on the same address; what happened meanwhile is replayed.
    drop(d);
    page.wait_for(
        "document.querySelector('#live').textContent !== 'Live'",
        "the page to notice",
    );
    let d = crate::daemon::start_on(&t, &addr, &[], Stdio::null());
    let (status, _, _) = crate::daemon::http(
        &d.addr,
        "POST",
        "/api/events",
        &[("Authorization", &auth)],
        br#"{"type": "test.while_away", "subject": "caught-up"}"#,
    );
    assert_eq!(status, 201);
    page.wait_for(
        "!!document.querySelector('#events li[data-type=\"test.while_away\"]')",
        "the event sent while the page was away",
    );
    assert_eq!(page.eval("window.__sameDocument === true"), json!(true));
}

/// axe-core (the engine behind Lighthouse's accessibility audit), from npm: `.ci/run` installs it
/// into `target/axe/`; `QUIRE_AXE` may name another copy of `axe.min.js`.
fn axe_or_skip() -> Option<String> {
    let path = std::env::var_os("QUIRE_AXE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/axe/node_modules/axe-core/axe.min.js")
        });
    match std::fs::read_to_string(&path) {
        Ok(source) => Some(source),
        Err(_) => {
            assert!(
                std::env::var("QUIRE_REQUIRE_AXE").as_deref() != Ok("1"),
                "QUIRE_REQUIRE_AXE=1 but no axe-core at {}; `npm install --prefix target/axe axe-core@4.14.1`",
                path.display()
            );
            eprintln!(
                "skipping the accessibility audit: no axe-core at {} (`npm install --prefix target/axe axe-core@4.14.1`; .ci/run does)",
                path.display()
            );
            None
        }
    }
}

/// Every critical or serious violation axe finds on the page at `url`, one line each.
fn audit(page: &mut Page, axe: &str, url: &str) -> Vec<String> {
    page.call("Page.navigate", json!({ "url": url }));
    page.wait_for(
        &format!("document.readyState === 'complete' && location.href === {url:?}"),
        url,
    );
    // Injected per page (a navigation drops it); CSP is bypassed for the injection only.
    page.call(
        "Runtime.evaluate",
        json!({ "expression": axe, "returnByValue": true }),
    );
    let found = page.eval(
        "axe.run(document, { resultTypes: ['violations'] }).then(r => r.violations \
         .filter(v => v.impact === 'critical' || v.impact === 'serious') \
         .map(v => v.impact + ' ' + v.id + ': ' + v.help + ' at ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | ')))",
    );
    found
        .as_array()
        .unwrap()
        .iter()
        .map(|v| format!("{url}: {}", v.as_str().unwrap_or("")))
        .collect()
}

/// SPEC §10 and the issue's accessibility bar: every page of both built-in themes (paper and desk,
/// over a vault with every kind of page and task) and of mission control passes axe-core with no
/// critical or serious violation, in the light and the dark scheme.
#[test]
fn every_page_of_both_themes_and_mission_control_passes_axe() {
    let Some(browser) = chromium_or_skip() else {
        return;
    };
    let Some(axe) = axe_or_skip() else {
        return;
    };
    let t = crate::render::rich_vault();
    let today = chrono::Local::now().date_naive();
    t.write(
        "03_NOTES/Today.md",
        &format!(
            "# Today\n\n- [ ] Due today 📅 {today}\n- [ ] Due soon 📅 {}\n- [ ] Late 📅 2020-01-01\n- [x] Done ✅ {today}\n",
            today + chrono::Duration::days(3)
        ),
    );
    let mut toml = t.read("quire.toml");
    toml = toml.replace("themes = [\"paper\"]", "themes = [\"paper\", \"desk\"]");
    toml.push_str("\n[missions.commands]\nplan = \"echo planned > PLAN.md\"\n");
    t.commit(&[("quire.toml", &toml)], "both themes, and a catalog");
    let d = crate::daemon::start(&t);
    let auth = format!("Bearer {}", crate::daemon::token(&t));
    let b = crate::missions::brief("moon-1", json!([{ "step": "plan", "uses": "plan" }]));
    let (status, _, _) = crate::daemon::http(
        &d.addr,
        "POST",
        "/api/missions",
        &[("Authorization", &auth)],
        &serde_json::to_vec(&b).unwrap(),
    );
    assert_eq!(status, 200);
    crate::daemon::wait_until("the decision", Duration::from_secs(60), || {
        crate::daemon::get_json(&d.addr, "/api/decisions").1["decisions"][0]["id"] == "moon-1.r1"
    });
    crate::daemon::wait_until("both sites", Duration::from_secs(60), || {
        ["paper", "desk"]
            .iter()
            .all(|th| t.exists(&format!("_site/{th}/03_notes/today/index.html")))
            && t.exists("_site/desk/missions/moon-1/index.html")
    });
    let mut urls = vec![
        format!("http://{}/", d.addr),
        format!("http://{}/control/missions/moon-1", d.addr),
    ];
    for theme in ["paper", "desk"] {
        let root = t.path(&format!("_site/{theme}"));
        let mut pages: Vec<String> = walkdir::WalkDir::new(&root)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "html"))
            .map(|e| {
                let rel = e
                    .path()
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let rel = rel.strip_suffix("index.html").unwrap_or(&rel).to_owned();
                format!("http://{}/site/{theme}/{rel}", d.addr)
            })
            .collect();
        pages.sort();
        assert!(pages.len() > 10, "{theme}: {pages:?}");
        urls.extend(pages);
    }
    let (_chrome, mut page) = open_browser(&browser, &t);
    page.call("Page.setBypassCSP", json!({ "enabled": true }));
    let mut violations = Vec::new();
    for scheme in ["light", "dark"] {
        page.call(
            "Emulation.setEmulatedMedia",
            json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] }),
        );
        for url in &urls {
            violations.extend(
                audit(&mut page, &axe, url)
                    .into_iter()
                    .map(|v| format!("[{scheme}] {v}")),
            );
        }
    }
    assert!(
        violations.is_empty(),
        "{} critical or serious accessibility violations on {} pages:\n{}",
        violations.len(),
        urls.len() * 2,
        violations.join("\n")
    );
}

/// The rest of SPEC §10's bar for mission control, on a phone-sized screen (360 px): a running step
/// is sent a message from the page by keyboard alone, and reads it from `$QUIRE_INBOX` while it
/// runs; nothing is wider than the screen and axe finds nothing there; and with scripts off the
/// read-only views still show the missions, the decision with its files, the events and the log.
#[test]
fn mission_control_by_keyboard_on_a_narrow_screen_and_without_scripts() {
    let Some(browser) = chromium_or_skip() else {
        return;
    };
    let axe = axe_or_skip();
    let t = crate::missions::engine_vault(&[(
        "listen",
        "echo listening; i=0; while [ $i -lt 1200 ]; do if [ -s \"$QUIRE_INBOX\" ]; then cat \"$QUIRE_INBOX\" > HEARD.md; echo heard; exit 0; fi; sleep 0.05; i=$((i+1)); done; exit 3",
    )]);
    let d = crate::daemon::start_env(&t, &[]);
    let addr = d.addr.clone();
    let auth = format!("Bearer {}", crate::daemon::token(&t));
    let b = crate::missions::brief("talk", json!([{ "step": "listen", "uses": "listen" }]));
    let (status, _, _) = crate::daemon::http(
        &addr,
        "POST",
        "/api/missions",
        &[("Authorization", &auth)],
        &serde_json::to_vec(&b).unwrap(),
    );
    assert_eq!(status, 200);
    crate::daemon::wait_until("the step to listen", Duration::from_secs(30), || {
        let (_, a) = crate::daemon::get_json(&addr, "/api/agents");
        a["agents"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["mission"] == "talk" && x["last_line"] == "listening")
        })
    });

    let (_chrome, mut page) = open_browser(&browser, &t);
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 360, "height": 740, "deviceScaleFactor": 1, "mobile": true }),
    );
    let mission = format!("http://{addr}/control/missions/talk");
    page.call("Page.navigate", json!({ "url": mission }));
    page.wait_for(
        "document.readyState === 'complete' && document.querySelector('#live').textContent === 'Live' \
         && !document.querySelector(\"form[data-kind=inject] button\").disabled",
        "the mission page, live",
    );

    // By keyboard alone: Tab to the message box, type, Tab to its button, Enter; the token is
    // asked for with the focus in its box, typed, and Enter sends both.
    let presses = page.tab_to("inject-message");
    assert!(presses > 0, "the message box had the focus before any key");
    assert_eq!(
        page.eval("getComputedStyle(document.activeElement).outlineStyle !== 'none'"),
        json!(true),
        "the focused box shows no focus ring"
    );
    page.call("Input.insertText", json!({ "text": "hello from the page" }));
    page.press("Tab");
    assert_eq!(
        page.eval("document.activeElement.textContent"),
        json!("Send to the running step")
    );
    page.press("Enter");
    page.wait_for(
        "document.querySelector('#token-dialog').open && document.activeElement.id === 'token-input'",
        "the token dialog, focused",
    );
    page.call(
        "Input.insertText",
        json!({ "text": crate::daemon::token(&t) }),
    );
    page.press("Enter");
    page.wait_for(
        "document.querySelector(\"form[data-kind=inject] .outcome\").textContent === 'Sent to the running step.'",
        "the message's outcome",
    );
    // The step read it while it ran, and its work is in the sandbox.
    crate::daemon::wait_until("the decision", Duration::from_secs(60), || {
        crate::daemon::get_json(&addr, "/api/decisions").1["decisions"][0]["id"] == "talk.r1"
    });
    assert!(
        t.git(&["show", "mission/talk:HEARD.md"])
            .contains("hello from the page"),
        "{}",
        t.git(&["show", "mission/talk:HEARD.md"])
    );
    // Escape closes the notifications drawer and gives the focus back to its button.
    page.eval("document.querySelector('#bell').focus(); true");
    page.press("Enter");
    page.wait_for(
        "!document.querySelector('#drawer').hidden",
        "the drawer to open",
    );
    page.press("Escape");
    page.wait_for(
        "document.querySelector('#drawer').hidden && document.activeElement.id === 'bell'",
        "the drawer to close with the focus back on the bell",
    );

    // 360 px wide: no page is wider than the screen (tables scroll inside their panels).
    let overview = format!("http://{addr}/");
    for url in [&overview, &mission] {
        page.call("Page.navigate", json!({ "url": url }));
        page.wait_for(
            &format!("document.readyState === 'complete' && location.href === {url:?}"),
            url,
        );
        assert_eq!(
            page.eval("document.documentElement.scrollWidth <= window.innerWidth"),
            json!(true),
            "{url} is {} px wide on a 360 px screen",
            page.eval("document.documentElement.scrollWidth")
        );
    }
    if let Some(axe) = &axe {
        page.call("Page.setBypassCSP", json!({ "enabled": true }));
        let mut found = audit(&mut page, axe, &overview);
        found.extend(audit(&mut page, axe, &mission));
        assert!(found.is_empty(), "at 360 px:\n{}", found.join("\n"));
        page.call("Page.setBypassCSP", json!({ "enabled": false }));
    }

    // Scripts off: the read-only views still say what is going on.
    page.call(
        "Emulation.setScriptExecutionDisabled",
        json!({ "value": true }),
    );
    page.call("Page.navigate", json!({ "url": overview }));
    page.wait_for(
        &format!("document.readyState === 'complete' && location.href === {overview:?}"),
        "the overview without scripts",
    );
    assert_eq!(
        page.eval("typeof window.quireEvents"),
        json!("undefined"),
        "the page's script ran"
    );
    let seen = page.eval(
        "({ state: (document.querySelector('#mission-talk') || {dataset: {}}).dataset.state, \
            files: (document.querySelector('.decision .files') || {}).textContent || '', \
            events: document.querySelectorAll('#events li').length, \
            live: document.querySelector('#live').textContent, \
            bell: document.querySelector('#bell').hidden })",
    );
    assert_eq!(seen["state"], "awaiting_decision", "{seen}");
    assert!(
        seen["files"].as_str().unwrap().contains("HEARD.md"),
        "{seen}"
    );
    assert!(seen["events"].as_u64().unwrap() > 0, "{seen}");
    assert!(
        seen["live"].as_str().unwrap().contains("JavaScript"),
        "{seen}"
    );
    assert_eq!(seen["bell"], true, "{seen}");
    page.call("Page.navigate", json!({ "url": mission }));
    page.wait_for(
        &format!("document.readyState === 'complete' && location.href === {mission:?}"),
        "the mission page without scripts",
    );
    let log = page.eval("document.querySelector('#log').textContent");
    assert!(
        log.as_str().unwrap().contains("listening") && log.as_str().unwrap().contains("heard"),
        "{log}"
    );
    assert_eq!(
        page.eval("document.querySelector('noscript') !== null && document.body.innerText.includes('Acting needs JavaScript')"),
        json!(true)
    );
}

/// A page left for another stays in the browser's back/forward cache. It must let go of its event
/// stream there: a browser opens at most six connections to a host, so pages that kept theirs
/// would make the seventh click wait for the daemon to drop one. Shown again from the cache, the
/// page takes its stream up again after the last event it saw.
#[test]
fn a_page_left_for_another_lets_go_of_its_event_stream_and_takes_it_up_again() {
    let Some(browser) = chromium_or_skip() else {
        return;
    };
    let t = VaultTest::new();
    let d = crate::daemon::start(&t);
    let addr = d.addr.clone();
    let streams = || {
        let (_, _, body) = crate::daemon::http(&addr, "GET", "/metrics", &[], b"");
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix("quire_sse_clients "))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .expect("quire_sse_clients in /metrics")
    };
    let (_chrome, mut page) = open_browser(&browser, &t);
    for n in 0..8 {
        let url = format!("http://{addr}/?n={n}");
        page.call("Page.navigate", json!({ "url": url }));
        page.wait_for(
            &format!("location.href === {url:?} && document.querySelector('#live').textContent === 'Live'"),
            &url,
        );
        if n == 6 {
            page.eval("window.__kept = true");
        }
    }
    crate::daemon::wait_until(
        "the pages left behind to close their streams",
        Duration::from_secs(30),
        || streams() == 1,
    );
    // Back to the page marked; an event sent while it was away reaches it.
    let auth = format!("Bearer {}", crate::daemon::token(&t));
    let (status, _, _) = crate::daemon::http(
        &addr,
        "POST",
        "/api/events",
        &[("Authorization", &auth)],
        br#"{"type": "test.while_cached", "subject": "cached"}"#,
    );
    assert_eq!(status, 201);
    page.eval("history.back(); true");
    page.wait_for(
        &format!(
            "location.href === {:?} && document.querySelector('#live').textContent === 'Live'",
            format!("http://{addr}/?n=6")
        ),
        "the page shown again",
    );
    assert_eq!(
        page.eval("window.__kept === true"),
        json!(true),
        "the page was loaded again, not shown from the back/forward cache"
    );
    page.wait_for(
        "!!document.querySelector('#events li[data-type=\"test.while_cached\"]')",
        "the event sent while the page was cached",
    );
}

/// Runners in mission control (issue 19): each runner with its state and what it runs, and the
/// steps waiting for one, said plainly when no runner has the labels a step asks for. The part
/// follows the events: a runner that registers and takes the step shows without a reload.
#[test]
fn mission_control_shows_the_runners_and_the_steps_waiting_for_them() {
    use crate::runners::{decisions, post_brief, runner_token, runner_vault, start_runner_with};
    let Some(browser) = chromium_or_skip() else {
        return;
    };
    let (t, _remote) = runner_vault(
        &[("gpu", "echo started; sleep 2; echo rendered > FRAME.md")],
        "5s",
    );
    let token = runner_token(&t, "box-1");
    let d = crate::daemon::start_env(&t, &[]);
    let (_chrome, mut page) = open_browser(&browser, &t);
    let runners = "document.querySelector('#part-runners')";
    let open = |page: &mut Page| {
        page.call(
            "Page.navigate",
            json!({ "url": format!("http://{}/", d.addr) }),
        );
        page.wait_for(
            "document.readyState === 'complete' && document.querySelector('#live').textContent === 'Live'",
            "the live stream",
        );
    };
    open(&mut page);
    page.wait_for(
        &format!(
            "/box-1/.test({runners}.textContent) && /not started yet/.test({runners}.textContent)"
        ),
        "box-1, with a token and not started",
    );
    post_brief(
        &d,
        &t,
        &crate::missions::brief(
            "m-1",
            json!([{ "step": "render", "uses": "gpu", "runs_on": ["gpu"] }]),
        ),
    );
    page.wait_for(
        &format!(
            "!!{runners}.querySelector('table.waiting a[href=\"/control/missions/m-1\"]') \
             && /no runner has these/.test({runners}.querySelector('table.waiting').textContent)"
        ),
        "the step waiting, with nobody to take it",
    );
    let waiting = page.eval(&format!(
        "{runners}.querySelector('table.waiting').textContent"
    ));
    assert!(waiting.as_str().unwrap().contains("gpu"), "{waiting}");
    // The tables read well to everyone (axe-core, when it is here).
    if let Some(axe) = axe_or_skip() {
        page.call("Page.setBypassCSP", json!({ "enabled": true }));
        let found = audit(&mut page, &axe, &format!("http://{}/", d.addr));
        assert!(found.is_empty(), "{}", found.join("\n"));
        open(&mut page);
    }
    page.eval("window.__sameDocument = true");

    // A runner with the label starts: it shows working on the step, and the step stops waiting.
    let _r = start_runner_with(&t, &d, &token, "box-1", 1, &["gpu"]);
    page.wait_for(
        &format!(
            "(() => {{ const row = [...{runners}.querySelectorAll('table.runners tr')].find(r => /box-1/.test(r.textContent)); \
             return !!row && /working/.test(row.textContent) && /1 of 1/.test(row.textContent) \
             && !!row.querySelector('a[href=\"/control/missions/m-1\"]') && /gpu/.test(row.textContent); }})()"
        ),
        "box-1 working on m-1",
    );
    assert_eq!(
        page.eval(&format!("!!{runners}.querySelector('table.waiting')")),
        json!(false),
        "the step still shows as waiting"
    );
    crate::daemon::wait_until("the decision", Duration::from_secs(60), || {
        decisions(&d) == ["m-1.r1"]
    });
    page.wait_for(
        &format!("/idle/.test({runners}.textContent) && /0 of 1/.test({runners}.textContent)"),
        "box-1 idle again",
    );
    assert_eq!(page.eval("window.__sameDocument === true"), json!(true));
}
