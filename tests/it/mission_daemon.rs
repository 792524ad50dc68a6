//! Missions carried by the daemon, driven over real HTTP on loopback: briefs posted, steps run
//! by themselves, decisions answered from the API, operator actions, running steps as agents.

use std::time::Duration;

use serde_json::{Value, json};

use crate::daemon::{Daemon, get_json, http, start_env, token, wait_until};
use crate::harness::VaultTest;
use crate::missions::{brief, engine_vault, events_of};

fn post(d: &Daemon, t: &VaultTest, path: &str, body: &Value) -> (u16, Value) {
    let auth = format!("Bearer {}", token(t));
    let (status, _, body) = http(
        &d.addr,
        "POST",
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &serde_json::to_vec(body).unwrap(),
    );
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn state_of(d: &Daemon, id: &str) -> String {
    let (_, s) = get_json(&d.addr, &format!("/api/missions/{id}"));
    s["mission"]["state"].as_str().unwrap_or("").to_owned()
}

fn wait_state(d: &Daemon, id: &str, want: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while state_of(d, id) != want {
        if std::time::Instant::now() > deadline {
            let (_, s) = get_json(&d.addr, &format!("/api/missions/{id}"));
            let (_, h) = get_json(&d.addr, "/healthz");
            panic!("timed out waiting for mission {id} to be {want}: {s}\nhealth: {h}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(t: &VaultTest) -> Daemon {
    start_env(t, &[])
}

#[test]
fn the_daemon_carries_a_posted_brief_to_its_decision_and_the_api_approves_it() {
    let t = engine_vault(&[
        (
            "write",
            "echo working on $QUIRE_STEP; echo $QUIRE_STEP > out-$QUIRE_STEP.txt",
        ),
        ("noop", "true"),
    ]);
    let d = start(&t);
    let b = brief(
        "api-1",
        json!([{ "step": "a", "uses": "write" }, { "step": "b", "uses": "noop" }]),
    );
    // No token, no brief; a bundle is not a brief.
    let (status, _, _) = http(
        &d.addr,
        "POST",
        "/api/missions",
        &[],
        &serde_json::to_vec(&b).unwrap(),
    );
    assert_eq!(status, 401);
    let (status, body) = post(
        &d,
        &t,
        "/api/missions",
        &json!({ "contract": "quire.contribution/1", "id": "x", "message": "x", "changes": [] }),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_brief")),
        "{body}"
    );
    let (status, receipt) = post(&d, &t, "/api/missions", &b);
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["status"], "applied", "{receipt}");
    // Posting it again answers what it answered first.
    let (status, again) = post(&d, &t, "/api/missions", &b);
    assert_eq!(
        (status, &again["status"]),
        (200, &json!("applied")),
        "{again}"
    );

    // Nobody runs anything: the daemon carries the steps and asks for the decision.
    wait_state(&d, "api-1", "awaiting_decision");
    let (_, listed) = get_json(&d.addr, "/api/missions");
    assert_eq!(listed["missions"][0]["id"], "api-1", "{listed}");
    let (_, decisions) = get_json(&d.addr, "/api/decisions");
    let decision = &decisions["decisions"][0];
    assert_eq!(decision["id"], "api-1.r1", "{decisions}");
    let commit = decision["commit"].as_str().unwrap().to_owned();
    let (status, _, log) = http(&d.addr, "GET", "/api/missions/api-1/logs/a", &[], b"");
    assert_eq!(status, 200);
    assert!(
        String::from_utf8_lossy(&log).contains("working on a"),
        "{}",
        String::from_utf8_lossy(&log)
    );
    let (status, missing) = get_json(&d.addr, "/api/missions/api-1/logs/nope");
    assert_eq!(status, 404, "{missing}");

    // The reviewer saw another commit: stale. Then approved as seen; another answer is `decided`.
    let (status, stale) = post(
        &d,
        &t,
        "/api/decisions/api-1.r1/resolve",
        &json!({ "decision": "approve", "commit": "0000000000" }),
    );
    assert_eq!(
        (status, stale["error"]["code"].as_str()),
        (409, Some("stale")),
        "{stale}"
    );
    let (status, bad) = post(
        &d,
        &t,
        "/api/decisions/api-1.r1/resolve",
        &json!({ "decision": "retry" }),
    );
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (400, Some("invalid_answer")),
        "{bad}"
    );
    let (status, done) = post(
        &d,
        &t,
        "/api/decisions/api-1.r1/resolve",
        &json!({ "decision": "approve", "commit": commit, "reason": "looks right" }),
    );
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["state"], "promoted", "{done}");
    let (status, again) = post(
        &d,
        &t,
        "/api/decisions/api-1.r1/resolve",
        &json!({ "decision": "approve", "commit": commit }),
    );
    assert_eq!((status, &again["again"]), (200, &json!(true)), "{again}");
    let (status, other) = post(
        &d,
        &t,
        "/api/decisions/api-1.r1/resolve",
        &json!({ "decision": "reject" }),
    );
    assert_eq!(
        (status, other["error"]["code"].as_str()),
        (409, Some("decided")),
        "{other}"
    );
    let (status, nothing) = post(
        &d,
        &t,
        "/api/decisions/nope/resolve",
        &json!({ "decision": "approve" }),
    );
    assert_eq!(status, 404, "{nothing}");

    // The step's work is on main; the mission note says how it ended; the promotion names the
    // decision.
    assert_eq!(t.git(&["show", "main:out-a.txt"]).trim(), "a");
    let note = t.git(&["show", "main:01_MISSIONS/api-1/mission.md"]);
    assert!(note.contains("status: promoted"), "{note}");
    let log = t.git(&["log", "--format=%B", "main"]);
    assert!(
        log.contains("Decision-Id: api-1.r1") && log.contains("Decision-Reason: looks right"),
        "{log}"
    );

    // Ticking the mission's tasks on main completes it.
    let ticked = note.replace("- [ ] ", "- [x] ");
    t.commit(&[("01_MISSIONS/api-1/mission.md", &ticked)], "done");
    wait_state(&d, "api-1", "completed");
    let kinds: Vec<String> = events_of(&t)
        .into_iter()
        .filter(|e| e["correlation_id"] == "api-1")
        .map(|e| e["type"].as_str().unwrap_or("").to_owned())
        .collect();
    for k in [
        "mission.created",
        "mission.step.started",
        "mission.step.succeeded",
        "decision.requested",
        "decision.resolved",
        "mission.promoted",
        "mission.completed",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
}

#[test]
fn a_running_step_takes_a_message_is_followed_and_is_ended_by_an_abort() {
    let flag = tempfile::tempdir().unwrap();
    let go = flag.path().join("go");
    let t = engine_vault(&[
        // Waits for a message in its inbox, prints it and exits.
        (
            "listen",
            "echo listening; i=0; while [ $i -lt 600 ]; do if [ -s \"$QUIRE_INBOX\" ]; then cat \"$QUIRE_INBOX\"; exit 0; fi; sleep 0.05; i=$((i+1)); done; exit 3",
        ),
        // Sleeps until the test's flag exists.
        (
            "hold",
            &format!(
                "echo holding; while [ ! -f '{}' ]; do sleep 0.05; done; echo released",
                go.display()
            ),
        ),
    ]);
    let d = start(&t);
    let (status, _) = post(
        &d,
        &t,
        "/api/missions",
        &brief("talk", json!([{ "step": "listen", "uses": "listen" }])),
    );
    assert_eq!(status, 200);
    wait_until("the step to run", Duration::from_secs(30), || {
        let (_, a) = get_json(&d.addr, "/api/agents");
        a["agents"].as_array().is_some_and(|a| {
            a.iter().any(|x| {
                x["mission"] == "talk" && x["alive"] == true && x["last_line"] == "listening"
            })
        })
    });
    let (status, empty) = post(
        &d,
        &t,
        "/api/missions/talk/inject",
        &json!({ "message": " " }),
    );
    assert_eq!(
        (status, empty["error"]["code"].as_str()),
        (400, Some("invalid_message")),
        "{empty}"
    );
    let (status, sent) = post(
        &d,
        &t,
        "/api/missions/talk/inject",
        &json!({ "message": "try the other door" }),
    );
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["delivered"][0]["step"], "listen", "{sent}");
    wait_state(&d, "talk", "awaiting_decision");
    let (_, _, log) = http(&d.addr, "GET", "/api/missions/talk/logs/listen", &[], b"");
    assert!(
        String::from_utf8_lossy(&log).contains("try the other door"),
        "{}",
        String::from_utf8_lossy(&log)
    );
    let (status, idle) = post(
        &d,
        &t,
        "/api/missions/talk/inject",
        &json!({ "message": "anyone?" }),
    );
    assert_eq!(
        (status, idle["error"]["code"].as_str()),
        (409, Some("not_running")),
        "{idle}"
    );
    assert!(
        events_of(&t)
            .iter()
            .any(|e| e["type"] == "mission.step.injected" && e["correlation_id"] == "talk")
    );

    // A step held running: its log is followed while an abort ends it and its group.
    let (status, _) = post(
        &d,
        &t,
        "/api/missions",
        &brief("held", json!([{ "step": "hold", "uses": "hold" }])),
    );
    assert_eq!(status, 200);
    let mut pid = 0;
    wait_until("the held step to run", Duration::from_secs(30), || {
        let (_, a) = get_json(&d.addr, "/api/agents");
        let found = a["agents"].as_array().and_then(|a| {
            a.iter()
                .find(|x| x["mission"] == "held" && x["last_line"] == "holding")
                .cloned()
        });
        pid = found.map_or(0, |f| f["pid"].as_u64().unwrap_or(0));
        pid > 0
    });
    let addr = d.addr.clone();
    let follower = std::thread::spawn(move || {
        http(
            &addr,
            "GET",
            "/api/missions/held/logs/hold?follow=1",
            &[],
            b"",
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    // Running again from a step while one runs would race it: refused, and the step runs on.
    let (status, busy) = post(
        &d,
        &t,
        "/api/missions/held/retry",
        &json!({ "from": "hold" }),
    );
    assert_eq!(
        (status, busy["error"]["code"].as_str()),
        (409, Some("running")),
        "{busy}"
    );
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    let (status, aborted) = post(
        &d,
        &t,
        "/api/missions/held/abort",
        &json!({ "reason": "not needed" }),
    );
    assert_eq!(status, 200, "{aborted}");
    assert_eq!(aborted["state"], "aborted", "{aborted}");
    let (status, _, followed) = follower.join().unwrap();
    assert_eq!(status, 200);
    assert!(
        String::from_utf8_lossy(&followed).contains("holding"),
        "{}",
        String::from_utf8_lossy(&followed)
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the aborted step's process {pid} still runs"
    );
    wait_until("no agents", Duration::from_secs(10), || {
        let (_, a) = get_json(&d.addr, "/api/agents");
        a["agents"]
            .as_array()
            .is_some_and(|a| a.iter().all(|x| x["mission"] != "held"))
    });
    // Aborting again changes nothing; retrying needs a step to go back to; then it runs again.
    let (status, again) = post(&d, &t, "/api/missions/held/abort", &json!({}));
    assert_eq!(
        (status, &again["state"]),
        (200, &json!("aborted")),
        "{again}"
    );
    let (status, nothing) = post(&d, &t, "/api/missions/held/retry", &json!({}));
    assert_eq!(
        (status, nothing["error"]["code"].as_str()),
        (409, Some("not_escalated")),
        "{nothing}"
    );
    let (status, unknown) = post(
        &d,
        &t,
        "/api/missions/held/retry",
        &json!({ "from": "nope" }),
    );
    assert_eq!(
        (status, unknown["error"]["code"].as_str()),
        (400, Some("unknown_step")),
        "{unknown}"
    );
    std::fs::write(&go, "").unwrap();
    let (status, retried) = post(
        &d,
        &t,
        "/api/missions/held/retry",
        &json!({ "from": "hold" }),
    );
    assert_eq!(status, 200, "{retried}");
    wait_state(&d, "held", "awaiting_decision");
    let (_, s) = get_json(&d.addr, "/api/missions/held");
    let rounds: Vec<u64> = s["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["round"].as_u64().unwrap())
        .collect();
    assert_eq!(rounds, [1, 2], "{s}");
    assert_eq!(s["attempts"][0]["state"], "interrupted", "{s}");
    let note = t.git(&["show", "main:01_MISSIONS/held/mission.md"]);
    assert!(
        note.contains("status: running"),
        "a retried mission's note is left saying aborted: {note}"
    );
}

#[test]
fn items_run_in_parallel_and_auto_approval_promotes_each_round() {
    let trace = tempfile::tempdir().unwrap();
    let file = trace.path().join("trace");
    let t = engine_vault(&[(
        "item",
        &format!(
            "echo start $QUIRE_ITEM >> '{0}'; sleep 1; echo $QUIRE_ITEM > item-$QUIRE_ITEM.txt; echo end $QUIRE_ITEM >> '{0}'",
            file.display()
        ),
    )]);
    let mut toml = t.read("quire.toml");
    toml = toml.replace("[missions]\n", "[missions]\nparallel = 3\n");
    t.commit(&[("quire.toml", &toml)], "three at once");
    let d = start(&t);
    let mut b = brief("camp", json!([{ "step": "make", "uses": "item" }]));
    b["items"] = json!(["x", "y", "z"]);
    b["approval"] = json!("auto");
    b["tasks"] = json!([]);
    let (status, receipt) = post(&d, &t, "/api/missions", &b);
    assert_eq!(status, 200, "{receipt}");
    wait_state(&d, "camp", "completed");
    let lines = std::fs::read_to_string(&file).unwrap();
    let first: Vec<&str> = lines.lines().take(2).collect();
    assert!(
        first.iter().all(|l| l.starts_with("start")),
        "the items did not overlap: {lines}"
    );
    for item in ["x", "y", "z"] {
        assert_eq!(
            t.git(&["show", &format!("main:item-{item}.txt")]).trim(),
            item
        );
    }
    let log = t.git(&["log", "--format=%B", "main"]);
    assert_eq!(log.matches("Decided-By: quire").count(), 3, "{log}");
}

#[test]
fn an_unanswered_decision_expires_into_an_escalation_never_an_approval() {
    let t = engine_vault(&[("noop", "true")]);
    let mut toml = t.read("quire.toml");
    toml = toml.replace("[missions]\n", "[missions]\ndecision_ttl = \"1s\"\n");
    t.commit(&[("quire.toml", &toml)], "short decisions");
    let d = start(&t);
    let (status, _) = post(
        &d,
        &t,
        "/api/missions",
        &brief("late", json!([{ "step": "a", "uses": "noop" }])),
    );
    assert_eq!(status, 200);
    wait_state(&d, "late", "escalated");
    let (_, decisions) = get_json(&d.addr, "/api/decisions");
    let open: Vec<&str> = decisions["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert!(open.contains(&"late.r1.x"), "{decisions}");
    let (status, expired) = post(
        &d,
        &t,
        "/api/decisions/late.r1/resolve",
        &json!({ "decision": "approve" }),
    );
    assert_eq!(
        (status, expired["error"]["code"].as_str()),
        (409, Some("decided")),
        "{expired}"
    );
    assert!(
        t.git(&["log", "--format=%B", "main"])
            .matches("Decision-Id")
            .count()
            == 0
    );
    assert!(
        events_of(&t)
            .iter()
            .any(|e| e["type"] == "decision.expired" && e["data"]["id"] == "late.r1")
    );
}

#[test]
fn bundles_and_answers_dropped_after_a_burst_of_briefs_go_before_them() {
    // All dropped before the daemon starts, so that its first look sees every file at once: the
    // briefs first (oldest), then a bundle and an answer to an unknown decision.
    let t = engine_vault(&[("noop", "true")]);
    let pending = t.vault().queue_dir(quire::vault::Queue::Pending);
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    for i in 0..12 {
        let name = format!("m-{i:02}.json");
        t.drop_json(
            &name,
            &brief(
                &format!("m-{i:02}"),
                json!([{ "step": "a", "uses": "noop" }]),
            ),
        );
        std::fs::File::options()
            .write(true)
            .open(pending.join(&name))
            .unwrap()
            .set_modified(old + Duration::from_secs(i))
            .unwrap();
    }
    t.drop_json(
        "late-bundle.json",
        &crate::harness::bundle(
            "late-bundle",
            json!([{ "op": "create", "path": "03_NOTES/late.md", "content": "# late\n" }]),
        ),
    );
    t.drop_json(
        "late-answer.json",
        &json!({ "contract": "quire.decision/1", "id": "nope.r1", "decision": "approve" }),
    );
    let d = start(&t);
    for i in 0..12 {
        wait_state(&d, &format!("m-{i:02}"), "awaiting_decision");
    }
    drop(d);
    // Main's history, oldest first: the bundle's commit comes before every mission note's.
    let log = t.git(&["log", "--reverse", "--format=%s", "main"]);
    let subjects: Vec<&str> = log.lines().collect();
    let bundle_at = subjects
        .iter()
        .position(|s| *s == "Bundle late-bundle")
        .unwrap_or_else(|| panic!("no bundle commit in {subjects:?}"));
    let first_note = subjects
        .iter()
        .position(|s| s.starts_with("Add mission"))
        .unwrap();
    assert!(bundle_at < first_note, "{subjects:?}");
    assert_eq!(
        subjects
            .iter()
            .filter(|s| s.starts_with("Add mission"))
            .count(),
        12
    );
    // The answer was filed (refused: no such decision) before the first brief was accepted.
    let answer = t.receipt(quire::vault::Queue::Rejected, "late-answer");
    let accepted = t.receipt(quire::vault::Queue::Processed, "m-00");
    assert!(
        answer["received_at"].as_str().unwrap() < accepted["applied_at"].as_str().unwrap(),
        "{answer}\n{accepted}"
    );
}
