//! Sandboxes over real repositories: create, bundles to a sandbox, diff, promotion (clean, both
//! moved, conflicting, over a person's edit, gated by a verification command), rollback (and after
//! later commits, and conflicting), discard and recovery from the archive ref, and two quire
//! processes committing to one branch at once.

use std::collections::BTreeMap;
use std::process::Output;

use quire::vault::Queue;
use serde_json::{Value, json};

use crate::harness::{VaultTest, assert_applied, assert_rejected, bundle};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs quire, expecting `code`; returns stdout and stderr joined.
fn quire_expect(t: &VaultTest, args: &[&str], code: i32) -> String {
    let o = t.quire(args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "quire {args:?}\nstdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    format!("{}{}", stdout(&o), stderr(&o))
}

fn quire_json(t: &VaultTest, args: &[&str], code: i32) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let o = t.quire(&all);
    assert_eq!(
        o.status.code(),
        Some(code),
        "quire {all:?}\nstdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)))
}

fn to_sandbox(id: &str, sandbox: &str, changes: Value) -> Value {
    let mut b = bundle(id, changes);
    b["target"] = json!(format!("sandbox:{sandbox}"));
    b
}

fn rev(t: &VaultTest, spec: &str) -> String {
    t.git(&["rev-parse", spec]).trim().to_owned()
}

/// The fingerprint without quire's run records (a refusal writes one, by design).
fn fingerprint(t: &VaultTest) -> BTreeMap<String, String> {
    t.fingerprint()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("file:06_RUNS"))
        .collect()
}

/// A vault with a committed note both sides will touch, and sandbox `m-1` with a worktree.
fn with_sandbox() -> VaultTest {
    let t = VaultTest::new();
    t.commit(
        &[(
            "02_PROJECTS/Plan.md",
            "# Plan\n\nline one\nline two\nline three\n",
        )],
        "A plan",
    );
    quire_expect(&t, &["sandbox", "create", "m-1"], 0);
    t
}

#[test]
fn create_makes_a_branch_and_worktree_and_refuses_bad_ids() {
    let t = VaultTest::new();
    let main = rev(&t, "main");
    let info = quire_json(&t, &["sandbox", "create", "m-1"], 0);
    assert_eq!(info["branch"], "mission/m-1");
    assert_eq!(info["tip"], main);
    assert_eq!(info["worktree"], "sandbox/m-1");
    assert_eq!(info["state"], "active");
    assert!(
        t.exists("sandbox/m-1/quire.toml"),
        "the worktree has the files"
    );
    let wt = t.git(&["worktree", "list", "--porcelain"]);
    assert!(
        wt.contains("sandbox/m-1") && wt.contains("branch refs/heads/mission/m-1"),
        "{wt}"
    );
    assert_eq!(
        t.status(),
        "",
        "the vault's own status stays clean (sandbox/ is ignored)"
    );

    // Branch only, and from another ref.
    t.commit(&[("03_NOTES/a.md", "a\n")], "more");
    let info = quire_json(
        &t,
        &["sandbox", "create", "m.2", "--from", &main, "--no-worktree"],
        0,
    );
    assert_eq!(info["tip"], main);
    assert_eq!(info["worktree"], Value::Null);
    assert!(!t.exists("sandbox/m.2"));

    let before = fingerprint(&t);
    for (id, why) in [
        ("-x", "starting with a letter or digit"),
        ("x.lock", "Git accepts"),
        ("a..b", "Git accepts"),
        ("a/b", "letters, digits"),
        ("a b", "letters, digits"),
        ("", "letters, digits"),
    ] {
        let out = quire_expect(&t, &["sandbox", "create", "--", id], 1);
        assert!(out.contains(why), "{id}: {out}");
    }
    let out = quire_expect(&t, &["sandbox", "create", "m-1"], 1);
    assert!(out.contains("already exists"), "{out}");
    let out = quire_expect(&t, &["sandbox", "create", "m-3", "--from", "nope"], 1);
    assert!(out.contains("names no commit"), "{out}");
    assert_eq!(before, fingerprint(&t), "refusals change nothing");
}

#[test]
fn bundles_to_a_sandbox_leave_main_alone_and_diff_shows_them() {
    let t = with_sandbox();
    let main = rev(&t, "main");
    let main_files = t.fingerprint();
    let r = t.apply_one(&to_sandbox(
        "s-1",
        "m-1",
        json!([{ "op": "create", "path": "03_NOTES/New.md", "content": "# New\n\n- [ ] Sandbox task\n" },
               { "op": "patch", "path": "02_PROJECTS/Plan.md", "body": [{ "replace": { "find": "line two", "with": "line 2" } }] }]),
    ));
    assert_applied(&r);
    assert_eq!(r.branch.as_deref(), Some("mission/m-1"));
    assert_eq!(rev(&t, "main"), main, "main did not move");
    assert!(
        t.read("sandbox/m-1/03_NOTES/New.md")
            .contains("Sandbox task")
    );
    assert!(t.read("sandbox/m-1/02_PROJECTS/Plan.md").contains("line 2"));
    assert!(!t.exists("03_NOTES/New.md"));
    let after: BTreeMap<_, _> = t
        .fingerprint()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("file:sandbox"))
        .collect();
    let before: BTreeMap<_, _> = main_files
        .into_iter()
        .filter(|(k, _)| !k.starts_with("file:sandbox"))
        .collect();
    assert_eq!(
        before
            .iter()
            .filter(|(k, _)| *k != "refs")
            .collect::<Vec<_>>(),
        after
            .iter()
            .filter(|(k, _)| *k != "refs")
            .collect::<Vec<_>>(),
        "main's work tree and index are untouched"
    );
    let wt_status = String::from_utf8(
        std::process::Command::new("git")
            .arg("-C")
            .arg(t.path("sandbox/m-1"))
            .args(["status", "--porcelain"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        wt_status, "",
        "the sandbox worktree's index follows its branch"
    );

    let list = quire_json(&t, &["sandbox", "list"], 0);
    assert_eq!(list[0]["id"], "m-1");
    assert_eq!(list[0]["ahead"], 1);
    assert_eq!(list[0]["behind"], 0);
    assert!(list[0]["created"].as_str().unwrap().starts_with("20"));

    let d = quire_json(&t, &["sandbox", "diff", "m-1"], 0);
    assert_eq!(d["base"], main);
    let files: Vec<(String, String)> = d["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["status"].as_str().unwrap().into(),
                f["path"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            ("modified".to_owned(), "02_PROJECTS/Plan.md".to_owned()),
            ("added".into(), "03_NOTES/New.md".into())
        ]
    );
    let patch = d["patch"].as_str().unwrap();
    assert!(patch.contains("-line two\n+line 2\n"), "{patch}");
    let text = quire_expect(&t, &["sandbox", "diff", "m-1"], 0);
    assert!(
        text.contains("added     03_NOTES/New.md") && text.contains("+line 2"),
        "{text}"
    );

    // A sandbox that does not exist is an unknown target, not a new branch.
    let r = t.apply_one(&to_sandbox(
        "s-2",
        "nope",
        json!([{ "op": "create", "path": "x.md", "content": "x" }]),
    ));
    assert_rejected(&r, "unknown_target");
}

#[test]
fn promotion_is_one_merge_commit_with_its_record_and_one_revert_undoes_it() {
    let t = with_sandbox();
    let before = rev(&t, "main");
    assert_applied(&t.apply_one(&to_sandbox(
        "s-1",
        "m-1",
        json!([{ "op": "create", "path": "03_NOTES/New.md", "content": "# New\n" }]),
    )));
    assert_applied(&t.apply_one(&to_sandbox(
        "s-2",
        "m-1",
        json!([{ "op": "patch", "path": "02_PROJECTS/Plan.md", "body": [{ "append": "line four\n" }] }]),
    )));
    let tip = rev(&t, "mission/m-1");

    let done = quire_json(&t, &["sandbox", "promote", "m-1"], 0);
    assert_eq!(done["status"], "done");
    let commit = done["commit"].as_str().unwrap().to_owned();
    assert_eq!(rev(&t, "main"), commit);
    // Exactly one new commit on main's first-parent line, a merge of main and the sandbox.
    assert_eq!(
        t.git(&[
            "rev-list",
            "--first-parent",
            "--count",
            &format!("{before}..main")
        ])
        .trim(),
        "1"
    );
    assert_eq!(rev(&t, "main^1"), before);
    assert_eq!(rev(&t, "main^2"), tip);
    let message = t.git(&["log", "-1", "--format=%B", "main"]);
    for trailer in [
        "Quire-Mission: m-1".to_owned(),
        "Quire-Action: promotion".into(),
        format!("Quire-Source: {tip}"),
        format!("Quire-Merge-Base: {before}"),
    ] {
        assert!(message.contains(&trailer), "{trailer} in {message}");
    }
    // The record is in the promotion commit itself.
    let record_path = done["record"].as_str().unwrap();
    assert!(record_path.starts_with("06_RUNS/promotions/"));
    let record = t.git(&["show", &format!("main:{record_path}")]);
    for field in [
        "kind: promotion".to_owned(),
        "mission: m-1".into(),
        format!("source: {tip}"),
        format!("target_before: {before}"),
        format!("merge_base: {before}"),
        "strategy: merge (main had not moved)".into(),
        "- s-1".into(),
        "- s-2".into(),
        "by: ".into(),
        "at: ".into(),
        "checks: []".into(),
    ] {
        assert!(record.contains(&field), "{field} in {record}");
    }
    // Main's work tree and Git's index followed.
    assert_eq!(t.read("03_NOTES/New.md"), "# New\n");
    assert!(t.read("02_PROJECTS/Plan.md").ends_with("line four\n"));
    assert_eq!(t.status(), "");
    let list = quire_json(&t, &["sandbox", "list"], 0);
    assert_eq!(list[0]["state"], "promoted");
    assert_eq!(list[0]["last_promotion"], commit);

    // Nothing more to promote.
    let r = quire_json(&t, &["sandbox", "promote", "m-1"], 1);
    assert_eq!(r["refusal"]["code"], "nothing_to_promote");

    // One `git revert -m 1` restores main's files exactly (what `rollback` builds on).
    let tree_before = rev(&t, &format!("{before}^{{tree}}"));
    t.git(&["revert", "--no-edit", "-m", "1", "main"]);
    t.git(&["rm", "-q", "--cached", "-r", "--ignore-unmatch", "06_RUNS"]);
    let reverted = t.git(&[
        "diff",
        "--stat",
        &tree_before,
        "HEAD",
        "--",
        ".",
        ":!06_RUNS",
    ]);
    assert_eq!(reverted, "", "a single revert undoes the promotion");
}

#[test]
fn promotion_merges_when_both_sides_moved_and_refuses_conflicts_changing_nothing() {
    let t = with_sandbox();
    // Both move, on different lines and files: a three-way merge.
    assert_applied(&t.apply_one(&to_sandbox(
        "s-1",
        "m-1",
        json!([{ "op": "patch", "path": "02_PROJECTS/Plan.md", "body": [{ "replace": { "find": "line three", "with": "line 3 (sandbox)" } }] }]),
    )));
    t.commit(
        &[(
            "02_PROJECTS/Plan.md",
            "# Plan\n\nline one (main)\nline two\nline three\n",
        )],
        "main edits the first line",
    );
    let done = quire_json(&t, &["sandbox", "promote", "m-1"], 0);
    let record = t.git(&[
        "show",
        &format!("main:{}", done["record"].as_str().unwrap()),
    ]);
    assert!(record.contains("strategy: three-way merge"), "{record}");
    assert_eq!(
        t.read("02_PROJECTS/Plan.md"),
        "# Plan\n\nline one (main)\nline two\nline 3 (sandbox)\n"
    );

    // Now both change the same line: refused, every path named, nothing moves.
    assert_applied(&t.apply_one(&to_sandbox(
        "s-2",
        "m-1",
        json!([{ "op": "patch", "path": "02_PROJECTS/Plan.md", "body": [{ "replace": { "find": "line two", "with": "line 2 (sandbox)" } }] },
               { "op": "create", "path": "03_NOTES/Both.md", "content": "sandbox\n" }]),
    )));
    t.commit(
        &[
            (
                "02_PROJECTS/Plan.md",
                "# Plan\n\nline one (main)\nline 2 (main)\nline 3 (sandbox)\n",
            ),
            ("03_NOTES/Both.md", "main\n"),
        ],
        "main edits the same line",
    );
    let before = fingerprint(&t);
    let main = rev(&t, "main");
    let sandbox = rev(&t, "mission/m-1");
    let r = quire_json(&t, &["sandbox", "promote", "m-1"], 1);
    assert_eq!(r["status"], "refused");
    assert_eq!(r["refusal"]["code"], "conflict");
    let conflicts = r["refusal"]["conflicts"].as_array().unwrap();
    let paths: Vec<&str> = conflicts
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["02_PROJECTS/Plan.md", "03_NOTES/Both.md"]);
    // The three versions are real blobs anyone can look at.
    let plan = &conflicts[0];
    assert!(
        t.git(&["cat-file", "-p", plan["ours"].as_str().unwrap()])
            .contains("line 2 (main)")
    );
    assert!(
        t.git(&["cat-file", "-p", plan["theirs"].as_str().unwrap()])
            .contains("line 2 (sandbox)")
    );
    assert!(
        t.git(&["cat-file", "-p", plan["base"].as_str().unwrap()])
            .contains("line two")
    );
    assert_eq!(conflicts[1]["base"], Value::Null, "added on both sides");
    let record = t.read(r["refusal"]["record"].as_str().unwrap());
    assert!(
        record.contains("git show") && record.contains("03_NOTES/Both.md"),
        "{record}"
    );
    assert_eq!(rev(&t, "main"), main);
    assert_eq!(rev(&t, "mission/m-1"), sandbox);
    assert_eq!(
        before,
        fingerprint(&t),
        "both work trees and every ref as they were"
    );
    let text = quire_expect(&t, &["sandbox", "promote", "m-1"], 1);
    assert!(
        text.contains("conflict 02_PROJECTS/Plan.md") && text.contains("conflict 03_NOTES/Both.md"),
        "{text}"
    );
}

#[test]
fn a_persons_uncommitted_edit_refuses_the_promotion() {
    let t = with_sandbox();
    assert_applied(&t.apply_one(&to_sandbox(
        "s-1",
        "m-1",
        json!([{ "op": "patch", "path": "02_PROJECTS/Plan.md", "body": [{ "append": "from the sandbox\n" }] },
               { "op": "create", "path": "03_NOTES/Other.md", "content": "x\n" }]),
    )));
    t.write("02_PROJECTS/Plan.md", "# Plan\n\nmy unsaved thoughts\n");
    t.write("05_RESOURCES/unrelated.md", "untracked elsewhere\n");
    let before = fingerprint(&t);
    let r = quire_json(&t, &["sandbox", "promote", "m-1"], 1);
    assert_eq!(r["refusal"]["code"], "dirty_worktree");
    assert_eq!(r["refusal"]["paths"], json!(["02_PROJECTS/Plan.md"]));
    assert!(
        r["refusal"]["message"]
            .as_str()
            .unwrap()
            .contains("02_PROJECTS/Plan.md")
    );
    assert_eq!(before, fingerprint(&t));
    assert_eq!(
        t.read("02_PROJECTS/Plan.md"),
        "# Plan\n\nmy unsaved thoughts\n"
    );

    // An edit on a path the promotion does not touch does not stand in the way.
    t.git(&["checkout", "--", "02_PROJECTS/Plan.md"]);
    quire_expect(&t, &["sandbox", "promote", "m-1"], 0);
    assert_eq!(t.read("05_RESOURCES/unrelated.md"), "untracked elsewhere\n");
    assert!(
        t.read("02_PROJECTS/Plan.md")
            .ends_with("from the sandbox\n")
    );
}

#[test]
fn a_configured_check_gates_the_promotion_and_goes_into_the_record() {
    let t = with_sandbox();
    t.commit(
        &[(
            "quire.toml",
            "[sandbox]\nverify = \"test -f 03_NOTES/Ready.md && echo all good\"\n",
        )],
        "require a check",
    );
    assert_applied(&t.apply_one(&to_sandbox(
        "s-1",
        "m-1",
        json!([{ "op": "create", "path": "03_NOTES/Draft.md", "content": "draft\n" }]),
    )));
    let before = fingerprint(&t);
    let r = quire_json(&t, &["sandbox", "promote", "m-1"], 1);
    assert_eq!(r["refusal"]["code"], "verify_failed");
    assert_eq!(r["refusal"]["check"]["exit_code"], 1);
    assert_eq!(before, fingerprint(&t));

    // Uncommitted work in the sandbox: the check would not see what is promoted.
    std::fs::write(t.path("sandbox/m-1/03_NOTES/Ready.md"), "ready\n").unwrap();
    let r = quire_json(&t, &["sandbox", "promote", "m-1"], 1);
    assert_eq!(r["refusal"]["code"], "dirty_worktree");
    std::fs::remove_file(t.path("sandbox/m-1/03_NOTES/Ready.md")).unwrap();

    assert_applied(&t.apply_one(&to_sandbox(
        "s-2",
        "m-1",
        json!([{ "op": "create", "path": "03_NOTES/Ready.md", "content": "ready\n" }]),
    )));
    let done = quire_json(&t, &["sandbox", "promote", "m-1"], 0);
    assert_eq!(done["check"]["passed"], true);
    let record = t.git(&[
        "show",
        &format!("main:{}", done["record"].as_str().unwrap()),
    ]);
    assert!(
        record.contains("command: test -f 03_NOTES/Ready.md"),
        "{record}"
    );
    assert!(
        record.contains("all good"),
        "the check's output is recorded: {record}"
    );
}

#[test]
fn rollback_reverts_on_top_of_later_work_keeps_records_and_holds_the_mission() {
    let t = with_sandbox();
    assert_applied(&t.apply_one(&to_sandbox(
        "s-1",
        "m-1",
        json!([{ "op": "create", "path": "03_NOTES/New.md", "content": "# New\n" },
               { "op": "patch", "path": "02_PROJECTS/Plan.md", "body": [{ "replace": { "find": "line three", "with": "line 3" } }] }]),
    )));
    let promoted = quire_json(&t, &["sandbox", "promote", "m-1"], 0);
    let promotion_record = promoted["record"].as_str().unwrap().to_owned();
    // Later work on main, on other lines and files.
    t.commit(
        &[
            (
                "02_PROJECTS/Plan.md",
                "# Plan\n\nline one, later\nline two\nline 3\n",
            ),
            ("03_NOTES/Later.md", "later\n"),
        ],
        "later work",
    );
    let later = rev(&t, "main");

    let done = quire_json(&t, &["sandbox", "rollback", "m-1"], 0);
    assert_eq!(done["action"], "rollback");
    assert_eq!(rev(&t, "main^"), later, "a new commit on top; history kept");
    assert!(
        !t.exists("03_NOTES/New.md"),
        "the promotion's files are undone"
    );
    assert_eq!(
        t.read("02_PROJECTS/Plan.md"),
        "# Plan\n\nline one, later\nline two\nline three\n"
    );
    assert_eq!(t.read("03_NOTES/Later.md"), "later\n", "later work stays");
    assert!(t.exists(&promotion_record), "the promotion's record stays");
    let rollback_record = t.read(done["record"].as_str().unwrap());
    assert!(
        rollback_record.contains("kind: rollback")
            && rollback_record.contains(promoted["commit"].as_str().unwrap())
    );
    assert_eq!(t.status(), "");
    let message = t.git(&["log", "-1", "--format=%B"]);
    assert!(
        message.contains(&format!(
            "Quire-Reverts: {}",
            promoted["commit"].as_str().unwrap()
        )),
        "{message}"
    );

    let list = quire_json(&t, &["sandbox", "list"], 0);
    assert_eq!(
        list[0]["state"], "rolled_back",
        "held until someone promotes it"
    );
    let r = quire_json(&t, &["sandbox", "rollback", "m-1"], 1);
    assert_eq!(r["refusal"]["code"], "not_promoted");

    // Promoting again brings the reverted work back (not just what came after).
    quire_expect(&t, &["sandbox", "promote", "m-1"], 0);
    assert_eq!(t.read("03_NOTES/New.md"), "# New\n");
    assert_eq!(
        t.read("02_PROJECTS/Plan.md"),
        "# Plan\n\nline one, later\nline two\nline 3\n"
    );
    assert_eq!(
        quire_json(&t, &["sandbox", "list"], 0)[0]["state"],
        "promoted"
    );
}

#[test]
fn a_rollback_that_conflicts_with_later_work_is_refused() {
    let t = with_sandbox();
    assert_applied(&t.apply_one(&to_sandbox(
        "s-1",
        "m-1",
        json!([{ "op": "patch", "path": "02_PROJECTS/Plan.md", "body": [{ "replace": { "find": "line two", "with": "line 2" } }] }]),
    )));
    quire_expect(&t, &["sandbox", "promote", "m-1"], 0);
    t.commit(
        &[(
            "02_PROJECTS/Plan.md",
            "# Plan\n\nline one\nline 2, edited later\nline three\n",
        )],
        "later edit of the promoted line",
    );
    let before = fingerprint(&t);
    let r = quire_json(&t, &["sandbox", "rollback", "m-1"], 1);
    assert_eq!(r["refusal"]["code"], "conflict");
    assert_eq!(r["refusal"]["conflicts"][0]["path"], "02_PROJECTS/Plan.md");
    assert_eq!(before, fingerprint(&t));
}

#[test]
fn discard_archives_the_tip_and_the_archive_brings_it_back() {
    let t = with_sandbox();
    assert_applied(&t.apply_one(&to_sandbox(
        "s-1",
        "m-1",
        json!([{ "op": "create", "path": "03_NOTES/Work.md", "content": "work\n" }]),
    )));
    let tip = rev(&t, "mission/m-1");

    // Uncommitted edits in the sandbox stop it.
    std::fs::write(t.path("sandbox/m-1/03_NOTES/Unsaved.md"), "unsaved\n").unwrap();
    let before = fingerprint(&t);
    let r = quire_json(&t, &["sandbox", "discard", "m-1"], 1);
    assert_eq!(r["refusal"]["code"], "dirty_worktree");
    assert_eq!(r["refusal"]["paths"], json!(["03_NOTES/Unsaved.md"]));
    assert_eq!(before, fingerprint(&t));
    std::fs::remove_file(t.path("sandbox/m-1/03_NOTES/Unsaved.md")).unwrap();

    let d = quire_json(&t, &["sandbox", "discard", "m-1"], 0);
    assert_eq!(d["discarded"]["archive"], "refs/quire/archive/mission/m-1");
    assert_eq!(rev(&t, "refs/quire/archive/mission/m-1"), tip);
    assert!(
        t.git_output(&["rev-parse", "--verify", "-q", "mission/m-1"])
            .stdout
            .is_empty()
    );
    assert!(!t.exists("sandbox/m-1"), "the worktree folder is gone");
    assert!(!t.git(&["worktree", "list"]).contains("sandbox/m-1"));
    let list = quire_json(&t, &["sandbox", "list"], 0);
    assert_eq!(list[0]["state"], "discarded");
    let out = quire_expect(&t, &["sandbox", "promote", "m-1"], 1);
    assert!(
        out.contains("--from refs/quire/archive/mission/m-1"),
        "{out}"
    );

    // Recovery: a new sandbox from the archive has the work.
    quire_expect(
        &t,
        &[
            "sandbox",
            "create",
            "m-1",
            "--from",
            "refs/quire/archive/mission/m-1",
        ],
        0,
    );
    assert_eq!(rev(&t, "mission/m-1"), tip);
    assert_eq!(t.read("sandbox/m-1/03_NOTES/Work.md"), "work\n");

    // Discarding again keeps the earlier archive when the tips differ.
    assert_applied(&t.apply_one(&to_sandbox(
        "s-2",
        "m-1",
        json!([{ "op": "create", "path": "03_NOTES/More.md", "content": "more\n" }]),
    )));
    let d = quire_json(&t, &["sandbox", "discard", "m-1"], 0);
    let previous = d["discarded"]["previous"].as_str().unwrap();
    assert_eq!(rev(&t, previous), tip);
    assert_eq!(
        rev(&t, "refs/quire/archive/mission/m-1"),
        d["discarded"]["tip"].as_str().unwrap()
    );
}

#[test]
fn two_quire_processes_committing_to_one_branch_at_once_both_land() {
    let t = VaultTest::new();
    let dir = t.tmp.path().join("bundles");
    std::fs::create_dir_all(&dir).unwrap();
    let mut sets = [Vec::new(), Vec::new()];
    for (p, set) in sets.iter_mut().enumerate() {
        for i in 0..25 {
            let id = format!("p{p}-{i}");
            let file = dir.join(format!("{id}.json"));
            let b = bundle(
                &id,
                json!([{ "op": "create", "path": format!("03_NOTES/{id}.md"), "content": format!("# {id}\n") }]),
            );
            std::fs::write(&file, serde_json::to_vec(&b).unwrap()).unwrap();
            set.push(file.to_string_lossy().into_owned());
        }
    }
    // A sandbox with work, promoted into main from a third process while the two apply.
    quire_expect(&t, &["sandbox", "create", "m-1", "--no-worktree"], 0);
    assert_applied(&t.apply_one(&to_sandbox(
        "s-1",
        "m-1",
        json!([{ "op": "create", "path": "04_AREAS/FromSandbox.md", "content": "x\n" }]),
    )));
    let before = rev(&t, "main");
    let children: Vec<_> = sets
        .iter()
        .map(|files| {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_quire"));
            cmd.current_dir(&t.root).arg("apply").args(files);
            crate::harness::isolated(&mut cmd, t.tmp.path());
            cmd.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    quire_expect(&t, &["sandbox", "promote", "m-1"], 0);
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for p in 0..2 {
        for i in 0..25 {
            let id = format!("p{p}-{i}");
            assert_eq!(t.commits_for(&id), 1, "{id} applied exactly once");
            assert_eq!(t.read(&format!("03_NOTES/{id}.md")), format!("# {id}\n"));
        }
    }
    let count = t.git(&["rev-list", "--count", &format!("{before}..main")]);
    assert_eq!(
        count.trim(),
        "52",
        "50 bundles, the sandbox's commit and its promotion"
    );
    assert_eq!(t.read("04_AREAS/FromSandbox.md"), "x\n");
    assert_eq!(t.status(), "");
    // Each applied bundle is filed with its receipt.
    assert_eq!(t.queue_names(Queue::Processed).len(), 2 * 51);
}

#[test]
fn a_crash_after_main_moved_is_finished_by_the_next_quire() {
    for (point, action) in [
        ("after_promote_commit", "promote"),
        ("after_rollback_commit", "rollback"),
    ] {
        let t = with_sandbox();
        assert_applied(&t.apply_one(&to_sandbox(
            "s-1",
            "m-1",
            json!([{ "op": "create", "path": "03_NOTES/New.md", "content": "# New\n" }]),
        )));
        if action == "rollback" {
            quire_expect(&t, &["sandbox", "promote", "m-1"], 0);
        }
        let before = rev(&t, "main");
        let out = t.quire_env(&["sandbox", action, "m-1"], &[("QUIRE_CRASH_AT", point)]);
        assert!(!out.status.success(), "{point}: the process died");
        assert_ne!(rev(&t, "main"), before, "{point}: main had moved");
        assert_eq!(
            t.exists("03_NOTES/New.md"),
            action == "rollback",
            "{point}: the work tree had not followed yet"
        );
        assert_ne!(t.status(), "", "{point}: the work tree lags");
        // Any quire that takes the writer lock finishes it.
        quire_expect(&t, &["apply"], 0);
        assert_eq!(t.exists("03_NOTES/New.md"), action == "promote", "{point}");
        assert_eq!(t.status(), "", "{point}: work tree and index match main");
        assert!(!t.exists(".quire/main-sync.json"));
    }
}

/// Another program moves main with plumbing (compare-and-swap `git update-ref`, as a bot or CI
/// job would) while quire applies bundles to it: quire loses swaps, re-plans on the new tip, and
/// every commit of both writers ends up in main's history and tree.
#[test]
fn a_lost_compare_and_swap_is_retried_and_no_update_is_lost() {
    let t = VaultTest::new();
    let n = 60;
    // The other writer's commits: enough to make quire lose swaps, few enough that its burst
    // ends while quire still retries, even in a debug build under the whole suite (where one
    // re-plan of the batch can take longer than one of its commits; a writer that never pauses
    // is refused by design).
    let ext = 20;
    for i in 0..n {
        t.drop_json(
            &format!("q{i:03}.json"),
            &bundle(
                &format!("q-{i}"),
                json!([{ "op": "create", "path": format!("03_NOTES/q-{i}.md"), "content": format!("q {i}\n") }]),
            ),
        );
    }
    let script = format!(
        r#"set -u
idx=$(mktemp)
i=0
while [ $i -lt {ext} ]; do
  parent=$(git rev-parse main)
  blob=$(echo "ext $i" | git hash-object -w --stdin)
  GIT_INDEX_FILE=$idx git read-tree "$parent"
  GIT_INDEX_FILE=$idx git update-index --add --cacheinfo "100644,$blob,ext/e-$i.md"
  tree=$(GIT_INDEX_FILE=$idx git write-tree)
  c=$(git commit-tree "$tree" -p "$parent" -m "external $i")
  if git update-ref refs/heads/main "$c" "$parent" 2>/dev/null; then i=$((i+1)); fi
done
rm -f "$idx"
"#
    );
    let mut bot = std::process::Command::new("sh");
    bot.arg("-c").arg(&script).current_dir(&t.root);
    crate::harness::isolated(&mut bot, t.tmp.path());
    let bot = bot.spawn().unwrap();
    let out = t.quire_env(&["apply"], &[("QUIRE_LOG", "quire=debug")]);
    let bot = bot.wait_with_output().unwrap();
    assert!(bot.status.success());
    assert!(out.status.success(), "{}", stderr(&out));
    let retries = stderr(&out).matches("planning its bundles again").count();
    eprintln!("quire re-planned {retries} times after losing the swap");

    let tree = t.git(&["ls-tree", "-r", "--name-only", "main"]);
    for i in 0..n {
        assert!(
            tree.contains(&format!("03_NOTES/q-{i}.md\n")),
            "bundle q-{i} is in main"
        );
        assert_eq!(t.commits_for(&format!("q-{i}")), 1);
    }
    for i in 0..ext {
        assert!(
            tree.contains(&format!("ext/e-{i}.md\n")),
            "external commit {i} is in main"
        );
    }
    let external = t.git(&["log", "--format=%s", "--grep=^external ", "main"]);
    assert_eq!(
        external.lines().count(),
        ext,
        "every external commit is in main's history"
    );
}

#[test]
fn refusals_without_a_worktree_a_timeout_a_promotion_or_a_sandbox() {
    let t = with_sandbox();
    // Never promoted: nothing to roll back.
    let r = quire_json(&t, &["sandbox", "rollback", "m-1"], 1);
    assert_eq!(r["refusal"]["code"], "not_promoted");
    assert!(
        r["refusal"]["message"]
            .as_str()
            .unwrap()
            .contains("never been promoted")
    );
    // No such sandbox, for every command that needs its branch (a rollback reads main's history,
    // so it works on a discarded sandbox and says "never promoted" for an unknown one).
    for cmd in ["promote", "discard", "diff"] {
        let out = quire_expect(&t, &["sandbox", cmd, "nope"], 1);
        assert!(out.contains("no sandbox `nope`"), "{cmd}: {out}");
    }

    // A check that cannot run without a worktree, and one that runs out of time.
    t.commit(
        &[(
            "quire.toml",
            "[sandbox]\nverify = \"sleep 5\"\nverify_timeout_secs = 1\n",
        )],
        "a slow check",
    );
    quire_expect(&t, &["sandbox", "create", "bare", "--no-worktree"], 0);
    assert_applied(&t.apply_one(&to_sandbox(
        "b-1",
        "bare",
        json!([{ "op": "create", "path": "03_NOTES/B.md", "content": "b\n" }]),
    )));
    let before = fingerprint(&t);
    let r = quire_json(&t, &["sandbox", "promote", "bare"], 1);
    assert_eq!(r["refusal"]["code"], "no_worktree");
    assert_applied(&t.apply_one(&to_sandbox(
        "s-1",
        "m-1",
        json!([{ "op": "create", "path": "03_NOTES/S.md", "content": "s\n" }]),
    )));
    let main = rev(&t, "main");
    let r = quire_json(&t, &["sandbox", "promote", "m-1"], 1);
    assert_eq!(r["refusal"]["code"], "verify_failed");
    assert_eq!(r["refusal"]["check"]["exit_code"], Value::Null, "killed");
    assert!(
        r["refusal"]["check"]["output"]
            .as_str()
            .unwrap()
            .contains("verify_timeout_secs")
    );
    assert_eq!(rev(&t, "main"), main);
    let after: BTreeMap<_, _> = fingerprint(&t)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("file:sandbox/m-1") && k != "refs")
        .collect();
    let before: BTreeMap<_, _> = before
        .into_iter()
        .filter(|(k, _)| !k.starts_with("file:sandbox/m-1") && k != "refs")
        .collect();
    assert_eq!(before, after, "main's work tree untouched");
}
