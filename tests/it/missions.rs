//! Missions: briefs dropped, posted or started, accepted once, refused with a coded receipt.

use quire::contributions::Status;
use quire::vault::Queue;
use serde_json::{Value, json};

use crate::harness::VaultTest;

pub(crate) fn brief(id: &str, pipeline: Value) -> Value {
    json!({
        "contract": "quire.mission/1",
        "id": id,
        "title": "Moon",
        "objectives": "Land.",
        "constraints": { "deadline": "2026-12-15" },
        "tasks": ["Build the lander", "Fly"],
        "pipeline": pipeline,
    })
}

fn raw_steps() -> Value {
    json!([{ "step": "build", "run": "echo built > built.txt" }])
}

/// A vault whose catalog has `plan`.
fn with_catalog() -> VaultTest {
    let t = VaultTest::new();
    let mut toml = t.read("quire.toml");
    toml.push_str("\n[missions.commands]\nplan = \"echo planned > plan.md\"\n");
    t.commit(&[("quire.toml", &toml)], "catalog");
    t
}

#[test]
fn a_dropped_brief_commits_its_note_makes_its_sandbox_and_waits_to_start() {
    let t = VaultTest::new();
    t.drop_json("moon.json", &brief("moon-1", raw_steps()));
    let (report, events) = t.apply();
    assert_eq!(report.filed.len(), 1);
    let r = &report.filed[0].receipt;
    assert_eq!(r.status, Status::Applied, "{r:?}");
    assert_eq!(
        r.files.as_deref(),
        Some(&["01_MISSIONS/moon-1/mission.md".to_owned()][..])
    );
    // The note is on main, in the work tree, with the trailer naming the mission.
    let note = t.read("01_MISSIONS/moon-1/mission.md");
    assert!(
        note.contains("status: awaiting_start") && note.contains("due: 2026-12-15"),
        "{note}"
    );
    assert!(note.contains("- [ ] Build the lander"), "{note}");
    assert_eq!(r.commit.as_deref(), Some(t.head().as_str()));
    assert!(
        t.git(&["log", "-1", "--format=%B"])
            .contains("Mission-Id: moon-1")
    );
    assert_eq!(t.status(), "");
    // The sandbox starts from main as it now is; its work tree is checked out when its first
    // step is about to run, not in the intake's path.
    assert_eq!(t.git(&["rev-parse", "mission/moon-1"]).trim(), t.head());
    assert!(
        t.git(&["ls-tree", "-r", "--name-only", "mission/moon-1"])
            .contains("01_MISSIONS/moon-1/mission.md")
    );
    assert!(!t.exists("sandbox/moon-1"));
    // The brief is kept in Git, so that .quire/ is not the only record of it.
    let kept = t.git(&["cat-file", "-p", "refs/quire/missions/moon-1"]);
    assert_eq!(
        serde_json::from_str::<Value>(&kept).unwrap()["id"],
        "moon-1"
    );
    assert!(events.iter().any(|e| e.kind == "mission.created"
        && e.correlation_id.as_deref() == Some("moon-1")
        && e.data["state"] == "awaiting_start"));
    // Nothing of an untrusted brief has run.
    assert!(!t.exists("sandbox/moon-1/built.txt"));
    assert!(
        t.queue_names(Queue::Processed)
            .contains(&"moon-1.json".to_owned())
    );
}

#[test]
fn the_same_brief_again_is_a_duplicate_and_another_with_its_id_is_refused() {
    let t = VaultTest::new();
    t.drop_json("a.json", &brief("moon-1", raw_steps()));
    t.apply();
    let head = t.head();
    // Same brief, other spacing and key order.
    let mut again = brief("moon-1", raw_steps());
    again["tasks"] = json!(["Build the lander", "Fly"]);
    t.drop_bytes(
        "b.json",
        serde_json::to_string_pretty(&again).unwrap().as_bytes(),
    );
    let (report, _) = t.apply();
    let r = &report.filed[0].receipt;
    assert_eq!(
        (r.status, r.commit.as_deref()),
        (Status::Duplicate, Some(head.as_str()))
    );
    assert_eq!(t.head(), head);
    // Another brief under the same id.
    t.drop_json(
        "c.json",
        &brief("moon-1", json!([{ "step": "other", "run": "true" }])),
    );
    let (report, _) = t.apply();
    crate::harness::assert_rejected(&report.filed[0].receipt, "exists");
    assert_eq!(t.head(), head);
}

#[test]
fn every_bad_brief_is_refused_with_its_code_and_the_queue_moves_on() {
    let t = with_catalog();
    let ok = json!([{ "step": "a", "uses": "plan" }]);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "schema",
            json!({ "contract": "quire.mission/1", "id": "m-1", "pipeline": ok, "colour": "red" }),
            "invalid_brief",
        ),
        (
            "dup",
            brief(
                "m-2",
                json!([{ "step": "a", "uses": "plan" }, { "step": "a", "uses": "plan" }]),
            ),
            "duplicate_step",
        ),
        ("id", brief("a..b", ok.clone()), "invalid_id"),
        (
            "timeout",
            brief(
                "m-3",
                json!([{ "step": "a", "uses": "plan", "timeout": "5 minutes" }]),
            ),
            "invalid_timeout",
        ),
        (
            "from",
            {
                let mut b = brief("m-4", ok.clone());
                b["from"] = json!("no-such-branch");
                b
            },
            "unknown_ref",
        ),
        ("empty", brief("m-5", json!([])), "empty_pipeline"),
        (
            "uses",
            brief("m-6", json!([{ "step": "a", "uses": "deploy" }])),
            "unknown_command",
        ),
    ];
    for (name, b, _) in &cases {
        t.drop_json(&format!("{name}.json"), b);
    }
    // And a good one behind them all.
    t.drop_json("zz.json", &brief("m-ok", ok.clone()));
    let head = t.head();
    let (report, _) = t.apply();
    assert_eq!(report.filed.len(), cases.len() + 1);
    for (f, (name, _, code)) in report.filed.iter().zip(&cases) {
        assert_eq!(f.dropped_as, *name);
        crate::harness::assert_rejected(&f.receipt, code);
        let receipt = t.receipt(Queue::Rejected, name);
        assert_eq!(receipt["error"]["code"], *code, "{receipt}");
    }
    let last = &report.filed[cases.len()].receipt;
    assert_eq!(last.status, Status::Applied, "{last:?}");
    // Only the good brief changed anything.
    assert_eq!(
        t.git(&["rev-list", "--count", &format!("{head}..main")])
            .trim(),
        "1"
    );
    assert_eq!(
        t.git(&[
            "for-each-ref",
            "--format=%(refname:short)",
            "refs/heads/mission/"
        ])
        .trim(),
        "mission/m-ok"
    );
    // A brief that uses only the catalog does not wait for a start decision.
    assert!(
        t.read("01_MISSIONS/m-ok/mission.md")
            .contains("status: queued")
    );
}

#[test]
fn missions_turned_off_refuse_briefs_and_quire_check_reads_them_by_their_contract() {
    let t = VaultTest::new();
    let mut toml = t.read("quire.toml");
    toml.push_str("\n[missions]\nenabled = false\n");
    t.commit(&[("quire.toml", &toml)], "no missions");
    t.drop_json(
        "bad.json",
        &brief(
            "m-1",
            json!([{ "step": "a", "run": "true", "timeout": "soon" }]),
        ),
    );
    t.drop_json("ok.json", &brief("m-2", raw_steps()));
    let check = t.quire(&["check", "--json"]);
    let report: Value = serde_json::from_slice(&check.stdout).unwrap();
    let codes: Vec<(&str, &str)> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "bundle")
        .map(|p| (p["file"].as_str().unwrap(), p["code"].as_str().unwrap()))
        .collect();
    assert!(
        codes.contains(&("contributions/pending/bad.json", "invalid_timeout")),
        "{codes:?}"
    );
    assert!(
        codes.contains(&("contributions/pending/bad.json", "schema")),
        "{codes:?}"
    );
    assert!(
        !codes.iter().any(|(f, _)| f.ends_with("ok.json")),
        "{codes:?}"
    );
    let head = t.head();
    let (report, _) = t.apply();
    crate::harness::assert_rejected(&report.filed[1].receipt, "missions_disabled");
    assert_eq!(t.head(), head);
    assert!(
        t.git(&["for-each-ref", "refs/heads/mission/"])
            .trim()
            .is_empty()
    );
}

/// A crash at each point of accepting a brief, then another run: accepted once, whole.
#[test]
fn a_crash_at_every_point_of_accepting_a_brief_is_finished_by_the_next_run() {
    for point in [
        "after_claim",
        "after_brief_ref",
        "after_mission_commit",
        "after_mission_note",
        "before_receipt",
        "after_file",
    ] {
        let t = VaultTest::new();
        t.drop_json("moon.json", &brief("moon-1", raw_steps()));
        let out = t.quire_env(&["apply"], &[("QUIRE_CRASH_AT", point)]);
        assert!(
            !out.status.success(),
            "{point}: the run should have crashed"
        );
        let fsck = t.git_output(&["fsck", "--no-dangling"]);
        assert!(
            fsck.status.success(),
            "{point}: {}",
            String::from_utf8_lossy(&fsck.stderr)
        );
        let out = t.quire(&["apply", "--json"]);
        assert!(
            out.status.success(),
            "{point}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        if point != "after_file" {
            assert_eq!(
                report["bundles"][0]["receipt"]["status"], "applied",
                "{point}: {report}"
            );
        }
        assert_eq!(
            t.git(&["log", "--format=%H", "--grep=Mission-Id: moon-1", "main"])
                .lines()
                .count(),
            1,
            "{point}: the note must be committed exactly once"
        );
        assert_eq!(
            t.git(&["rev-parse", "mission/moon-1"]).trim(),
            t.head(),
            "{point}"
        );
        assert!(
            t.git(&["ls-tree", "-r", "--name-only", "mission/moon-1"])
                .contains("01_MISSIONS/moon-1/mission.md"),
            "{point}"
        );
        assert_eq!(t.status(), "", "{point}");
        assert!(t.queue_names(Queue::Processing).is_empty(), "{point}");
        assert_eq!(
            t.receipt(Queue::Processed, "moon-1")["status"],
            "applied",
            "{point}"
        );
        // And the state knows it: the same brief again is a duplicate.
        t.drop_json("again.json", &brief("moon-1", raw_steps()));
        let (report, _) = t.apply();
        assert_eq!(report.filed[0].receipt.status, Status::Duplicate, "{point}");
    }
}

/// A vault whose catalog has the commands the engine tests use.
pub(crate) fn engine_vault(commands: &[(&str, &str)]) -> VaultTest {
    let t = VaultTest::new();
    let mut toml = t.read("quire.toml");
    toml.push_str("\n[missions]\nbackoff = \"20ms\"\ngrace = \"200ms\"\n\n[missions.commands]\n");
    for (name, command) in commands {
        toml.push_str(&format!("{name} = {}\n", toml_string(command)));
    }
    t.commit(&[("quire.toml", &toml)], "catalog");
    t
}

pub(crate) fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

pub(crate) fn start(t: &VaultTest, b: &Value) -> Value {
    let file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(b).unwrap()).unwrap();
    let path = file.path().to_owned();
    let out = t.quire_env(
        &["mission", "start", path.to_str().unwrap(), "--json"],
        &[("QUIRE_TOKEN", "secret-token")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub(crate) fn events_of(t: &VaultTest) -> Vec<Value> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(t.path("07_LOGS")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "jsonl") {
            for line in std::fs::read_to_string(entry.path()).unwrap().lines() {
                out.push(serde_json::from_str(line).unwrap());
            }
        }
    }
    out
}

#[test]
fn a_trusted_mission_runs_its_steps_commits_their_work_and_asks_for_a_decision() {
    let t = engine_vault(&[
        (
            "plan",
            "env | grep -E '^QUIRE_' | sort > env.txt; echo planning; echo oops >&2",
        ),
        ("noop", "true"),
    ]);
    let s = start(
        &t,
        &brief(
            "moon-1",
            json!([{ "step": "plan", "uses": "plan" }, { "step": "check", "uses": "noop" }]),
        ),
    );
    assert_eq!(s["mission"]["state"], "awaiting_decision", "{s}");
    let attempts = s["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{s}");
    // The step's work is committed to the sandbox with the trailers; a step that changed nothing
    // makes no commit.
    let plan_commit = attempts[0]["commit"].as_str().unwrap();
    assert!(attempts[1]["commit"].is_null(), "{s}");
    assert_eq!(t.git(&["rev-parse", "mission/moon-1"]).trim(), plan_commit);
    let message = t.git(&["log", "-1", "--format=%B", "mission/moon-1"]);
    for trailer in [
        "Mission-Id: moon-1",
        "Mission-Step: plan",
        "Mission-Attempt: plan/1/1",
    ] {
        assert!(message.contains(trailer), "{message}");
    }
    // The environment of SPEC §9.2, and none of quire's own secrets.
    let env = t.git(&["show", "mission/moon-1:env.txt"]);
    for var in [
        "QUIRE_MISSION=moon-1",
        "QUIRE_STEP=plan",
        "QUIRE_ATTEMPT=1",
        "QUIRE_IDEMPOTENCY_KEY=moon-1/plan/1/1",
        "QUIRE_ITEM=",
        "QUIRE_INBOX=",
        "QUIRE_REVISION_FILE=",
        "QUIRE_SANDBOX=",
        "QUIRE_VAULT=",
    ] {
        assert!(
            env.lines().any(|l| l.starts_with(var)),
            "{var} missing: {env}"
        );
    }
    assert!(
        !env.contains("secret-token") && !env.contains("QUIRE_RUN"),
        "{env}"
    );
    // stdout and stderr in the attempt's log; the run record names every attempt.
    assert_eq!(
        t.read("07_LOGS/missions/moon-1/plan.1.1.log"),
        "planning\noops\n"
    );
    let record = t.read("06_RUNS/missions/moon-1.md");
    assert_eq!(record.matches("step `").count(), 2, "{record}");
    // The decision is about the sandbox's tip.
    assert_eq!(s["decisions"][0]["kind"], "round");
    assert_eq!(s["decisions"][0]["commit"], plan_commit);
    let inbox: Value = serde_json::from_slice(&t.quire(&["inbox", "--json"]).stdout).unwrap();
    assert_eq!(inbox["decisions"][0]["id"], "moon-1.r1");
    let kinds: Vec<String> = events_of(&t)
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    for k in [
        "mission.created",
        "mission.step.started",
        "mission.step.succeeded",
        "decision.requested",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k}: {kinds:?}");
    }
    // Main and the sandbox's work tree are clean.
    assert_eq!(t.status(), "");
    assert_eq!(
        t.git(&["-C", "sandbox/moon-1", "status", "--porcelain"]),
        ""
    );
}

#[test]
fn a_healed_failure_is_salvaged_reset_and_retried() {
    let t = engine_vault(&[(
        "flaky",
        "if [ -f \"$QUIRE_VAULT/.quire/tried\" ]; then echo fine > done.txt; else touch \"$QUIRE_VAULT/.quire/tried\" half.txt; echo 'rate limit'; exit 75; fi",
    )]);
    let s = start(
        &t,
        &brief(
            "m-1",
            json!([{ "step": "work", "uses": "flaky", "heal": [{ "when": "log:rate limit", "retries": 2, "backoff": "10ms" }] }]),
        ),
    );
    let attempts = s["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{s}");
    assert_eq!(
        (attempts[0]["state"].as_str(), attempts[0]["class"].as_str()),
        (Some("failed"), Some("exit:75"))
    );
    assert_eq!(attempts[1]["state"], "succeeded");
    // What the failed attempt left is kept, and was not in the work tree of the retry.
    assert_eq!(
        t.git(&["show", "refs/quire/salvage/m-1/work.1.1:half.txt"]),
        ""
    );
    let files = t.git(&["ls-tree", "--name-only", "mission/m-1"]);
    assert!(
        files.contains("done.txt") && !files.contains("half.txt"),
        "{files}"
    );
    let kinds: Vec<String> = events_of(&t)
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert!(kinds.contains(&"heal.completed".to_owned()), "{kinds:?}");
    assert_eq!(s["mission"]["state"], "awaiting_decision");
}

#[test]
fn a_failure_no_rule_covers_escalates_and_a_timeout_ends_the_step() {
    let t = engine_vault(&[("fail", "echo broken; exit 3"), ("slow", "sleep 30")]);
    let s = start(&t, &brief("m-1", json!([{ "step": "a", "uses": "fail" }])));
    assert_eq!(s["mission"]["state"], "escalated", "{s}");
    assert_eq!(s["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(s["decisions"][0]["kind"], "escalation");
    assert!(
        s["decisions"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("exit:3"),
        "{s}"
    );
    let kinds: Vec<String> = events_of(&t)
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        kinds.contains(&"heal.escalated".to_owned())
            && kinds.contains(&"mission.escalated".to_owned()),
        "{kinds:?}"
    );

    // A timeout is retried once by default, then escalates; each attempt is ended on time.
    let t0 = std::time::Instant::now();
    let s = start(
        &t,
        &brief(
            "m-2",
            json!([{ "step": "a", "uses": "slow", "timeout": "300ms" }]),
        ),
    );
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        t0.elapsed()
    );
    let classes: Vec<&str> = s["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["class"].as_str().unwrap())
        .collect();
    assert_eq!(classes, ["timeout", "timeout"], "{s}");
    assert_eq!(s["mission"]["state"], "escalated");
}

#[test]
fn a_step_asks_for_a_revision_and_too_many_escalate() {
    let t = engine_vault(&[
        (
            "draft",
            "echo \"round $QUIRE_ROUND: ${QUIRE_REVISION_REASON:-first}\" >> draft.txt",
        ),
        (
            "review",
            "n=$(wc -l < draft.txt); if [ \"$n\" -lt 2 ]; then printf '{\"to\":\"draft\",\"reason\":\"too short\"}' > \"$QUIRE_REVISION_FILE\"; fi",
        ),
        (
            "picky",
            "printf '{\"to\":\"draft\",\"reason\":\"again\"}' > \"$QUIRE_REVISION_FILE\"",
        ),
        (
            "lost",
            "printf '{\"to\":\"nowhere\"}' > \"$QUIRE_REVISION_FILE\"",
        ),
    ]);
    let s = start(
        &t,
        &brief(
            "m-1",
            json!([{ "step": "draft", "uses": "draft" }, { "step": "review", "uses": "review" }]),
        ),
    );
    assert_eq!(s["mission"]["state"], "awaiting_decision", "{s}");
    assert_eq!(
        t.git(&["show", "mission/m-1:draft.txt"]),
        "round 1: first\nround 2: too short\n"
    );
    assert_eq!(s["decisions"][0]["id"], "m-1.r2");

    let mut b = brief(
        "m-2",
        json!([{ "step": "draft", "uses": "draft" }, { "step": "review", "uses": "picky" }]),
    );
    b["max_revisions"] = json!(1);
    let s = start(&t, &b);
    assert_eq!(s["mission"]["state"], "escalated", "{s}");
    assert!(
        s["decisions"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("max_revisions"),
        "{s}"
    );

    let s = start(
        &t,
        &brief("m-3", json!([{ "step": "draft", "uses": "lost" }])),
    );
    assert_eq!(s["mission"]["state"], "escalated", "{s}");
    assert!(
        s["decisions"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("nowhere"),
        "{s}"
    );
}

#[test]
fn nothing_of_an_untrusted_brief_runs_before_start_unless_briefs_are_trusted() {
    let t = engine_vault(&[]);
    let s = start(
        &t,
        &brief("m-1", json!([{ "step": "a", "run": "touch ran.txt" }])),
    );
    assert_eq!(s["mission"]["state"], "awaiting_start", "{s}");
    assert!(s["attempts"].as_array().unwrap().is_empty());
    assert_eq!(s["decisions"][0]["kind"], "start");
    assert!(!t.exists("sandbox/m-1/ran.txt"));

    let mut toml = t.read("quire.toml");
    toml = toml.replace("[missions]\n", "[missions]\ntrust_briefs = true\n");
    t.commit(&[("quire.toml", &toml)], "trust");
    let s = start(
        &t,
        &brief("m-2", json!([{ "step": "a", "run": "touch ran.txt" }])),
    );
    assert_eq!(s["mission"]["state"], "awaiting_decision", "{s}");
    assert!(
        t.git(&["ls-tree", "--name-only", "mission/m-2"])
            .contains("ran.txt")
    );
}

/// Starts `quire mission start` on `b` and kills it with SIGKILL once the step is running.
fn kill_mid_step(t: &VaultTest, b: &Value, log: &str) -> std::path::PathBuf {
    let file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    let (_, path) = file.keep().unwrap();
    std::fs::write(&path, serde_json::to_vec(b).unwrap()).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_quire"));
    cmd.args(["mission", "start", path.to_str().unwrap()])
        .current_dir(t.path(""))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    crate::harness::isolated(&mut cmd, &t.path(".home"));
    let mut child = cmd.spawn().unwrap();
    let t0 = std::time::Instant::now();
    while !t.exists(log) {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "the step never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    child.kill().unwrap();
    child.wait().unwrap();
    path
}

fn status_of(t: &VaultTest, id: &str) -> Value {
    serde_json::from_slice(&t.quire(&["mission", "status", id, "--json"]).stdout).unwrap()
}

#[test]
fn a_step_that_outlives_a_killed_quire_is_adopted_not_run_again() {
    let t = engine_vault(&[(
        "slow",
        "echo started >> runs.log; sleep 1; echo done > out.txt",
    )]);
    let b = brief("m-1", json!([{ "step": "work", "uses": "slow" }]));
    let path = kill_mid_step(&t, &b, "07_LOGS/missions/m-1/work.1.1.log");
    let s = status_of(&t, "m-1");
    assert_eq!(s["attempts"][0]["state"], "running", "{s}");
    // The step is still running, in its own process group, quire gone.
    let out = t.quire(&["mission", "start", path.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = status_of(&t, "m-1");
    let attempts = s["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "the finished step ran again: {s}");
    assert_eq!(attempts[0]["state"], "succeeded", "{s}");
    assert_eq!(t.git(&["show", "mission/m-1:out.txt"]), "done\n");
    assert_eq!(t.git(&["show", "mission/m-1:runs.log"]), "started\n");
    assert_eq!(s["mission"]["state"], "awaiting_decision");
    let fsck = t.git_output(&["fsck", "--no-dangling"]);
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stderr)
    );
    let _ = std::fs::remove_file(path);
}

#[test]
fn a_checkout_cut_short_by_a_crash_is_made_again_not_committed_as_deletions() {
    let t = engine_vault(&[("plan", "echo planned > PLAN.md")]);
    let b = brief("m-1", json!([{ "step": "plan", "uses": "plan" }]));
    let file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(&b).unwrap()).unwrap();
    let path = file.path().to_str().unwrap();
    let out = t.quire_env(
        &["mission", "start", path],
        &[("QUIRE_CRASH_AT", "during_checkout:3")],
    );
    assert!(!out.status.success(), "the checkout should have crashed");
    assert!(
        t.exists("sandbox/m-1"),
        "the crash left a work tree half-made"
    );
    let out = t.quire(&["mission", "start", path, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        status_of(&t, "m-1")["mission"]["state"],
        "awaiting_decision"
    );
    // The step's commit adds its file and deletes nothing the half-made tree lacked.
    assert_eq!(
        t.git(&["diff", "--name-status", "main", "mission/m-1"]),
        "A\tPLAN.md\n"
    );
    assert_eq!(
        t.git_output(&["-C", "sandbox/m-1", "status", "--porcelain"])
            .stdout,
        b""
    );
}

#[test]
fn a_step_lost_with_its_quire_is_retried_from_its_start_unless_it_acts_on_the_world() {
    let t = engine_vault(&[("slow", "echo half > half.txt; sleep 5; echo done > out.txt")]);
    for (id, effects) in [("m-1", "worktree"), ("m-2", "external")] {
        let b = brief(
            id,
            json!([{ "step": "work", "uses": "slow", "effects": effects }]),
        );
        let path = kill_mid_step(&t, &b, &format!("07_LOGS/missions/{id}/work.1.1.log"));
        // The machine takes the step down too.
        let pid = status_of(&t, id)["attempts"][0]["pid"].as_u64().unwrap();
        assert!(pid > 0);
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let out = t.quire(&["mission", "start", path.to_str().unwrap(), "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = status_of(&t, id);
        let attempts = s["attempts"].as_array().unwrap();
        assert_eq!(attempts[0]["state"], "lost", "{s}");
        if effects == "worktree" {
            // Run again from its start commit: what the lost attempt half wrote was reset (and kept).
            assert_eq!(attempts.len(), 2, "{s}");
            assert_eq!(attempts[1]["state"], "succeeded", "{s}");
            assert_eq!(
                t.git(&[
                    "show",
                    &format!("refs/quire/salvage/{id}/work.1.1:half.txt")
                ]),
                "half\n"
            );
            assert_eq!(s["mission"]["state"], "awaiting_decision");
        } else {
            assert_eq!(attempts.len(), 1, "an external step ran again: {s}");
            assert_eq!(s["mission"]["state"], "escalated", "{s}");
            assert!(
                s["decisions"][0]["reason"]
                    .as_str()
                    .unwrap()
                    .contains("external"),
                "{s}"
            );
        }
        let _ = std::fs::remove_file(path);
    }
}

pub(crate) fn decide(t: &VaultTest, args: &[&str]) -> (bool, Value) {
    let mut all = vec!["decide"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = t.quire(&all);
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
    )
}

#[test]
fn an_approved_round_is_promoted_with_the_decision_on_the_commit_and_answers_are_checked() {
    let t = engine_vault(&[("plan", "echo planned > PLAN.md")]);
    let s = start(
        &t,
        &brief("m-1", json!([{ "step": "plan", "uses": "plan" }])),
    );
    let tip = s["decisions"][0]["commit"].as_str().unwrap().to_owned();
    // Refusals change nothing.
    let head = t.head();
    for (args, code) in [
        (vec!["nope.r1", "approve"], "not_found"),
        (vec!["m-1.r1", "retry"], "invalid_answer"),
        (vec!["m-1.r1", "approve", "--commit", "0123456789"], "stale"),
    ] {
        let (ok, v) = decide(&t, &args);
        assert!(!ok, "{args:?}");
        assert_eq!(v["error"]["code"], code, "{args:?}: {v}");
    }
    assert_eq!(t.head(), head);
    let (ok, v) = decide(
        &t,
        &[
            "m-1.r1",
            "approve",
            "--reason",
            "ship it",
            "--commit",
            &tip[..10],
        ],
    );
    assert!(ok, "{v}");
    assert_eq!(
        (v["state"].as_str(), v["again"].as_bool()),
        (Some("promoted"), Some(false))
    );
    // The promotion, then the mission note saying so.
    let note = t.git(&["show", "main:01_MISSIONS/m-1/mission.md"]);
    assert!(note.contains("status: promoted"), "{note}");
    assert_eq!(
        t.git(&["log", "-1", "--format=%s", "main"]).trim(),
        "Mission m-1: promoted"
    );
    let message = t.git(&["log", "-1", "--format=%B", "main~1"]);
    for trailer in [
        "Decision-Id: m-1.r1",
        "Decided-By: ",
        "Decision-Reason: ship it",
        "Quire-Mission: m-1",
    ] {
        assert!(message.contains(trailer), "{message}");
    }
    assert_eq!(t.read("PLAN.md"), "planned\n");
    let promoted = t.head();
    // The same answer again: nothing more; another answer: refused.
    let (ok, v) = decide(&t, &["m-1.r1", "approve"]);
    assert!(ok && v["again"] == true, "{v}");
    let (ok, v) = decide(&t, &["m-1.r1", "reject"]);
    assert!(!ok && v["error"]["code"] == "decided", "{v}");
    // A promoted mission has ended: it is neither aborted nor run again.
    for args in [
        vec!["mission", "abort", "m-1", "--json"],
        vec!["mission", "retry", "m-1", "--from", "plan", "--json"],
    ] {
        let out = t.quire(&args);
        assert!(!out.status.success(), "{args:?}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["error"]["code"], "final", "{args:?}: {v}");
    }
    assert_eq!(status_of(&t, "m-1")["mission"]["state"], "promoted");
    assert_eq!(t.head(), promoted);
    let kinds: Vec<String> = events_of(&t)
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        kinds.contains(&"decision.resolved".to_owned())
            && kinds.contains(&"mission.promoted".to_owned()),
        "{kinds:?}"
    );
    let inbox: Value = serde_json::from_slice(&t.quire(&["inbox", "--json"]).stdout).unwrap();
    assert!(inbox["decisions"].as_array().unwrap().is_empty(), "{inbox}");
}

#[test]
fn a_rejected_round_archives_the_sandbox_and_start_and_retry_set_steps_going() {
    let t = engine_vault(&[
        ("plan", "echo planned > PLAN.md"),
        (
            "second",
            "if [ -f \"$QUIRE_VAULT/.quire/once\" ]; then echo ok > ok.txt; else touch \"$QUIRE_VAULT/.quire/once\"; exit 9; fi",
        ),
    ]);
    start(
        &t,
        &brief("m-1", json!([{ "step": "plan", "uses": "plan" }])),
    );
    let head = t.head();
    let (ok, v) = decide(&t, &["m-1.r1", "reject", "--reason", "not this"]);
    assert!(ok, "{v}");
    assert_eq!(v["state"], "rejected");
    // Main gains only the mission note saying how it ended.
    assert_eq!(t.git(&["rev-parse", "main~1"]).trim(), head);
    assert_eq!(
        t.git(&["diff", "--name-only", &head, "main"]).trim(),
        "01_MISSIONS/m-1/mission.md"
    );
    assert!(
        t.git(&["show", "main:01_MISSIONS/m-1/mission.md"])
            .contains("status: rejected")
    );
    assert!(
        t.git(&["for-each-ref", "refs/heads/mission/m-1"])
            .trim()
            .is_empty()
    );
    assert!(
        !t.git(&["for-each-ref", "refs/quire/archive/"])
            .trim()
            .is_empty()
    );

    // A brief with its own commands starts on a token holder's word, and runs then.
    let s = start(
        &t,
        &brief("m-2", json!([{ "step": "a", "run": "echo ran > ran.txt" }])),
    );
    assert_eq!(s["mission"]["state"], "awaiting_start");
    let (ok, v) = decide(&t, &["m-2.start", "start"]);
    assert!(ok, "{v}");
    assert!(
        t.git(&["ls-tree", "--name-only", "mission/m-2"])
            .contains("ran.txt")
    );
    assert_eq!(
        status_of(&t, "m-2")["mission"]["state"],
        "awaiting_decision"
    );

    // An escalation retried runs the step again, from its start.
    let s = start(
        &t,
        &brief("m-3", json!([{ "step": "b", "uses": "second" }])),
    );
    assert_eq!(s["mission"]["state"], "escalated", "{s}");
    let escalation = s["decisions"][0]["id"].as_str().unwrap().to_owned();
    let (ok, v) = decide(&t, &[&escalation, "retry"]);
    assert!(ok, "{v}");
    let s = status_of(&t, "m-3");
    assert_eq!(s["mission"]["state"], "awaiting_decision", "{s}");
    assert_eq!(s["attempts"].as_array().unwrap().len(), 2);
    // And one aborted ends the mission.
    let s = start(&t, &brief("m-4", json!([{ "step": "c", "run": "exit 1" }])));
    let (ok, _) = decide(&t, &["m-4.start", "start"]);
    assert!(ok);
    let s2 = status_of(&t, "m-4");
    assert_eq!(s2["mission"]["state"], "escalated", "{s} {s2}");
    let escalation = s2["decisions"][0]["id"].as_str().unwrap().to_owned();
    let (ok, v) = decide(&t, &[&escalation, "abort"]);
    assert!(ok && v["state"] == "aborted", "{v}");
}

#[test]
fn a_brief_whose_sandbox_or_note_is_taken_is_refused_and_changes_nothing() {
    let t = VaultTest::new();
    assert!(
        t.quire(&["sandbox", "create", "m-1", "--no-worktree"])
            .status
            .success()
    );
    t.commit(
        &[("01_MISSIONS/m-2/mission.md", "# by hand\n")],
        "a mission note by hand",
    );
    t.drop_json("a.json", &brief("m-1", raw_steps()));
    t.drop_json("b.json", &brief("m-2", raw_steps()));
    let head = t.head();
    let (report, _) = t.apply();
    for f in &report.filed {
        crate::harness::assert_rejected(&f.receipt, "exists");
    }
    assert!(
        report.filed[0]
            .receipt
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("sandbox `m-1`")
    );
    assert_eq!(
        report.filed[1]
            .receipt
            .error
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("01_MISSIONS/m-2/mission.md")
    );
    assert_eq!(t.head(), head);
    assert!(
        t.git(&["for-each-ref", "refs/quire/missions/"])
            .trim()
            .is_empty()
    );
}

#[test]
fn a_step_whose_catalog_command_went_away_escalates_instead_of_running() {
    let t = engine_vault(&[("flaky", "exit 4")]);
    // It fails and escalates; meanwhile the operator takes the command out of the catalog.
    let s = start(&t, &brief("m-1", json!([{ "step": "a", "uses": "flaky" }])));
    assert_eq!(s["mission"]["state"], "escalated", "{s}");
    let escalation = s["decisions"][0]["id"].as_str().unwrap().to_owned();
    let toml = t.read("quire.toml").replace("flaky = \"exit 4\"\n", "");
    assert!(!toml.contains("flaky"));
    t.commit(&[("quire.toml", &toml)], "catalog without flaky");
    let (ok, v) = decide(&t, &[&escalation, "retry"]);
    assert!(ok, "{v}");
    let s = status_of(&t, "m-1");
    assert_eq!(s["mission"]["state"], "escalated", "{s}");
    assert_eq!(
        s["attempts"].as_array().unwrap().len(),
        1,
        "nothing ran: {s}"
    );
    assert!(
        s["decisions"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("no longer has"),
        "{s}"
    );
}

#[test]
fn dropped_decision_files_answer_rounds_and_escalations_but_never_start_a_brief() {
    let t = engine_vault(&[("plan", "echo planned > PLAN.md")]);
    start(
        &t,
        &brief("m-1", json!([{ "step": "plan", "uses": "plan" }])),
    );
    let tip = t.git(&["rev-parse", "mission/m-1"]).trim().to_owned();
    let file = |id: &str, answer: &str, extra: Value| {
        let mut v = json!({ "contract": "quire.decision/1", "id": id, "decision": answer });
        if let Value::Object(m) = extra {
            v.as_object_mut().unwrap().extend(m);
        }
        v
    };
    let head = t.head();
    // Every refusal has its code, and nothing moves.
    for (name, body, code) in [
        (
            "shape",
            json!({ "contract": "quire.decision/1", "id": "m-1.r1", "answer": "approve" }),
            "invalid_decision",
        ),
        (
            "unknown",
            file("nope.r1", "approve", json!({})),
            "not_found",
        ),
        (
            "wrong",
            file("m-1.r1", "retry", json!({})),
            "invalid_decision",
        ),
        (
            "stale",
            file("m-1.r1", "approve", json!({ "commit": "0000000000" })),
            "stale",
        ),
    ] {
        t.drop_json(&format!("{name}.json"), &body);
        let (report, _) = t.apply();
        let r = &report.filed.last().unwrap().receipt;
        assert_eq!(r.status, Status::Rejected, "{name}");
        assert_eq!(r.error.as_ref().unwrap().code, code, "{name}");
    }
    assert_eq!(t.head(), head);
    // A good answer takes effect in the same run: the round is promoted, by whom the file says.
    t.drop_json(
        "yes.json",
        &file(
            "m-1.r1",
            "approve",
            json!({ "commit": &tip[..10], "reason": "from a file", "by": "Ada <ada@example.org>" }),
        ),
    );
    let (report, _) = t.apply();
    assert_eq!(report.filed.last().unwrap().receipt.status, Status::Applied);
    assert_eq!(t.read("PLAN.md"), "planned\n");
    let log = t.git(&["log", "--format=%B", "main"]);
    assert!(
        log.contains("Decided-By: Ada <ada@example.org>")
            && log.contains("Decision-Reason: from a file"),
        "{log}"
    );
    let promoted = t.head();
    t.drop_json("again.json", &file("m-1.r1", "approve", json!({})));
    let (report, _) = t.apply();
    assert_eq!(
        report.filed.last().unwrap().receipt.status,
        Status::Duplicate
    );
    t.drop_json("other.json", &file("m-1.r1", "reject", json!({})));
    let (report, _) = t.apply();
    assert_eq!(
        report
            .filed
            .last()
            .unwrap()
            .receipt
            .error
            .as_ref()
            .unwrap()
            .code,
        "decided"
    );
    assert_eq!(t.head(), promoted);

    // Whoever can drop files cannot start a brief's own commands.
    let s = start(
        &t,
        &brief("m-2", json!([{ "step": "a", "run": "touch ran.txt" }])),
    );
    assert_eq!(s["mission"]["state"], "awaiting_start", "{s}");
    t.drop_json("self-start.json", &file("m-2.start", "start", json!({})));
    let (report, _) = t.apply();
    let r = &report.filed.last().unwrap().receipt;
    assert_eq!(r.error.as_ref().unwrap().code, "invalid_decision", "{r:?}");
    assert_eq!(status_of(&t, "m-2")["mission"]["state"], "awaiting_start");
    assert!(!t.exists("sandbox/m-2/ran.txt"));
}

#[test]
fn operators_retry_from_a_step_abort_and_read_logs_from_the_cli() {
    let t = engine_vault(&[
        (
            "plan",
            "echo planning round $QUIRE_ROUND; echo $QUIRE_ROUND >> rounds.txt",
        ),
        ("noop", "true"),
    ]);
    start(
        &t,
        &brief(
            "m-1",
            json!([{ "step": "plan", "uses": "plan" }, { "step": "check", "uses": "noop" }]),
        ),
    );
    let out = t.quire(&["mission", "logs", "m-1", "plan"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "planning round 1\n");
    let out = t.quire(&["mission", "logs", "m-1", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no attempt of step `nope`"));
    // Back to `plan` in a new round: the open round decision is closed, the steps run again on
    // top of what the first round made.
    let out = t.quire(&["mission", "retry", "m-1", "--from", "plan", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["mission"]["state"], "awaiting_decision", "{s}");
    assert_eq!(s["decisions"][0]["id"], "m-1.r2", "{s}");
    assert_eq!(t.git(&["show", "mission/m-1:rounds.txt"]), "1\n2\n");
    let out = t.quire(&["mission", "logs", "m-1", "--follow"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "the last attempt is `check`, which wrote nothing"
    );
    let out = t.quire(&["mission", "retry", "m-1", "--from", "nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown_step"));
    let out = t.quire(&["mission", "abort", "m-1", "--reason", "enough", "--json"]);
    assert!(out.status.success());
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["mission"]["state"], "aborted", "{s}");
    assert!(s["decisions"].as_array().unwrap().is_empty(), "{s}");
    assert!(
        t.git(&["show", "main:01_MISSIONS/m-1/mission.md"])
            .contains("status: aborted")
    );
    let out = t.quire(&["mission", "abort", "m-1"]);
    assert!(out.status.success(), "aborting again changes nothing");
    let out = t.quire(&["mission", "abort", "nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_found"));
    let out = t.quire(&["mission", "retry", "m-1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_escalated"));
}

#[test]
fn deleting_quire_state_loses_no_mission_and_runs_no_finished_step_again() {
    let t = engine_vault(&[
        (
            "plan",
            "echo once >> $QUIRE_VAULT/../plan-runs; echo planned > PLAN.md",
        ),
        ("noop", "true"),
        ("fail", "exit 4"),
    ]);
    let two = json!([{ "step": "plan", "uses": "plan" }, { "step": "check", "uses": "noop" }]);
    start(&t, &brief("wait", two.clone()));
    let s = start(
        &t,
        &brief(
            "stuck",
            json!([{ "step": "plan", "uses": "plan" }, { "step": "b", "uses": "fail" }]),
        ),
    );
    assert_eq!(s["mission"]["state"], "escalated", "{s}");
    start(
        &t,
        &brief("done", json!([{ "step": "check", "uses": "noop" }])),
    );
    assert!(decide(&t, &["done.r1", "approve"]).0);
    start(&t, &brief("ask", json!([{ "step": "a", "run": "true" }])));
    let before: Value =
        serde_json::from_slice(&t.quire(&["mission", "list", "--json"]).stdout).unwrap();
    let runs_before = std::fs::read_to_string(t.tmp.path().join("plan-runs")).unwrap();

    std::fs::remove_dir_all(t.path(".quire")).unwrap();

    let after: Value =
        serde_json::from_slice(&t.quire(&["mission", "list", "--json"]).stdout).unwrap();
    let states = |v: &Value| -> Vec<(String, String)> {
        v["missions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["id"].as_str().unwrap().to_owned(),
                    m["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    assert_eq!(states(&after), states(&before), "{after}");
    let inbox: Value = serde_json::from_slice(&t.quire(&["inbox", "--json"]).stdout).unwrap();
    let ids: Vec<&str> = inbox["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    for id in ["wait.r1", "stuck.b.r1a1", "ask.start"] {
        assert!(ids.contains(&id), "{id} missing from {inbox}");
    }
    assert_eq!(
        status_of(&t, "wait")["attempts"].as_array().unwrap().len(),
        2
    );
    // The waiting round is approved as it stands; the same brief dropped again is a duplicate;
    // no finished step ran again.
    assert!(decide(&t, &["wait.r1", "approve"]).0);
    assert_eq!(t.read("PLAN.md"), "planned\n");
    t.drop_json("again.json", &brief("wait", two));
    let (report, _) = t.apply();
    assert_eq!(
        report.filed.last().unwrap().receipt.status,
        Status::Duplicate
    );
    assert_eq!(
        std::fs::read_to_string(t.tmp.path().join("plan-runs")).unwrap(),
        runs_before
    );
}

#[test]
fn briefs_in_a_burst_of_bundles_are_accepted_and_the_repository_stays_whole() {
    // Enough files at once that the run holds new objects in memory until each batch lands: a
    // brief among them must not commit onto objects only that memory has.
    let t = with_catalog();
    for i in 0..40 {
        t.drop_json(
            &format!("{i:03}-b.json"),
            &crate::harness::bundle(
                &format!("b-{i:03}"),
                json!([{ "op": "create", "path": format!("03_NOTES/b-{i:03}.md"), "content": format!("# {i}\n") }]),
            ),
        );
        if i % 10 == 5 {
            t.drop_json(
                &format!("{i:03}-m.json"),
                &brief(
                    &format!("m-{i:03}"),
                    json!([{ "step": "plan", "uses": "plan" }]),
                ),
            );
        }
    }
    let (report, _) = t.apply();
    let applied = report
        .filed
        .iter()
        .filter(|f| f.receipt.status == Status::Applied)
        .count();
    assert_eq!(applied, 44, "{report:?}");
    let fsck = t.git_output(&["fsck", "--full", "--strict"]);
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stderr)
    );
    for m in ["m-005", "m-015", "m-025", "m-035"] {
        assert!(
            t.git(&["show", &format!("main:01_MISSIONS/{m}/mission.md")])
                .contains(&format!("id: {m}"))
        );
        assert!(
            !t.git(&["rev-parse", &format!("mission/{m}")])
                .trim()
                .is_empty()
        );
    }
    assert_eq!(t.read("03_NOTES/b-039.md"), "# 39\n");
}

#[test]
fn a_crash_while_a_decision_takes_effect_is_finished_once_by_answering_again() {
    for point in ["after_decision_recorded", "after_mission_state"] {
        let t = engine_vault(&[("plan", "echo planned > PLAN.md")]);
        start(
            &t,
            &brief("m-1", json!([{ "step": "plan", "uses": "plan" }])),
        );
        let out = t.quire_env(
            &["decide", "m-1.r1", "approve", "--reason", "ship it"],
            &[("QUIRE_CRASH_AT", point)],
        );
        assert!(
            !out.status.success(),
            "{point}: the decision should have crashed"
        );
        let (ok, v) = decide(&t, &["m-1.r1", "approve", "--reason", "ship it"]);
        assert!(ok, "{point}: {v}");
        assert_eq!(v["state"], "promoted", "{point}: {v}");
        let log = t.git(&["log", "--format=%B", "main"]);
        assert_eq!(
            log.matches("Decision-Id: m-1.r1").count(),
            1,
            "{point}: {log}"
        );
        assert_eq!(
            log.matches("Mission m-1: promoted").count(),
            1,
            "{point}: {log}"
        );
        assert_eq!(t.read("PLAN.md"), "planned\n", "{point}");
        assert_eq!(t.status(), "", "{point}");
        let fsck = t.git_output(&["fsck", "--strict"]);
        assert!(
            fsck.status.success(),
            "{point}: {}",
            String::from_utf8_lossy(&fsck.stderr)
        );
        // A third time: nothing more.
        let (ok, v) = decide(&t, &["m-1.r1", "approve"]);
        assert!(ok && v["again"] == true, "{point}: {v}");
        assert_eq!(t.git(&["log", "--format=%B", "main"]), log, "{point}");
    }
}
