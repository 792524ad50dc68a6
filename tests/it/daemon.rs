//! The daemon for real: `quire daemon` spawned on loopback over a real vault, bundles dropped into
//! the folder and posted over HTTP, kill -9 and SIGTERM, notes edited on disk, hostile requests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quire::vault::Queue;
use serde_json::{Value, json};

use crate::harness::{VaultTest, bundle, isolated};

/// A running `quire daemon`, killed when dropped.
pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) addr: String,
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start(t: &VaultTest) -> Daemon {
    start_env(t, &[])
}

pub(crate) fn start_env(t: &VaultTest, env: &[(&str, &str)]) -> Daemon {
    start_with(t, env, Stdio::null())
}

/// A daemon whose stderr goes to `stderr`.
fn start_with(t: &VaultTest, env: &[(&str, &str)], stderr: impl Into<Stdio>) -> Daemon {
    start_on(t, "127.0.0.1:0", env, stderr)
}

/// A daemon listening on `listen` (to restart one where its clients expect it).
pub(crate) fn start_on(
    t: &VaultTest,
    listen: &str,
    env: &[(&str, &str)],
    stderr: impl Into<Stdio>,
) -> Daemon {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quire"));
    cmd.current_dir(&t.root)
        .args(["daemon", "--listen", listen])
        .stdout(Stdio::piped())
        .stderr(stderr);
    isolated(&mut cmd, t.tmp.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    Daemon {
        child,
        addr,
        _stdout: stdout,
    }
}

/// One HTTP/1.1 exchange: (status, headers lowercased, body).
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    // A test may speak for another host (a forged or proxied name); otherwise the daemon's own.
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    // A large body waits for the server's go-ahead, so an early refusal (413) is read, not lost
    // to a reset.
    let large = body.len() > 1 << 20;
    if large {
        req.push_str("Expect: 100-continue\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    if large {
        let mut first = [0u8; 25];
        let n = s.read(&mut first).unwrap();
        if first[..n].starts_with(b"HTTP/1.1 100") {
            s.write_all(body).unwrap();
        } else {
            raw.extend_from_slice(&first[..n]);
        }
    } else {
        s.write_all(body).unwrap();
    }
    s.read_to_end(&mut raw).unwrap();
    if raw.starts_with(b"HTTP/1.1 100") {
        let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        raw.drain(..at + 4);
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    (status, headers, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

pub(crate) fn get_json(addr: &str, path: &str) -> (u16, Value) {
    let (status, _, body) = http(addr, "GET", path, &[], b"");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

pub(crate) fn token(t: &VaultTest) -> String {
    t.read(".env")
        .lines()
        .find_map(|l| l.strip_prefix("QUIRE_TOKEN="))
        .unwrap()
        .trim()
        .to_owned()
}

pub(crate) fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes bundles straight into pending/ (each renamed into place, as producers should).
fn drop_many(t: &VaultTest, prefix: &str, n: usize) {
    let pending = t.vault().queue_dir(Queue::Pending);
    std::fs::create_dir_all(&pending).unwrap();
    for i in 0..n {
        let id = format!("{prefix}-{i:04}");
        let b = bundle(
            &id,
            json!([{ "op": "create", "path": format!("03_NOTES/{prefix}/{id}.md"), "content": format!("# {id}\n\n- [ ] task {i}\n") }]),
        );
        let tmp = pending.join(format!(".{id}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec(&b).unwrap()).unwrap();
        std::fs::rename(&tmp, pending.join(format!("{id}.json"))).unwrap();
    }
}

fn processed_count(t: &VaultTest) -> usize {
    std::fs::read_dir(t.vault().queue_dir(Queue::Processed))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".receipt.json"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn five_hundred_dropped_bundles_are_each_applied_exactly_once() {
    let t = VaultTest::new();
    let d = start(&t);
    drop_many(&t, "burst", 500);
    wait_until("500 receipts", Duration::from_secs(120), || {
        processed_count(&t) == 500
    });
    for i in (0..500).step_by(7) {
        assert_eq!(t.commits_for(&format!("burst-{i:04}")), 1);
    }
    let commits = t.git(&[
        "rev-list",
        "--count",
        "--grep=^Contribution-Id: burst-",
        "main",
    ]);
    assert_eq!(commits.trim(), "500");
    assert!(t.queue_names(Queue::Pending).is_empty());
    assert!(t.queue_names(Queue::Processing).is_empty());
    // A run record, the index and the site followed.
    let runs: Vec<String> = std::fs::read_dir(t.path("06_RUNS"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("-pipeline.md"))
        .collect();
    assert!(!runs.is_empty());
    wait_until("the site", Duration::from_secs(30), || {
        t.exists("_site/paper/03_notes/burst/burst-0499/index.html")
    });
    let (status, tasks) = get_json(&d.addr, "/api/tasks?path=03_NOTES/burst/**");
    assert_eq!(status, 200);
    assert_eq!(tasks["tasks"].as_array().unwrap().len(), 500);
    let (status, health) = get_json(&d.addr, "/healthz");
    assert_eq!(
        (status, health["status"].as_str()),
        (200, Some("ok")),
        "{health}"
    );
    t.git(&["fsck", "--no-progress"]);
}

#[test]
fn kill_9_mid_burst_loses_nothing_and_applies_nothing_twice() {
    let t = VaultTest::new();
    let d = start(&t);
    drop_many(&t, "k", 300);
    wait_until("some progress", Duration::from_secs(60), || {
        processed_count(&t) >= 40
    });
    drop(d); // SIGKILL
    let after_kill = processed_count(&t);
    assert!(after_kill < 300, "killed mid-burst ({after_kill} done)");
    let _d = start(&t);
    wait_until("all 300", Duration::from_secs(120), || {
        processed_count(&t) == 300
    });
    for i in 0..300 {
        assert_eq!(t.commits_for(&format!("k-{i:04}")), 1, "k-{i:04}");
    }
    assert!(t.queue_names(Queue::Processing).is_empty());
    t.git(&["fsck", "--no-progress"]);
    assert_eq!(t.status(), "", "work tree and index match main");
}

#[test]
fn a_slowly_written_bundle_is_not_read_half_written() {
    let t = VaultTest::new();
    let _d = start(&t);
    let b = serde_json::to_vec(&bundle(
        "slow",
        json!([{ "op": "create", "path": "03_NOTES/Slow.md", "content": "# Slow\n" }]),
    ))
    .unwrap();
    let path = t.vault().queue_dir(Queue::Pending).join("slow.json");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&b[..b.len() / 2]).unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(path.exists(), "not claimed while half-written");
    assert!(t.queue_names(Queue::Rejected).is_empty());
    f.write_all(&b[b.len() / 2..]).unwrap();
    drop(f);
    wait_until("the bundle", Duration::from_secs(10), || {
        processed_count(&t) == 1
    });
    assert_eq!(t.read("03_NOTES/Slow.md"), "# Slow\n");

    // A file that stays broken is refused once it has settled, not waited for forever.
    std::fs::write(
        t.vault().queue_dir(Queue::Pending).join("broken.json"),
        b"{\"id\": ",
    )
    .unwrap();
    wait_until("the refusal", Duration::from_secs(10), || {
        t.queue_names(Queue::Rejected)
            .iter()
            .any(|n| n == "broken.receipt.json")
    });
}

#[test]
fn an_edited_note_reaches_the_site_without_a_commit() {
    let t = VaultTest::new();
    let d = start(&t);
    t.write("03_NOTES/Edited.md", "# Edited\n\nfirst words\n");
    let page = "/site/paper/03_notes/edited/";
    wait_until("the page", Duration::from_secs(10), || {
        let (status, _, body) = http(&d.addr, "GET", page, &[], b"");
        status == 200 && String::from_utf8_lossy(&body).contains("first words")
    });
    t.write("03_NOTES/Edited.md", "# Edited\n\nsecond thoughts\n");
    wait_until("the edit", Duration::from_secs(10), || {
        let (_, _, body) = http(&d.addr, "GET", page, &[], b"");
        String::from_utf8_lossy(&body).contains("second thoughts")
    });
    assert!(
        t.status().contains("03_NOTES/Edited.md"),
        "nothing was committed"
    );
}

/// Passes update the index for the paths they know changed. A change no event reports (here, a
/// write through a hard link outside the vault: inotify tells only the folder the write went
/// through) is found by the walk the daemon makes once it is at rest after work.
#[test]
fn a_change_no_event_reports_is_found_once_the_daemon_is_at_rest() {
    let t = VaultTest::new();
    t.write("03_NOTES/Linked.md", "# Linked\n\nfirst words\n");
    let outside = tempfile::tempdir().unwrap();
    let link = outside.path().join("linked.md");
    std::fs::hard_link(t.path("03_NOTES/Linked.md"), &link).unwrap();
    let d = start(&t);
    let page_has = |words: &str| {
        let (status, _, body) = http(&d.addr, "GET", "/site/paper/03_notes/linked/", &[], b"");
        status == 200 && String::from_utf8_lossy(&body).contains(words)
    };
    wait_until("the first build", Duration::from_secs(20), || {
        page_has("first words")
    });
    std::fs::write(&link, "# Linked\n\nwritten where nobody watches\n").unwrap();
    wait_until("the unreported change", Duration::from_secs(20), || {
        page_has("written where nobody watches")
    });
}

#[test]
fn edits_in_folders_made_after_start_are_seen() {
    // The daemon watches content folders one by one (never `_site/` or `.git/`): a folder made
    // while it runs must be watched too, or a later edit in it would wait for no scan at all.
    let t = VaultTest::new();
    let d = start(&t);
    let page_has = |page: &str, words: &str| {
        let (status, _, body) = http(&d.addr, "GET", page, &[], b"");
        status == 200 && String::from_utf8_lossy(&body).contains(words)
    };
    t.write("Later/Deep/New.md", "# New\n\nfirst words\n");
    wait_until("the new folder's note", Duration::from_secs(10), || {
        page_has("/site/paper/later/deep/new/", "first words")
    });
    // Nothing else changes now: only a watch on the new folder can tell the daemon.
    std::thread::sleep(Duration::from_millis(300));
    t.write("Later/Deep/New.md", "# New\n\nsecond thoughts\n");
    wait_until("the edit in it", Duration::from_secs(10), || {
        page_has("/site/paper/later/deep/new/", "second thoughts")
    });
    t.write("Top.md", "# Top\n\nat the root\n");
    wait_until("a note at the root", Duration::from_secs(10), || {
        page_has("/site/paper/top/", "at the root")
    });
}

#[test]
fn the_api_answers_safely_and_stays_healthy() {
    let t = VaultTest::new();
    let d = start(&t);
    let tok = token(&t);
    let auth = format!("Bearer {tok}");
    let b = serde_json::to_vec(&bundle(
        "api-1",
        json!([{ "op": "create", "path": "03_NOTES/Api.md", "content": "# Api\n\n- [ ] from the API 📅 2026-12-01\n" }]),
    ))
    .unwrap();

    // No token, a wrong token: 401, nothing queued.
    for h in [vec![], vec![("Authorization", "Bearer nope")]] {
        let (status, _, body) = http(&d.addr, "POST", "/api/contributions", &h, &b);
        assert_eq!(status, 401);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "unauthorized");
    }
    assert!(t.queue_names(Queue::Pending).is_empty());

    let (status, _, body) = http(
        &d.addr,
        "POST",
        "/api/contributions",
        &[("Authorization", &auth)],
        &b,
    );
    let receipt: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, receipt["status"].as_str()),
        (200, Some("applied")),
        "{receipt}"
    );
    assert_eq!(t.read("03_NOTES/Api.md").lines().next(), Some("# Api"));
    let (status, again) = get_json(&d.addr, "/api/contributions/api-1");
    assert_eq!(
        (status, again["commit"].clone()),
        (200, receipt["commit"].clone())
    );
    // A resend is answered from the idempotency key (the bundle id by default)...
    let (status, _, body) = http(
        &d.addr,
        "POST",
        "/api/contributions",
        &[("Authorization", &auth)],
        &b,
    );
    let resent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, resent["status"].as_str()), (200, Some("applied")));
    assert_eq!(resent["commit"], receipt["commit"]);
    // ...and under another key the pipeline itself finds it a duplicate.
    let (status, _, body) = http(
        &d.addr,
        "POST",
        "/api/contributions",
        &[("Authorization", &auth), ("Idempotency-Key", "another")],
        &b,
    );
    let dup: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, dup["status"].as_str()), (200, Some("duplicate")));
    // Other content under the applied id, under yet another key: refused, not dropped silently.
    let reused = serde_json::to_vec(&bundle(
        "api-1",
        json!([{ "op": "create", "path": "03_NOTES/Reused.md", "content": "other\n" }]),
    ))
    .unwrap();
    let (status, _, body) = http(
        &d.addr,
        "POST",
        "/api/contributions",
        &[("Authorization", &auth), ("Idempotency-Key", "a-third")],
        &reused,
    );
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("id_reused")),
        "{v}"
    );
    assert!(!t.exists("03_NOTES/Reused.md"));

    // A refused bundle: 422 with the receipt's error.
    let bad = serde_json::to_vec(&bundle(
        "api-2",
        json!([{ "op": "create", "path": "../escape.md", "content": "x" }]),
    ))
    .unwrap();
    let (status, _, body) = http(
        &d.addr,
        "POST",
        "/api/contributions",
        &[("Authorization", &auth)],
        &bad,
    );
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("unsafe_path")),
        "{v}"
    );

    // Bad and oversized bodies.
    let (status, _, body) = http(
        &d.addr,
        "POST",
        "/api/contributions",
        &[("Authorization", &auth)],
        b"{not json",
    );
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    let huge = vec![b' '; 16 * 1024 * 1024 + 10];
    let (status, _, body) = http(
        &d.addr,
        "POST",
        "/api/contributions",
        &[("Authorization", &auth)],
        &huge,
    );
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (413, Some("too_large")),
        "{v}"
    );
    let (status, v) = get_json(&d.addr, "/api/contributions/never-sent");
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // Tasks, agenda, calendar, missions, themes, metrics.
    wait_until("the task", Duration::from_secs(10), || {
        get_json(&d.addr, "/api/tasks").1["tasks"]
            .as_array()
            .is_some_and(|a| {
                a.iter().any(|t| {
                    t["text"]
                        .as_str()
                        .is_some_and(|x| x.contains("from the API"))
                })
            })
    });
    let (status, agenda) = get_json(&d.addr, "/api/agenda?today=2026-11-30&days=3");
    assert_eq!(status, 200);
    assert_eq!(agenda["upcoming"].as_array().unwrap().len(), 1, "{agenda}");
    let (status, v) = get_json(&d.addr, "/api/agenda?today=yesterday");
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("bad_query"))
    );
    let (status, headers, ics) = http(&d.addr, "GET", "/calendar.ics", &[], b"");
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("text/calendar"))
    );
    assert!(String::from_utf8_lossy(&ics).contains("BEGIN:VCALENDAR"));
    // The CLI and the API answer the same questions the same way (a mission with a sandbox, so
    // that the answer has everything in it).
    t.write(
        "01_MISSIONS/m-1/mission.md",
        "---\ntitle: Moon\ndue: 2026-12-01\n---\n- [ ] Land 📅 2026-12-01\n",
    );
    assert!(
        t.quire(&["sandbox", "create", "m-1", "--no-worktree"])
            .status
            .success()
    );
    // Rendered before the site's ETags are looked at below.
    wait_until("the mission's page", Duration::from_secs(10), || {
        http(
            &d.addr,
            "GET",
            "/site/paper/01_missions/m-1/mission/",
            &[],
            b"",
        )
        .0 == 200
    });
    wait_until("the mission", Duration::from_secs(10), || {
        get_json(&d.addr, "/api/renderer/missions?today=2026-11-30").1["missions"][0]["sandbox"]["id"]
            == "m-1"
    });
    for (args, path) in [
        (
            &["agenda", "--today", "2026-11-30", "--days", "3", "--json"][..],
            "/api/agenda?today=2026-11-30&days=3",
        ),
        (
            &["missions", "--today", "2026-11-30", "--json"][..],
            "/api/renderer/missions?today=2026-11-30",
        ),
    ] {
        let (status, api) = get_json(&d.addr, path);
        assert_eq!(status, 200, "{path}: {api}");
        let out = t.quire(args);
        let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(cli, api, "{args:?} and {path} differ");
    }
    // Themes: which have sites, where, and their last render; the CLI says the same.
    let (_, themes) = get_json(&d.addr, "/api/renderer/themes");
    let cli: Value = serde_json::from_slice(&t.quire(&["themes", "--json"]).stdout).unwrap();
    assert_eq!(
        cli, themes,
        "`quire themes --json` and /api/renderer/themes differ"
    );
    let theme = |name: &str| {
        themes["themes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {themes}"))
    };
    assert_eq!(theme("base")["site"], Value::Null, "base is only a parent");
    let paper = theme("paper");
    assert_eq!(paper["site"]["url"], "/site/paper/");
    let last = &paper["site"]["last_render"];
    assert!(last["pages"].as_u64().unwrap() > 0, "{paper}");
    assert_eq!(last["commit"].as_str(), Some(t.head().as_str()), "{paper}");
    assert!(last["at"].as_str().unwrap().ends_with('Z'));
    assert!(last["ms"].is_u64());
    let (_, _, metrics) = http(&d.addr, "GET", "/metrics", &[], b"");
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("quire_bundles_total{status=\"applied\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("quire_apply_seconds_bucket"));

    // The sites: served, with ETags; nothing outside them, nothing hidden.
    wait_until("the site", Duration::from_secs(10), || {
        http(&d.addr, "GET", "/site/paper/03_notes/api/", &[], b"").0 == 200
    });
    let (_, headers, _) = http(&d.addr, "GET", "/site/paper/", &[], b"");
    let etag = headers
        .iter()
        .find(|(k, _)| k == "etag")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(
        http(
            &d.addr,
            "GET",
            "/site/paper/",
            &[("If-None-Match", &etag)],
            b""
        )
        .0,
        304
    );
    t.write("_site/paper/.hidden", "secret");
    for path in [
        "/site/paper/../../.env",
        "/site/paper/%2e%2e/%2e%2e/.env",
        "/site/paper/..%2f..%2f.env",
        "/site/paper/.hidden",
        "/site/..%2f.git/config",
        "/site/.quire/state.db",
        "/site/paper/%00",
    ] {
        let (status, _, body) = http(&d.addr, "GET", path, &[], b"");
        assert!(status == 404 || status == 400, "{path}: {status}");
        assert!(
            !String::from_utf8_lossy(&body).contains("QUIRE_TOKEN"),
            "{path}"
        );
        assert!(!String::from_utf8_lossy(&body).contains("secret"), "{path}");
    }
    let (status, _, body) = http(&d.addr, "GET", "/site/paper/no/such/page/", &[], b"");
    assert_eq!(status, 404);
    assert!(
        String::from_utf8_lossy(&body).contains("Not found"),
        "the theme's 404 page"
    );

    // Garbage on the socket, then a healthy daemon.
    for junk in [
        &b"\x00\x01\x02 garbage\r\n\r\n"[..],
        b"GET /healthz HTTP/9.9\r\n\r\n",
        b"POST",
    ] {
        let mut s = TcpStream::connect(&d.addr).unwrap();
        let _ = s.write_all(junk);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.read_to_end(&mut sink);
    }
    let (status, health) = get_json(&d.addr, "/healthz");
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
}

#[test]
fn sigterm_finishes_and_exits_zero() {
    let t = VaultTest::new();
    let mut d = start(&t);
    drop_many(&t, "term", 50);
    // A client listening to events must not keep the daemon from stopping.
    let addr = d.addr.clone();
    let listener =
        std::thread::spawn(move || sse(&addr, None, "", 1_000_000, Duration::from_secs(60)));
    std::thread::sleep(Duration::from_millis(200));
    let pid = d.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let (raw, _) = listener.join().unwrap();
    assert!(raw.contains(" 200 OK"), "the stream was open: {raw}");
    assert!(
        t.queue_names(Queue::Processing).is_empty(),
        "nothing left half done"
    );
    // Whatever was not applied is still pending, and a new run applies it exactly once.
    let done = processed_count(&t);
    assert_eq!(
        done + t.queue_names(Queue::Pending).len(),
        50,
        "every bundle is either filed or still pending"
    );
    let _d = start(&t);
    wait_until("the rest", Duration::from_secs(60), || {
        processed_count(&t) == 50
    });
    for i in 0..50 {
        assert_eq!(t.commits_for(&format!("term-{i:04}")), 1);
    }
}

/// Reads Server-Sent Events from `/api/events` until `want` events (not comments) arrived or
/// `limit` passed: (id, event, data) each. HTTP/1.0, so the stream is not chunked.
fn sse(
    addr: &str,
    last_id: Option<&str>,
    only: &str,
    want: usize,
    limit: Duration,
) -> (String, Vec<(String, String, String)>) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req =
        format!("GET /api/events HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
    if let Some(id) = last_id {
        req.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut raw = String::new();
    let mut buf = [0u8; 8192];
    let parse = |raw: &str| -> Vec<(String, String, String)> {
        let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        body.split("\n\n")
            .filter_map(|block| {
                let (mut id, mut ev, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().into();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ev = v.trim().into();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = v.trim().into();
                    }
                }
                (!ev.is_empty() && ev.starts_with(only)).then_some((id, ev, data))
            })
            .collect()
    };
    while Instant::now() < deadline && parse(&raw).len() < want {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => {}
        }
    }
    let events = parse(&raw);
    (raw, events)
}

fn post_event(d: &Daemon, auth: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
    let mut h = vec![
        ("Authorization", auth),
        ("Content-Type", "application/json"),
    ];
    if let Some(k) = key {
        h.push(("Idempotency-Key", k));
    }
    let (status, _, body) = http(
        &d.addr,
        "POST",
        "/api/events",
        &h,
        &serde_json::to_vec(body).unwrap(),
    );
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[test]
fn events_stream_live_and_replay_after_a_disconnect() {
    let t = VaultTest::new();
    let d = start(&t);
    let auth = format!("Bearer {}", token(&t));
    let (status, _) = post_event(&d, "Bearer wrong", None, &json!({ "type": "agent.step" }));
    assert_eq!(status, 401);
    for bad in [
        json!({ "type": "" }),
        json!({ "type": "has space" }),
        json!({ "kind": "x" }),
    ] {
        let (status, v) = post_event(&d, &auth, None, &bad);
        assert_eq!(status, 400, "{bad}: {v}");
        assert!(
            matches!(
                v["error"]["code"].as_str(),
                Some("bad_event" | "invalid_json")
            ),
            "{v}"
        );
    }
    let mut seqs = Vec::new();
    for i in 0..3 {
        let (status, v) = post_event(
            &d,
            &auth,
            None,
            &json!({ "type": "agent.step", "subject": "m-1", "data": { "n": i } }),
        );
        assert_eq!(status, 201, "{v}");
        seqs.push(v["seq"].as_i64().unwrap());
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "increasing: {seqs:?}");

    // Replay after the first.
    let (raw, got) = sse(
        &d.addr,
        Some(&seqs[0].to_string()),
        "agent.",
        2,
        Duration::from_secs(5),
    );
    assert!(
        raw.contains("retry: 3000") || raw.contains("retry:3000"),
        "{raw}"
    );
    let replayed: Vec<(String, String)> = got
        .iter()
        .filter(|e| e.1 == "agent.step")
        .map(|e| (e.0.clone(), e.2.clone()))
        .collect();
    assert_eq!(replayed.len(), 2, "{got:?}");
    assert_eq!(replayed[0].0, seqs[1].to_string());
    assert!(replayed[1].1.contains("\"n\":2"));

    // Live: an event posted while connected arrives.
    let addr = d.addr.clone();
    let last = seqs[2].to_string();
    let reader =
        std::thread::spawn(move || sse(&addr, Some(&last), "agent.", 1, Duration::from_secs(10)).1);
    std::thread::sleep(Duration::from_millis(500));
    let (_, v) = post_event(&d, &auth, None, &json!({ "type": "agent.live" }));
    let live = reader.join().unwrap();
    assert_eq!(
        live.first().map(|e| e.1.as_str()),
        Some("agent.live"),
        "{live:?}"
    );
    assert_eq!(live[0].0, v["seq"].as_i64().unwrap().to_string());

    // Missed while away: replayed on reconnect, nothing twice.
    let (_, missed) = post_event(&d, &auth, None, &json!({ "type": "agent.missed" }));
    let (_, again) = sse(
        &d.addr,
        Some(&live[0].0),
        "agent.",
        2,
        Duration::from_secs(3),
    );
    assert_eq!(again.len(), 1, "once, and nothing already seen: {again:?}");
    assert_eq!(again[0].0, missed["seq"].as_i64().unwrap().to_string());

    // An id the journal does not know: reset, then what is kept.
    let (_, reset) = sse(&d.addr, Some("99999999"), "", 2, Duration::from_secs(5));
    assert_eq!(
        reset.first().map(|e| e.1.as_str()),
        Some("reset"),
        "{reset:?}"
    );

    // Pipeline events arrive too: a bundle's lifecycle, in order.
    let addr = d.addr.clone();
    let now = missed["seq"].as_i64().unwrap().to_string();
    let reader = std::thread::spawn(move || {
        sse(
            &addr,
            Some(&now),
            "contribution.",
            2,
            Duration::from_secs(20),
        )
        .1
    });
    drop_many(&t, "ev", 1);
    let got = reader.join().unwrap();
    let kinds: Vec<&str> = got.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        &kinds[..2],
        ["contribution.received", "contribution.applied"],
        "{kinds:?}"
    );
}

#[test]
fn idempotency_keys_answer_once_and_refuse_another_body() {
    let t = VaultTest::new();
    let d = start(&t);
    let auth = format!("Bearer {}", token(&t));
    let e = json!({ "type": "agent.done", "subject": "m-1" });
    let (s1, v1) = post_event(&d, &auth, Some("k-1"), &e);
    assert_eq!((s1, v1["deduped"].as_bool()), (201, Some(false)));
    let (s2, v2) = post_event(&d, &auth, Some("k-1"), &e);
    assert_eq!(v2["deduped"].as_bool(), Some(true), "{v2}");
    assert_eq!(s2, 201);
    assert_eq!(
        v2["seq"], v1["seq"],
        "the stored response, not a second event"
    );
    let (s3, v3) = post_event(&d, &auth, Some("k-1"), &json!({ "type": "agent.other" }));
    assert_eq!(
        (s3, v3["error"]["code"].as_str()),
        (422, Some("idempotency_mismatch"))
    );

    // Contributions: the key defaults to the bundle id; a resend answers the first receipt.
    let b = serde_json::to_vec(&bundle(
        "idem-1",
        json!([{ "op": "create", "path": "03_NOTES/I.md", "content": "i" }]),
    ))
    .unwrap();
    let h = [
        ("Authorization", auth.as_str()),
        ("Idempotency-Key", "submit-1"),
    ];
    let (s, _, first) = http(&d.addr, "POST", "/api/contributions", &h, &b);
    assert_eq!(s, 200);
    let (s, headers, second) = http(&d.addr, "POST", "/api/contributions", &h, &b);
    assert_eq!(s, 200);
    assert_eq!(first, second, "the same receipt, byte for byte");
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "idempotent-replayed" && v == "true")
    );
    let other = serde_json::to_vec(&bundle("idem-2", json!([]))).unwrap();
    let (s, _, body) = http(&d.addr, "POST", "/api/contributions", &h, &other);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("idempotency_mismatch"))
    );
    assert_eq!(t.commits_for("idem-1"), 1);
    assert_eq!(t.commits_for("idem-2"), 0);
}

#[test]
fn render_jobs_run_and_report() {
    let t = VaultTest::new();
    t.commit(&[("03_NOTES/Job.md", "# Job\n")], "a note");
    let d = start(&t);
    let auth = format!("Bearer {}", token(&t));
    let h = [("Authorization", auth.as_str())];
    let (s, _, body) = http(
        &d.addr,
        "POST",
        "/api/renderer/render",
        &h,
        br#"{"theme":"nope"}"#,
    );
    assert_eq!(s, 422, "{}", String::from_utf8_lossy(&body));
    for (ask, file) in [
        (r#"{"theme":"desk"}"#, "_site/desk/index.html"),
        (
            r#"{"ref":"main"}"#,
            "_site/_refs/main/paper/03_notes/job/index.html",
        ),
    ] {
        let (s, _, body) = http(&d.addr, "POST", "/api/renderer/render", &h, ask.as_bytes());
        assert_eq!(s, 202);
        let id = serde_json::from_slice::<Value>(&body).unwrap()["job"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut state = String::new();
        wait_until("the job", Duration::from_secs(30), || {
            let (_, j) = get_json(&d.addr, &format!("/api/renderer/jobs/{id}"));
            state = j["state"].as_str().unwrap_or("").to_owned();
            state == "done" || state == "failed"
        });
        assert_eq!(state, "done");
        assert!(t.exists(file), "{file}");
    }
    assert_eq!(get_json(&d.addr, "/api/renderer/jobs/none").0, 404);
    let (s, _, body) = http(&d.addr, "POST", "/api/renderer/render", &h, b"{theme");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    let (s, _, _) = http(&d.addr, "POST", "/api/renderer/render", &[], b"{}");
    assert_eq!(s, 401, "a render needs the token");
}

#[test]
fn the_demo_ends_with_the_daemon_serving_both_sites() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quire"));
    cmd.current_dir(tmp.path())
        .args(["demo", "tour"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    isolated(&mut cmd, tmp.path());
    let mut child = cmd.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut addr = None;
    let mut seen = String::new();
    for _ in 0..200 {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
        if let Some(rest) = line.strip_prefix("quire daemon on http://") {
            addr = rest.split('/').next().map(str::to_owned);
            break;
        }
    }
    let addr = addr.unwrap_or_else(|| panic!("no daemon line in:\n{seen}"));
    let mut urls = String::new();
    for _ in 0..2 {
        out.read_line(&mut urls).unwrap();
    }
    assert!(
        urls.contains("/site/paper/") && urls.contains("/site/desk/"),
        "{urls}"
    );
    assert_eq!(http(&addr, "GET", "/healthz", &[], b"").0, 200);
    let (status, _, page) = http(&addr, "GET", "/site/desk/", &[], b"");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains("Mission control"));
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn an_idle_daemon_stays_idle() {
    let t = VaultTest::new();
    t.commit(
        &[("03_NOTES/Quiet.md", "# Quiet\n\n- [ ] nothing to do\n")],
        "a note",
    );
    let d = start(&t);
    // The first pass (index and sites) happens at start; after it, reading the vault to render
    // must not wake the pipeline again.
    wait_until("the first pass", Duration::from_secs(20), || {
        t.exists("_site/paper/03_notes/quiet/index.html")
    });
    std::thread::sleep(Duration::from_millis(500));
    let (_, passes) = sse(&d.addr, None, "pipeline.", 1, Duration::from_secs(3));
    assert!(passes.is_empty(), "an idle daemon ran passes: {passes:?}");
}

#[test]
fn a_failing_git_write_degrades_health_and_loses_nothing() {
    let t = VaultTest::new();
    let d = start(&t);
    wait_until("the first pass", Duration::from_secs(20), || {
        t.exists("_site/paper/index.html")
    });
    // Git's object store replaced by a file: every write fails (as on a full or broken disk;
    // permissions would not stop root, which runs these tests in CI).
    let objects = t.path(".git/objects");
    let aside = t.path(".git/objects.aside");
    std::fs::rename(&objects, &aside).unwrap();
    std::fs::write(&objects, b"not a directory").unwrap();
    drop_many(&t, "fail", 1);
    wait_until("degraded health", Duration::from_secs(20), || {
        let (status, h) = get_json(&d.addr, "/healthz");
        status == 503 && h["status"] == "degraded" && !h["reasons"].as_array().unwrap().is_empty()
    });
    assert_eq!(processed_count(&t), 0);
    let queued = t.queue_names(Queue::Pending).len() + t.queue_names(Queue::Processing).len();
    assert_eq!(queued, 1, "the bundle stays queued");
    // Repaired: applied exactly once, healthy again.
    std::fs::remove_file(&objects).unwrap();
    std::fs::rename(&aside, &objects).unwrap();
    wait_until("the bundle", Duration::from_secs(20), || {
        processed_count(&t) == 1
    });
    assert_eq!(t.commits_for("fail-0000"), 1);
    wait_until("health", Duration::from_secs(20), || {
        get_json(&d.addr, "/healthz").0 == 200
    });
}

#[test]
fn without_file_events_the_scans_find_bundles_and_edits() {
    let t = VaultTest::new();
    let d = start_env(&t, &[("QUIRE_DAEMON_POLL", "1")]);
    drop_many(&t, "poll", 3);
    wait_until("the bundles", Duration::from_secs(20), || {
        processed_count(&t) == 3
    });
    t.write("03_NOTES/Polled.md", "# Polled\n\nfound by a scan\n");
    wait_until("the edit on the site", Duration::from_secs(20), || {
        let (_, _, body) = http(&d.addr, "GET", "/site/paper/03_notes/polled/", &[], b"");
        String::from_utf8_lossy(&body).contains("found by a scan")
    });
}

#[test]
fn a_full_disk_degrades_health_says_why_and_applies_once_space_is_freed() {
    let t = VaultTest::new();
    let full = t.tmp.path().join("disk-is-full");
    std::fs::write(&full, "").unwrap();
    let log = t.tmp.path().join("daemon.stderr");
    let d = start_with(
        &t,
        &[
            ("QUIRE_FAIL_AT", "worktree_check:*"),
            ("QUIRE_FAIL_WHILE", full.to_str().unwrap()),
            ("QUIRE_FAIL_ERRNO", "28"),
        ],
        std::fs::File::create(&log).unwrap(),
    );
    drop_many(&t, "full", 1);
    wait_until("degraded health", Duration::from_secs(20), || {
        let (status, h) = get_json(&d.addr, "/healthz");
        status == 503
            && h["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r.as_str().unwrap_or("").contains("No space left on device"))
    });
    // The bundle waits in processing/ and counts as queued; stderr says what failed.
    let (_, h) = get_json(&d.addr, "/healthz");
    assert_eq!(h["queue_depth"], 1, "{h}");
    assert_eq!(t.queue_names(Queue::Processing).len(), 1);
    wait_until("the error on stderr", Duration::from_secs(20), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("No space left on device"))
    });
    // Space freed and no other bundle arrives: the retry applies it, once.
    std::fs::remove_file(&full).unwrap();
    wait_until("the bundle", Duration::from_secs(30), || {
        processed_count(&t) == 1
    });
    assert_eq!(t.commits_for("full-0000"), 1);
    wait_until("health", Duration::from_secs(20), || {
        let (status, h) = get_json(&d.addr, "/healthz");
        status == 200 && h["queue_depth"] == 0
    });
    assert_eq!(t.status(), "");
}

#[test]
fn a_git_lock_held_by_someone_else_is_reported_and_the_bundle_follows_once_it_goes() {
    let t = VaultTest::new();
    let d = start(&t);
    wait_until("the first pass", Duration::from_secs(20), || {
        t.exists("_site/paper/index.html")
    });
    let head = t.head();
    std::fs::write(t.path(".git/index.lock"), "").unwrap();
    drop_many(&t, "locked", 1);
    wait_until(
        "degraded health naming the lock",
        Duration::from_secs(20),
        || {
            let (status, h) = get_json(&d.addr, "/healthz");
            status == 503
                && h["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r.as_str().unwrap_or("").contains("index.lock"))
        },
    );
    let (_, waiting) = sse(
        &d.addr,
        Some("0"),
        "git.lock_waiting",
        1,
        Duration::from_secs(10),
    );
    assert_eq!(waiting.len(), 1, "an event says quire waits");
    assert_eq!(t.head(), head, "nothing is committed past a locked index");
    std::fs::remove_file(t.path(".git/index.lock")).unwrap();
    wait_until("the bundle", Duration::from_secs(30), || {
        processed_count(&t) == 1
    });
    wait_until("health", Duration::from_secs(20), || {
        get_json(&d.addr, "/healthz").0 == 200
    });
    assert_eq!(t.commits_for("locked-0000"), 1);
    assert_eq!(t.status(), "");
}

#[test]
fn clients_holding_connections_open_are_cut_off_and_never_starve_the_pipeline() {
    let t = VaultTest::new();
    let cfg = t
        .read("quire.toml")
        .replace("max_connections = 256", "max_connections = 32")
        .replace("header_timeout_secs = 10", "header_timeout_secs = 1")
        .replace("idle_timeout_secs = 60", "idle_timeout_secs = 2");
    t.commit(&[("quire.toml", &cfg)], "tight connection limits");
    // A small descriptor limit, as on a machine with a default of 1,024, makes starvation quick.
    let mut cmd = Command::new("sh");
    cmd.current_dir(&t.root)
        .arg("-c")
        .arg(format!(
            "ulimit -n 400 && exec '{}' daemon --listen 127.0.0.1:0",
            env!("CARGO_BIN_EXE_quire")
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    isolated(&mut cmd, t.tmp.path());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap()
        .to_owned();
    let d = Daemon {
        child,
        addr,
        _stdout: stdout,
    };
    wait_until("the first pass", Duration::from_secs(20), || {
        t.exists("_site/paper/index.html")
    });

    // 600 clients each send half a request and wait: more than the descriptors the daemon has.
    let mut held = Vec::new();
    for _ in 0..600 {
        let mut s = TcpStream::connect(&d.addr).unwrap();
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
        held.push(s);
    }
    // The pipeline still has its files: a bundle dropped now is applied.
    drop_many(&t, "busy", 1);
    wait_until("the bundle", Duration::from_secs(30), || {
        processed_count(&t) == 1
    });
    // Every one of them is closed by the daemon: over the cap at once, the rest after the
    // header timeout.
    let started = Instant::now();
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 512];
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                // A 408 or similar before closing is fine.
                Ok(_) => continue,
                // Still open when the read timed out.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break false;
                }
                Err(_) => break true,
            }
        };
        assert!(closed, "a held connection was left open");
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    drop(held);
    // Answering as before.
    let (status, h) = get_json(&d.addr, "/healthz");
    assert_eq!(status, 200, "{h}");
    // A kept-alive connection that goes quiet is closed too (idle, then the header clock).
    let mut quiet = TcpStream::connect(&d.addr).unwrap();
    quiet
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", d.addr).as_bytes())
        .unwrap();
    quiet
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let started = Instant::now();
    while let Ok(n) = quiet.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}
