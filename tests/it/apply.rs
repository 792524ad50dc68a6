//! Applying bundles: every op, one commit per bundle, receipts, idempotency, all-or-nothing, the work
//! tree and Git's index kept in step, `base` and `dirty_worktree`.

use quire::contributions::Status;
use quire::vault::Queue;
use serde_json::{Value, json};

use crate::harness::{VaultTest, assert_applied, assert_rejected, bundle};

fn seeded() -> VaultTest {
    let v = VaultTest::new();
    v.commit(
        &[
            ("03_NOTES/a.md", "---\ntitle: A\ntags: [x, y]  # kept as written\n---\n# A\n\n<!-- quire:begin summary -->\nold summary\n<!-- quire:end summary -->\n\n## Tasks\n- [ ] first\n\n## Notes\ntext\n"),
            ("03_NOTES/plain.md", "# Plain\r\nno front matter\r\n"),
            ("00_INBOX/idea.md", "an idea\n"),
            ("00_INBOX/old.md", "old\n"),
            ("data/settings.json", "{\n  \"theme\": \"paper\",\n  \"n\": 1\n}\n"),
            ("data/conf.yaml", "name: x\nlist: [1]\n"),
            ("data/conf.toml", "title = \"t\"\n[site]\nthemes = [\"paper\"]\n"),
        ],
        "fixtures",
    );
    v
}

#[test]
fn every_op_in_one_bundle_is_one_commit_with_trailers_and_author() {
    let v = seeded();
    let before = v.head();
    let b = bundle(
        "every-op-1",
        json!([
            { "op": "create", "path": "01_MISSIONS/m-1/mission.md", "content": "---\nid: m-1\n---\n# M\n" },
            { "op": "create", "path": "05_RESOURCES/pixel.png", "content": "iVBORw0KGgo=", "encoding": "base64" },
            { "op": "patch", "path": "data/settings.json", "patch": [ { "op": "replace", "path": "/theme", "value": "desk" } ] },
            { "op": "patch", "path": "data/conf.yaml", "patch": [ { "op": "add", "path": "/list/-", "value": 2 } ] },
            { "op": "patch", "path": "data/conf.toml", "patch": [ { "op": "add", "path": "/site/themes/-", "value": "desk" } ] },
            { "op": "patch", "path": "03_NOTES/a.md", "frontmatter": [ { "op": "add", "path": "/status", "value": "active" } ] },
            { "op": "patch", "path": "03_NOTES/a.md", "body": [
                { "replace_block": "summary", "content": "new summary\n" },
                { "append_under_heading": "Tasks", "content": "- [ ] second 📅 2026-12-01\n" } ] },
            { "op": "patch", "path": "03_NOTES/plain.md", "frontmatter": [ { "op": "add", "path": "/title", "value": "Plain" } ] },
            { "op": "patch", "path": "03_NOTES/plain.md", "body": [ { "append": "more" }, { "prepend": "top" } ] },
            { "op": "move", "path": "00_INBOX/idea.md", "to": "03_NOTES/idea.md" },
            { "op": "delete", "path": "00_INBOX/old.md" }
        ]),
    );
    let r = v.apply_one(&b);
    assert_applied(&r);

    // One commit, on main, from the previous tip, with the bundle's author and quire's trailers.
    assert_eq!(
        v.git(&["rev-list", "--count", &format!("{before}..HEAD")])
            .trim(),
        "1"
    );
    assert_eq!(r.commit.as_deref(), Some(v.head().as_str()));
    assert_eq!(r.branch.as_deref(), Some("main"));
    let msg = v.git(&["log", "-1", "--format=%an <%ae>%n%B"]);
    assert!(
        msg.starts_with("Agent Smith <agent@example.org>\nBundle every-op-1\n\n"),
        "{msg}"
    );
    assert!(msg.contains("Contribution-Id: every-op-1\n"), "{msg}");
    let bytes = std::fs::read(
        v.vault()
            .queue_dir(Queue::Processed)
            .join("every-op-1.json"),
    )
    .unwrap();
    let sha = quire::contributions::sha256_hex(&bytes);
    assert!(
        msg.contains(&format!("Contribution-Sha256: {sha}\n")),
        "{msg}"
    );
    // Git itself reads the trailers back.
    let trailers = v.git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Contribution-Id,valueonly)",
    ]);
    assert_eq!(trailers.trim(), "every-op-1");

    // The files.
    assert_eq!(
        v.read("01_MISSIONS/m-1/mission.md"),
        "---\nid: m-1\n---\n# M\n"
    );
    assert_eq!(
        std::fs::read(v.path("05_RESOURCES/pixel.png")).unwrap(),
        b"\x89PNG\r\n\x1a\n"
    );
    assert_eq!(
        v.read("data/settings.json"),
        "{\n  \"theme\": \"desk\",\n  \"n\": 1\n}\n"
    );
    assert_eq!(v.read("data/conf.yaml"), "name: x\nlist:\n- 1\n- 2\n");
    assert!(
        v.read("data/conf.toml")
            .contains("themes = [\"paper\", \"desk\"]"),
        "{}",
        v.read("data/conf.toml")
    );
    assert_eq!(
        v.read("03_NOTES/a.md"),
        "---\ntitle: A\ntags: [x, y]  # kept as written\nstatus: active\n---\n# A\n\n<!-- quire:begin summary -->\nnew summary\n<!-- quire:end summary -->\n\n## Tasks\n- [ ] first\n- [ ] second 📅 2026-12-01\n\n## Notes\ntext\n"
    );
    assert_eq!(
        v.read("03_NOTES/plain.md"),
        "---\r\ntitle: Plain\r\n---\r\ntop\r\n# Plain\r\nno front matter\r\nmore\r\n"
    );
    assert_eq!(v.read("03_NOTES/idea.md"), "an idea\n");
    assert!(!v.exists("00_INBOX/idea.md") && !v.exists("00_INBOX/old.md"));

    // Work tree and index match the commit: nothing for `git status` to report.
    assert_eq!(v.status(), "");

    // The receipt, exactly the contract's keys.
    let receipt = v.receipt(Queue::Processed, "every-op-1");
    let keys: Vec<&str> = receipt
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "status",
            "branch",
            "commit",
            "files",
            "received_at",
            "applied_at",
            "duration_ms"
        ]
    );
    let files: Vec<&str> = receipt["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "00_INBOX/idea.md",
            "00_INBOX/old.md",
            "01_MISSIONS/m-1/mission.md",
            "03_NOTES/a.md",
            "03_NOTES/idea.md",
            "03_NOTES/plain.md",
            "05_RESOURCES/pixel.png",
            "data/conf.toml",
            "data/conf.yaml",
            "data/settings.json"
        ]
    );
    // The bundle is filed unchanged beside its receipt.
    assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), b);
}

#[test]
fn a_failing_change_anywhere_changes_nothing() {
    let v = seeded();
    let before = v.fingerprint();
    let b = bundle(
        "all-or-nothing",
        json!([
            { "op": "create", "path": "03_NOTES/new.md", "content": "new\n" },
            { "op": "patch", "path": "data/settings.json", "patch": [ { "op": "replace", "path": "/theme", "value": "desk" } ] },
            { "op": "delete", "path": "00_INBOX/old.md" },
            { "op": "patch", "path": "03_NOTES/a.md", "body": [ { "replace": { "find": "not in the note", "with": "x" } } ] }
        ]),
    );
    let r = v.apply_one(&b);
    assert_rejected(&r, "patch_failed");
    let e = r.error.unwrap();
    assert_eq!(e.change, Some(3));
    assert_eq!(e.path.as_deref(), Some("03_NOTES/a.md"));
    assert_eq!(v.fingerprint(), before);
    // rejected/ keeps the bundle byte for byte as it came.
    let kept: Value = serde_json::from_slice(
        &std::fs::read(v.vault().queue_dir(Queue::Rejected).join("b.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(kept, b);
    let receipt = v.receipt(Queue::Rejected, "b");
    let keys: Vec<&str> = receipt
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["id", "status", "error", "received_at", "duration_ms"]
    );
    let err_keys: Vec<&str> = receipt["error"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(err_keys, ["code", "message", "change", "path"]);
}

#[test]
fn each_refusal_code_for_file_state() {
    let v = seeded();
    let cases = [
        (
            json!([{ "op": "create", "path": "03_NOTES/a.md", "content": "x" }]),
            "exists",
        ),
        (
            json!([{ "op": "move", "path": "00_INBOX/idea.md", "to": "03_NOTES/a.md" }]),
            "exists",
        ),
        (
            json!([{ "op": "create", "path": "03_NOTES/a.md/x.md", "content": "x" }]),
            "exists",
        ),
        (
            json!([{ "op": "create", "path": "03_NOTES", "content": "x" }]),
            "exists",
        ),
        (json!([{ "op": "delete", "path": "nope.md" }]), "not_found"),
        (
            json!([{ "op": "move", "path": "nope.md", "to": "x.md" }]),
            "not_found",
        ),
        (
            json!([{ "op": "patch", "path": "nope.json", "patch": [] }]),
            "not_found",
        ),
        (json!([{ "op": "delete", "path": "03_NOTES" }]), "not_found"),
        (
            json!([{ "op": "patch", "path": "data/settings.json", "patch": [ { "op": "test", "path": "/theme", "value": "desk" } ] }]),
            "test_failed",
        ),
        (
            json!([{ "op": "patch", "path": "data/settings.json", "patch": [ { "op": "remove", "path": "/missing" } ] }]),
            "patch_failed",
        ),
        (
            json!([{ "op": "patch", "path": "03_NOTES/a.md", "patch": [ { "op": "remove", "path": "/x" } ] }]),
            "patch_failed",
        ),
        (
            json!([{ "op": "patch", "path": "data/settings.json", "body": [ { "append": "x" } ] }]),
            "patch_failed",
        ),
        (
            json!([{ "op": "patch", "path": "03_NOTES/a.md", "body": [ { "replace_block": "nope", "content": "" } ] }]),
            "patch_failed",
        ),
        (
            json!([{ "op": "patch", "path": "03_NOTES/a.md", "body": [ { "append_under_heading": "Nope", "content": "x" } ] }]),
            "patch_failed",
        ),
        (
            json!([{ "op": "patch", "path": "03_NOTES/a.md", "frontmatter": [ { "op": "replace", "path": "", "value": [1] } ] }]),
            "patch_failed",
        ),
    ];
    let before = v.fingerprint();
    for (i, (changes, code)) in cases.into_iter().enumerate() {
        let r = v.apply_one(&bundle(&format!("case-{i}"), changes.clone()));
        assert_rejected(&r, code);
        assert!(!r.error.as_ref().unwrap().message.is_empty());
        assert_eq!(v.fingerprint(), before, "{changes}");
    }
}

#[test]
fn changes_see_earlier_changes_of_the_same_bundle() {
    let v = seeded();
    let r = v.apply_one(&bundle(
        "chain",
        json!([
            { "op": "create", "path": "03_NOTES/n.md", "content": "# N\n" },
            { "op": "patch", "path": "03_NOTES/n.md", "frontmatter": [ { "op": "add", "path": "/a", "value": 1 } ] },
            { "op": "move", "path": "03_NOTES/n.md", "to": "03_NOTES/m.md" },
            { "op": "delete", "path": "00_INBOX/old.md" },
            { "op": "create", "path": "00_INBOX/old.md", "content": "recreated\n" }
        ]),
    ));
    assert_applied(&r);
    assert_eq!(v.read("03_NOTES/m.md"), "---\na: 1\n---\n# N\n");
    assert!(!v.exists("03_NOTES/n.md"));
    assert_eq!(v.read("00_INBOX/old.md"), "recreated\n");
    assert_eq!(v.status(), "");
}

#[test]
fn an_applied_id_is_never_applied_again_even_after_losing_quire_state() {
    let v = seeded();
    let first = bundle(
        "once",
        json!([{ "op": "create", "path": "03_NOTES/once.md", "content": "1\n" }]),
    );
    assert_applied(&v.apply_one(&first));
    let head = v.head();

    // The same bundle again: a duplicate, no commit, filed beside the first under a new name.
    let r = v.apply_one(&first);
    assert_eq!(r.status, Status::Duplicate);
    assert_eq!(r.commit.as_deref(), Some(head.as_str()));
    assert_eq!(v.head(), head);
    assert!(v.exists("contributions/processed/once.json"));
    assert!(v.exists("contributions/processed/once~2.json"));
    assert_eq!(v.receipt(Queue::Processed, "once")["status"], "applied");
    assert_eq!(v.receipt(Queue::Processed, "once~2")["status"], "duplicate");

    // Different content under the same id: refused, naming the commit that holds the first.
    let other = bundle(
        "once",
        json!([{ "op": "create", "path": "03_NOTES/other.md", "content": "2\n" }]),
    );
    let r = v.apply_one(&other);
    assert_eq!(r.status, Status::Rejected);
    assert_eq!(r.error.as_ref().unwrap().code, "id_reused");
    assert!(r.error.unwrap().message.contains(&head));
    assert!(!v.exists("03_NOTES/other.md"));

    // Delete .quire/: the record is rebuilt from the commit trailers.
    std::fs::remove_dir_all(v.path(".quire")).unwrap();
    let r = v.apply_one(&first);
    assert_eq!(r.status, Status::Duplicate);
    assert_eq!(r.commit.as_deref(), Some(head.as_str()));
    assert_eq!(v.head(), head);
    assert_eq!(v.commits_for("once"), 1);
}

#[test]
fn ids_committed_by_hand_count_as_applied() {
    // Someone applied a bundle elsewhere and pushed; its trailer is in the history.
    let v = seeded();
    let elsewhere = bundle(
        "from-elsewhere",
        json!([{ "op": "create", "path": "03_NOTES/x.md", "content": "" }]),
    );
    let sha = quire::contributions::sha256_hex(&serde_json::to_vec_pretty(&elsewhere).unwrap());
    v.write("03_NOTES/by-hand.md", "x\n");
    v.git(&["add", "-A"]);
    v.git(&[
        "commit",
        "-q",
        "-m",
        &format!(
            "Applied elsewhere\n\nContribution-Id: from-elsewhere\nContribution-Sha256: {sha}"
        ),
    ]);
    let r = v.apply_one(&elsewhere);
    assert_eq!(r.status, Status::Duplicate);
    assert!(!v.exists("03_NOTES/x.md"));
    // A commit that names the id without the bundle's hash cannot tell a resend from a reuse: the
    // id counts as applied.
    v.git(&[
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "Older tool\n\nContribution-Id: no-hash",
    ]);
    let r = v.apply_one(&bundle(
        "no-hash",
        json!([{ "op": "create", "path": "03_NOTES/y.md", "content": "" }]),
    ));
    assert_eq!(r.status, Status::Duplicate);
}

#[test]
fn uncommitted_edits_are_never_overwritten() {
    let v = seeded();
    let patch_a = |id: &str| {
        bundle(
            id,
            json!([{ "op": "patch", "path": "03_NOTES/a.md", "frontmatter": [ { "op": "add", "path": "/s", "value": 1 } ] }]),
        )
    };

    // Modified on disk.
    v.write("03_NOTES/a.md", "my unsaved thoughts\n");
    let before = v.fingerprint();
    let r = v.apply_one(&patch_a("dirty-1"));
    assert_rejected(&r, "dirty_worktree");
    let e = r.error.unwrap();
    assert!(
        e.message.contains("03_NOTES/a.md") && e.message.contains("quire retry dirty-1"),
        "{}",
        e.message
    );
    assert_eq!(e.path.as_deref(), Some("03_NOTES/a.md"));
    assert_eq!(v.fingerprint(), before);
    assert_eq!(v.read("03_NOTES/a.md"), "my unsaved thoughts\n");

    // Deleted on disk.
    v.git(&["checkout", "--", "03_NOTES/a.md"]);
    std::fs::remove_file(v.path("03_NOTES/a.md")).unwrap();
    assert_rejected(&v.apply_one(&patch_a("dirty-2")), "dirty_worktree");
    v.git(&["checkout", "--", "03_NOTES/a.md"]);

    // Staged, with the work tree matching the index.
    v.write("03_NOTES/a.md", "staged\n");
    v.git(&["add", "03_NOTES/a.md"]);
    assert_rejected(&v.apply_one(&patch_a("dirty-3")), "dirty_worktree");
    v.git(&["reset", "-q", "--hard"]);

    // An untracked file where the bundle would create one.
    v.write("03_NOTES/new.md", "mine, not yet added\n");
    let r = v.apply_one(&bundle(
        "dirty-4",
        json!([{ "op": "create", "path": "03_NOTES/new.md", "content": "theirs\n" }]),
    ));
    assert_rejected(&r, "dirty_worktree");
    assert_eq!(v.read("03_NOTES/new.md"), "mine, not yet added\n");

    // A move's destination counts too.
    let r = v.apply_one(&bundle(
        "dirty-5",
        json!([{ "op": "move", "path": "00_INBOX/idea.md", "to": "03_NOTES/new.md" }]),
    ));
    assert_rejected(&r, "dirty_worktree");
    assert_eq!(r.error.unwrap().change, Some(0));

    // Edits to other files do not stand in the way, and survive the commit.
    let r = v.apply_one(&patch_a("clean-elsewhere"));
    assert_applied(&r);
    assert_eq!(v.read("03_NOTES/new.md"), "mine, not yet added\n");
    assert_eq!(v.status(), "?? 03_NOTES/new.md\n");
    assert_eq!(v.commits_for("clean-elsewhere"), 1);
}

#[test]
fn a_stale_base_applies_when_clean_and_conflicts_otherwise() {
    let v = seeded();
    let base = v.head();
    v.commit(&[("03_NOTES/later.md", "someone committed\n")], "moved on");

    // Untouched by the later commit: applies on the new tip.
    let mut b = bundle(
        "stale-but-clean",
        json!([{ "op": "patch", "path": "data/settings.json", "patch": [ { "op": "test", "path": "/theme", "value": "paper" }, { "op": "replace", "path": "/theme", "value": "desk" } ] }]),
    );
    b["base"] = json!(&base[..12]);
    assert_applied(&v.apply_one(&b));

    // Its guard no longer holds on the new tip: conflict, naming the change.
    let mut b = bundle(
        "stale-guard",
        json!([{ "op": "patch", "path": "data/settings.json", "patch": [ { "op": "test", "path": "/theme", "value": "paper" }, { "op": "replace", "path": "/theme", "value": "night" } ] }]),
    );
    b["base"] = json!(base);
    let before = v.fingerprint();
    let r = v.apply_one(&b);
    assert_rejected(&r, "conflict");
    assert_eq!(r.error.as_ref().unwrap().change, Some(0));
    assert!(r.error.unwrap().message.contains("test_failed"));
    assert_eq!(v.fingerprint(), before);

    // A create of a file made since base: conflict, not exists.
    let mut b = bundle(
        "stale-create",
        json!([{ "op": "create", "path": "03_NOTES/later.md", "content": "x" }]),
    );
    b["base"] = json!(base);
    assert_rejected(&v.apply_one(&b), "conflict");

    // The same guard failing with base at the tip is the plain error.
    let mut b = bundle(
        "fresh-guard",
        json!([{ "op": "patch", "path": "data/settings.json", "patch": [ { "op": "test", "path": "/theme", "value": "paper" } ] }]),
    );
    b["base"] = json!(v.head());
    assert_rejected(&v.apply_one(&b), "test_failed");
}

#[test]
fn sandbox_targets_must_exist() {
    let v = seeded();
    let mut b = bundle(
        "to-sandbox",
        json!([{ "op": "create", "path": "x.md", "content": "" }]),
    );
    b["target"] = json!("sandbox:nope");
    let before = v.fingerprint();
    let r = v.apply_one(&b);
    assert_rejected(&r, "unknown_target");
    assert!(
        r.error
            .unwrap()
            .message
            .contains("quire sandbox create nope")
    );
    assert_eq!(v.fingerprint(), before);
}

#[test]
fn a_checked_out_sandbox_branch_is_committed_to_and_synced() {
    // Sandboxes get their own commands later; the commit path already serves any branch, with the
    // worktree that has it checked out kept in step and `main`'s work tree untouched.
    let v = seeded();
    let wt = v.tmp.path().join("wt");
    v.git(&["branch", "mission/m-1"]);
    v.git(&["worktree", "add", "-q", wt.to_str().unwrap(), "mission/m-1"]);
    let main_before = v.head();
    let mut b = bundle(
        "into-sandbox",
        json!([{ "op": "create", "path": "03_NOTES/s.md", "content": "sandboxed\n" }]),
    );
    b["target"] = json!("sandbox:m-1");
    let r = v.apply_one(&b);
    assert_applied(&r);
    assert_eq!(r.branch.as_deref(), Some("mission/m-1"));
    assert_eq!(v.head(), main_before);
    assert!(!v.exists("03_NOTES/s.md"));
    assert_eq!(
        std::fs::read_to_string(wt.join("03_NOTES/s.md")).unwrap(),
        "sandboxed\n"
    );
    let st = std::process::Command::new("git")
        .arg("-C")
        .arg(&wt)
        .args(["status", "--porcelain"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&st.stdout), "");
}

#[test]
fn an_id_applied_to_a_sandbox_is_known_there_after_the_record_is_deleted() {
    // The record is read back from every branch in one walk that stops at main's tip: a sandbox's
    // own commits must still be found, and credited to the sandbox.
    let v = seeded();
    let wt = v.tmp.path().join("wt");
    v.git(&["branch", "mission/m-1"]);
    v.git(&["branch", "mission/m-2"]);
    v.git(&["worktree", "add", "-q", wt.to_str().unwrap(), "mission/m-1"]);
    let mut b = bundle(
        "into-sandbox",
        json!([{ "op": "create", "path": "03_NOTES/s.md", "content": "sandboxed\n" }]),
    );
    b["target"] = json!("sandbox:m-1");
    let first = v.apply_one(&b);
    assert_applied(&first);
    // Main moves on, so the walk has main's tip to stop at.
    assert_applied(&v.apply_one(&bundle(
        "on-main",
        json!([{ "op": "create", "path": "03_NOTES/m.md", "content": "main\n" }]),
    )));
    std::fs::remove_dir_all(v.path(".quire")).unwrap();
    let again = v.apply_one(&b);
    assert_eq!(again.status, Status::Duplicate, "{again:?}");
    assert_eq!(again.branch.as_deref(), Some("mission/m-1"));
    assert_eq!(again.commit, first.commit);
}

#[test]
fn events_record_each_bundle_in_the_log() {
    let v = seeded();
    v.drop_json(
        "1.json",
        &bundle(
            "ev-ok",
            json!([{ "op": "create", "path": "e.md", "content": "" }]),
        ),
    );
    v.drop_bytes("2.json", b"{ nope");
    let (report, events) = v.apply();
    assert_eq!(report.filed.len(), 2);
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    // Each bundle is reported received as it is read, and its outcome once the batch it belongs
    // to is published, in arrival order.
    assert_eq!(
        kinds,
        [
            "contribution.received",
            "contribution.received",
            "contribution.applied",
            "contribution.rejected",
            "index.updated"
        ]
    );
    assert_eq!(events[2].correlation_id.as_deref(), Some("ev-ok"));
}

#[test]
fn an_unresolved_merge_conflict_counts_as_uncommitted() {
    let v = seeded();
    v.git(&["checkout", "-q", "-b", "other"]);
    v.commit(&[("03_NOTES/a.md", "theirs\n")], "theirs");
    v.git(&["checkout", "-q", "main"]);
    v.commit(&[("03_NOTES/a.md", "ours\n")], "ours");
    let merge = v.git_output(&["merge", "other"]);
    assert!(!merge.status.success(), "the merge should conflict");
    let before = v.fingerprint();
    let r = v.apply_one(&bundle(
        "during-merge",
        json!([{ "op": "patch", "path": "03_NOTES/a.md", "body": [ { "append": "x" } ] }]),
    ));
    assert_rejected(&r, "dirty_worktree");
    assert!(r.error.unwrap().message.contains("merge conflict"));
    assert_eq!(v.fingerprint(), before);
}

#[test]
fn a_run_of_many_bundles_moves_the_branch_once_and_stores_one_pack() {
    let v = seeded();
    let before: usize = v
        .git(&["rev-list", "--count", "HEAD"])
        .trim()
        .parse()
        .unwrap();
    for i in 0..40 {
        v.drop_json(
            &format!("{i:02}.json"),
            &bundle(
                &format!("many-{i:02}"),
                json!([
                    { "op": "create", "path": format!("03_NOTES/m{i:02}.md"), "content": format!("m {i}\n") },
                    { "op": "patch", "path": "03_NOTES/a.md", "body": [ { "append_under_heading": "Tasks", "content": format!("- [ ] many {i}\n") } ] }
                ]),
            ),
        );
    }
    // The same bundle again, in the same run: a duplicate of the commit made earlier in the batch.
    let again = std::fs::read(v.path("contributions/pending/03.json")).unwrap();
    v.drop_bytes("40.json", &again);
    let (report, _) = v.apply();
    assert_eq!(report.count(Status::Applied), 40, "{report:?}");
    assert_eq!(report.count(Status::Duplicate), 1, "{report:?}");
    assert_eq!(
        report.filed[40].receipt.commit,
        report.filed[3].receipt.commit
    );
    // One commit per bundle, in arrival order, but one move of the branch.
    let after: usize = v
        .git(&["rev-list", "--count", "HEAD"])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(after, before + 40);
    assert_eq!(
        v.git(&["log", "-1", "--format=%s"]).trim(),
        "Bundle many-39"
    );
    let reflog = v.git(&["reflog", "show", "main", "--format=%gs"]);
    assert_eq!(reflog.lines().next(), Some("quire: apply 40 contributions"));
    assert_eq!(
        reflog.lines().filter(|l| l.starts_with("quire:")).count(),
        1
    );
    // The batch's objects went into one pack rather than a hundred loose files.
    let packs = std::fs::read_dir(v.path(".git/objects/pack"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "pack")
        })
        .count();
    assert_eq!(packs, 1);
    let a = v.read("03_NOTES/a.md");
    for i in 0..40 {
        assert_eq!(v.read(&format!("03_NOTES/m{i:02}.md")), format!("m {i}\n"));
        assert_eq!(a.matches(&format!("- [ ] many {i}\n")).count(), 1, "{a}");
    }
    assert_eq!(v.status(), "");
    v.git(&["fsck", "--no-dangling"]);
}

#[test]
fn a_batch_is_published_once_its_bundles_reach_64_mib() {
    let v = seeded();
    // Six bundles just under the 16 MiB limit: five of them pass 64 MiB.
    let line = "x".repeat(1023) + "\n";
    let content = line.repeat(15 * 1024 + 512);
    for i in 0..6 {
        v.drop_json(
            &format!("{i}.json"),
            &bundle(
                &format!("big-{i}"),
                json!([{ "op": "create", "path": format!("big/{i}.md"), "content": content }]),
            ),
        );
    }
    let (report, _) = v.apply();
    assert_eq!(report.count(Status::Applied), 6, "{report:?}");
    let reflog = v.git(&["reflog", "show", "main", "--format=%gs"]);
    let moves: Vec<&str> = reflog.lines().filter(|l| l.starts_with("quire:")).collect();
    assert_eq!(
        moves,
        [
            "quire: apply contribution big-5",
            "quire: apply 5 contributions"
        ]
    );
    assert_eq!(v.status(), "");
}
