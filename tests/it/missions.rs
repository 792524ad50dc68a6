//! Missions: briefs dropped, posted or started, accepted once, refused with a coded receipt.

use quire::contributions::Status;
use quire::vault::Queue;
use serde_json::{Value, json};

use crate::harness::VaultTest;

fn brief(id: &str, pipeline: Value) -> Value {
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
    // The sandbox starts from main as it now is, with its worktree.
    assert_eq!(t.git(&["rev-parse", "mission/moon-1"]).trim(), t.head());
    assert!(t.exists("sandbox/moon-1/01_MISSIONS/moon-1/mission.md"));
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
            t.exists("sandbox/moon-1/01_MISSIONS/moon-1/mission.md"),
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
