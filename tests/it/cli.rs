//! The `quire` binary: `init`, vault discovery, `apply`, `retry`, `check`, `demo`, exit codes.

use std::process::Command;

use quire::vault::Queue;
use serde_json::{Value, json};

use crate::harness::{VaultTest, bundle, isolated};

fn quire_in(dir: &std::path::Path, home: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quire"));
    cmd.current_dir(dir).args(args);
    isolated(&mut cmd, home);
    cmd.output().unwrap()
}

#[test]
fn init_makes_a_committed_vault_without_any_git_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quire"));
    cmd.arg("init").arg(&dir);
    isolated(&mut cmd, tmp.path());
    // No identity anywhere: not in the environment, not in any config file.
    for k in [
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "EMAIL",
    ] {
        cmd.env_remove(k);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let git = |args: &[&str]| {
        let o = Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args(args)
            .env("HOME", tmp.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    assert_eq!(git(&["symbolic-ref", "HEAD"]).trim(), "refs/heads/main");
    assert_eq!(
        git(&["log", "--format=%an <%ae>|%s"]).trim(),
        "quire <quire@localhost>|Initialize quire vault"
    );
    let tracked = git(&["ls-files"]);
    for must in [
        "quire.toml",
        ".gitignore",
        "00_INBOX/Welcome.md",
        "01_MISSIONS/.gitkeep",
    ] {
        assert!(
            tracked.lines().any(|l| l == must),
            "{must} not committed:\n{tracked}"
        );
    }
    assert!(!tracked.contains(".env"), ".env must never be committed");
    assert_eq!(
        git(&["status", "--porcelain", "--ignored"])
            .lines()
            .filter(|l| !l.starts_with("!!"))
            .count(),
        0
    );

    // .env: a random token, readable by its owner only.
    let env = std::fs::read_to_string(dir.join(".env")).unwrap();
    let token = env
        .lines()
        .find_map(|l| l.strip_prefix("QUIRE_TOKEN="))
        .unwrap();
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(dir.join(".env"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
    for q in Queue::ALL {
        assert!(dir.join(q.rel()).is_dir(), "{}", q.rel());
    }

    // A second vault gets a different token.
    let other = tmp.path().join("w");
    assert!(
        quire_in(tmp.path(), tmp.path(), &["init", other.to_str().unwrap()])
            .status
            .success()
    );
    assert_ne!(std::fs::read_to_string(other.join(".env")).unwrap(), env);

    // Running init again on a vault fills in what is missing and changes nothing else.
    std::fs::remove_file(dir.join(".env")).unwrap();
    let out = quire_in(tmp.path(), tmp.path(), &["init", dir.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(dir.join(".env").is_file());
    assert_eq!(git(&["rev-list", "--count", "HEAD"]).trim(), "1");
}

#[test]
fn init_refuses_a_folder_that_is_not_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("notes");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("diary.md"), "private\n").unwrap();
    let out = quire_in(tmp.path(), tmp.path(), &["init", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not empty") && err.contains("quire.toml"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "nothing written"
    );
}

#[test]
fn init_adopts_existing_notes_once_quire_toml_is_added() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("notes");
    std::fs::create_dir_all(dir.join("journal")).unwrap();
    std::fs::write(dir.join("journal/day.md"), "# Day\n").unwrap();
    std::fs::write(dir.join(".gitignore"), "*.bak").unwrap();
    std::fs::write(dir.join("quire.toml"), "[site]\ntitle = \"Mine\"\n").unwrap();
    let out = quire_in(tmp.path(), tmp.path(), &["init", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ignore = std::fs::read_to_string(dir.join(".gitignore")).unwrap();
    assert!(ignore.starts_with("*.bak\n"));
    for l in quire::workflow::REQUIRED_IGNORES {
        assert!(ignore.lines().any(|x| x == *l), "{l}");
    }
    let tracked = Command::new("git")
        .arg("-C")
        .arg(&dir)
        .args(["ls-files"])
        .output()
        .unwrap();
    let tracked = String::from_utf8(tracked.stdout).unwrap();
    assert!(
        tracked.contains("journal/day.md") && !tracked.contains(".env"),
        "{tracked}"
    );
    assert!(
        !dir.join("00_INBOX").exists(),
        "an adopted vault keeps its own layout"
    );
}

#[test]
fn vaults_are_found_by_flag_environment_or_walking_up() {
    let v = VaultTest::new();
    let deep = v.path("03_NOTES/deeper");
    std::fs::create_dir_all(&deep).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let root = v.root.to_str().unwrap();

    // Walking up from a subfolder.
    assert!(quire_in(&deep, v.tmp.path(), &["check"]).status.success());
    // --vault from anywhere.
    assert!(
        quire_in(elsewhere.path(), v.tmp.path(), &["--vault", root, "check"])
            .status
            .success()
    );
    // QUIRE_VAULT from anywhere.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quire"));
    cmd.current_dir(elsewhere.path()).arg("check");
    isolated(&mut cmd, v.tmp.path());
    cmd.env("QUIRE_VAULT", root);
    assert!(cmd.output().unwrap().status.success());
    // Nowhere: a clear error, exit 1.
    let out = quire_in(elsewhere.path(), v.tmp.path(), &["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no quire vault here"));
}

#[test]
fn usage_errors_exit_2() {
    let v = VaultTest::new();
    assert_eq!(v.quire(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(v.quire(&["retry"]).status.code(), Some(2));
    assert_eq!(v.quire(&["apply", "--bogus"]).status.code(), Some(2));
}

#[test]
fn apply_exit_codes_and_json() {
    let v = VaultTest::new();
    let out = v.quire(&["apply"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Nothing to apply"));

    v.drop_json(
        "good.json",
        &bundle(
            "good",
            json!([{ "op": "create", "path": "03_NOTES/g.md", "content": "g\n" }]),
        ),
    );
    let out = v.quire(&["apply"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("applied") && text.contains("good"), "{text}");

    // A duplicate is still success.
    v.drop_json(
        "again.json",
        &bundle(
            "good",
            json!([{ "op": "create", "path": "03_NOTES/g.md", "content": "g\n" }]),
        ),
    );
    assert_eq!(v.quire(&["apply"]).status.code(), Some(0));

    v.drop_json(
        "bad.json",
        &bundle(
            "bad",
            json!([{ "op": "delete", "path": "03_NOTES/missing.md" }]),
        ),
    );
    let out = v.quire(&["apply", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["rejected"], 1);
    assert_eq!(
        report["bundles"][0]["receipt"]["error"]["code"],
        "not_found"
    );
    assert_eq!(
        report["bundles"][0]["file"],
        "contributions/rejected/bad.json"
    );
}

#[test]
fn apply_named_files_copies_them_in_and_applies_only_them() {
    let v = VaultTest::new();
    let outside = v.tmp.path().join("incoming.json");
    std::fs::write(
        &outside,
        serde_json::to_vec(&bundle(
            "named",
            json!([{ "op": "create", "path": "03_NOTES/n.md", "content": "n\n" }]),
        ))
        .unwrap(),
    )
    .unwrap();
    v.drop_json(
        "waiting.json",
        &bundle(
            "waiting",
            json!([{ "op": "create", "path": "03_NOTES/w.md", "content": "w\n" }]),
        ),
    );
    let out = v.quire(&["apply", outside.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(v.exists("03_NOTES/n.md"));
    assert!(
        !v.exists("03_NOTES/w.md"),
        "only the named bundle is applied"
    );
    assert!(outside.is_file(), "the named file is copied, not taken");
    assert_eq!(v.queue_names(Queue::Pending), ["waiting.json"]);
    let out = v.quire(&["apply", "nope.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.json"));
}

#[test]
fn retry_puts_a_rejected_bundle_back() {
    let v = VaultTest::new();
    v.commit(&[("03_NOTES/a.md", "# A\n")], "fixture");
    v.write("03_NOTES/a.md", "unsaved\n");
    v.drop_json(
        "edit-a.json",
        &bundle(
            "edit-a",
            json!([{ "op": "patch", "path": "03_NOTES/a.md", "body": [ { "append": "x" } ] }]),
        ),
    );
    assert_eq!(v.quire(&["apply"]).status.code(), Some(1));
    assert_eq!(
        v.queue_names(Queue::Rejected),
        ["edit-a.json", "edit-a.receipt.json"]
    );

    // The person commits their edit, then retries by id.
    v.git(&["commit", "-q", "-am", "my edit"]);
    let out = v.quire(&["retry", "edit-a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(v.queue_names(Queue::Pending), ["edit-a.json"]);
    assert!(v.queue_names(Queue::Rejected).is_empty());
    assert_eq!(v.quire(&["apply"]).status.code(), Some(0));
    assert_eq!(v.read("03_NOTES/a.md"), "unsaved\nx\n");

    // Unknown ids: exit 1 with a message.
    let out = v.quire(&["retry", "never-seen"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("never-seen"));
}

#[test]
fn retry_by_name_and_ambiguous_ids() {
    let v = VaultTest::new();
    for name in ["one.json", "two.json"] {
        v.drop_json(
            name,
            &bundle("same-id", json!([{ "op": "delete", "path": "missing.md" }])),
        );
    }
    assert_eq!(v.quire(&["apply"]).status.code(), Some(1));
    let out = v.quire(&["retry", "same-id"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("one") && err.contains("two"), "{err}");
    assert!(v.quire(&["retry", "two"]).status.success());
    assert_eq!(v.queue_names(Queue::Pending), ["two.json"]);
}

#[test]
fn check_validates_pending_bundles_against_the_schema() {
    let v = VaultTest::new();
    let out = v.quire(&["check"]);
    assert!(out.status.success());

    v.drop_json(
        "fine.json",
        &bundle(
            "fine",
            json!([{ "op": "create", "path": "x.md", "content": "" }]),
        ),
    );
    assert!(v.quire(&["check"]).status.success());

    v.drop_json(
        "bad.json",
        &bundle("bad", json!([{ "op": "create", "path": "x.md" }])),
    );
    v.drop_bytes("broken.json", b"{\n  \"id\": \n}");
    v.drop_bytes(".partial.json", b"not checked: still being written");
    let out = v.quire(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["bundles_checked"], 3);
    let problems = report["problems"].as_array().unwrap();
    let of = |f: &str| {
        problems
            .iter()
            .filter(|p| p["file"] == f)
            .collect::<Vec<_>>()
    };
    assert!(of("contributions/pending/bad.json").iter().any(|p| p["code"] == "schema" && p["message"].as_str().unwrap().contains("/changes/0")));
    assert!(
        of("contributions/pending/bad.json")
            .iter()
            .any(|p| p["code"] == "invalid_bundle")
    );
    let broken = of("contributions/pending/broken.json");
    assert_eq!(broken[0]["code"], "invalid_json");
    assert_eq!(broken[0]["line"], 3);
    assert!(of("contributions/pending/fine.json").is_empty());

    // Human output names the file and line.
    let out = v.quire(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("contributions/pending/broken.json:3"),
        "{text}"
    );
    // check never applies anything.
    assert_eq!(v.queue_names(Queue::Pending).len(), 4);
}

#[test]
fn the_schema_file_in_the_repo_is_the_one_check_uses() {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/contribution.schema.json"
    ))
    .unwrap();
    assert_eq!(shipped, quire::contributions::schema::SCHEMA_TEXT);
    let schema: Value = serde_json::from_str(&shipped).unwrap();
    assert_eq!(
        schema["properties"]["contract"]["const"],
        "quire.contribution/1"
    );
}

#[test]
fn demo_runs_the_tour_and_can_run_again() {
    let tmp = tempfile::tempdir().unwrap();
    let out = quire_in(
        tmp.path(),
        tmp.path(),
        &["demo", "tour", "--json", "--no-daemon"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["applied"].as_u64().unwrap() >= 5, "{report}");
    assert!(report["rejected"].as_u64().unwrap() >= 1);
    assert!(report["duplicate"].as_u64().unwrap() >= 1);
    let dir = tmp.path().join("tour");
    let status = Command::new("git")
        .arg("-C")
        .arg(&dir)
        .args(["status", "--porcelain"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&status.stdout), "");
    // Nothing was written outside the vault by the unsafe sample.
    assert!(!tmp.path().join("outside.md").exists());
    // The demo's notes are healthy: no broken links, no bad dates.
    let check = quire_in(&dir, tmp.path(), &["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    // Two missions ran their steps by themselves: one approved and promoted, one waiting.
    let list: Value =
        serde_json::from_slice(&quire_in(&dir, tmp.path(), &["mission", "list", "--json"]).stdout)
            .unwrap();
    let state = |id: &str| {
        list["missions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .map(|m| m["state"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        state("newsletter-001").as_deref(),
        Some("promoted"),
        "{list}"
    );
    assert_eq!(
        state("garden-plan-002").as_deref(),
        Some("awaiting_decision"),
        "{list}"
    );
    let note = std::fs::read_to_string(dir.join("03_NOTES/missions/newsletter-001.md")).unwrap();
    assert!(note.contains("first draft"), "{note}");
    let inbox = quire_in(&dir, tmp.path(), &["inbox"]);
    assert!(String::from_utf8_lossy(&inbox.stdout).contains("garden-plan-002.r1"));

    let again = quire_in(
        tmp.path(),
        tmp.path(),
        &["demo", "tour", "--json", "--no-daemon"],
    );
    assert!(again.status.success());
    let report: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(report["applied"], 0, "{report}");
}

#[test]
fn a_typo_in_quire_toml_is_an_error_naming_file_and_key() {
    let v = VaultTest::new();
    std::fs::write(v.path("quire.toml"), "[contributions]\nmax_change = 5\n").unwrap();
    let out = v.quire(&["apply"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("quire.toml") && err.contains("max_change") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn apply_refuses_a_folder_as_a_bundle() {
    let v = VaultTest::new();
    let out = v.quire(&["apply", "03_NOTES"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a file"));
}

/// Runs `quire args` in the vault with its stdout a pipe whose reader is already gone, as in
/// `quire apply | head -0`.
fn with_stdout_closed(v: &VaultTest, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quire"));
    cmd.current_dir(&v.root)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    isolated(&mut cmd, v.tmp.path());
    let mut child = cmd.spawn().unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn a_reader_that_goes_away_ends_output_quietly_and_the_work_still_finishes() {
    let v = VaultTest::new();
    for i in 0..20 {
        v.drop_json(
            &format!("{i:02}.json"),
            &bundle(
                &format!("pipe-{i:02}"),
                json!([{ "op": "create", "path": format!("03_NOTES/p{i:02}.md"), "content": "- [ ] task 📅 2026-12-01\n" }]),
            ),
        );
    }
    let out = with_stdout_closed(&v, &["apply"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
    assert_eq!(
        v.queue_names(Queue::Processed).len(),
        40,
        "every bundle and its receipt"
    );
    for args in [
        &["tasks"][..],
        &["tasks", "--json"],
        &["agenda", "--today", "2026-12-01", "--json"],
        &["calendar"],
        &["check"],
        &["missions"],
    ] {
        let out = with_stdout_closed(&v, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
        assert_ne!(out.status.code(), Some(101), "{args:?}");
        assert!(
            out.status.code().is_some(),
            "{args:?} was killed by a signal"
        );
    }
}

#[test]
fn output_that_cannot_be_written_is_said_once_and_the_work_still_finishes() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        eprintln!("skipped: this system has no /dev/full");
        return;
    };
    let v = VaultTest::new();
    v.drop_json(
        "full.json",
        &bundle(
            "to-a-full-stdout",
            json!([{ "op": "create", "path": "03_NOTES/full.md", "content": "# Full\n" }]),
        ),
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quire"));
    cmd.current_dir(&v.root)
        .args(["apply"])
        .stdout(full)
        .stderr(std::process::Stdio::piped());
    isolated(&mut cmd, v.tmp.path());
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        stderr.matches("could not write to standard output").count(),
        1,
        "{stderr}"
    );
    assert!(v.root.join("03_NOTES/full.md").exists());
}
