//! A person's ordinary Git use beside quire: a `git commit` waiting on its editor, a lock file left
//! by a Git process that died. quire never moves a branch past a work tree whose index another
//! program holds, so Git's index never falls behind it and nobody's next commit undoes a bundle.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quire::vault::Queue;
use serde_json::json;

use crate::harness::{VaultTest, bundle, isolated};

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `git commit -a` whose editor waits until the file `go` exists: it holds `.git/index.lock` until
/// then, as a person writing a commit message does.
fn commit_with_slow_editor(v: &VaultTest, go: &Path) -> Child {
    let editor = format!(
        "sh -c 'while [ ! -e \"{}\" ]; do sleep 0.02; done; echo \"My edit\" > \"$1\"' editor",
        go.display()
    );
    let mut cmd = Command::new("git");
    cmd.current_dir(&v.root)
        .args(["commit", "-a"])
        .env("GIT_EDITOR", editor)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    isolated(&mut cmd, v.tmp.path());
    cmd.spawn().unwrap()
}

fn quire_apply(v: &VaultTest) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quire"));
    cmd.current_dir(&v.root)
        .arg("apply")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    isolated(&mut cmd, v.tmp.path());
    cmd.spawn().unwrap()
}

fn logged(v: &VaultTest, event: &str) -> bool {
    std::fs::read_dir(v.path("07_LOGS")).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(&format!("\"{event}\"")))
        })
    })
}

#[test]
fn a_commit_waiting_on_its_editor_and_its_retry_keep_the_applied_bundle() {
    let v = VaultTest::new();
    v.commit(&[("03_NOTES/mine.md", "# Mine\n")], "mine");
    v.write("03_NOTES/mine.md", "# Mine\nedited\n");
    let go = v.tmp.path().join("go");
    let person = commit_with_slow_editor(&v, &go);
    wait_for("git to take the index lock", || v.exists(".git/index.lock"));

    v.drop_json(
        "b.json",
        &bundle(
            "beside",
            json!([{ "op": "create", "path": "03_NOTES/theirs.md", "content": "# Theirs\n" }]),
        ),
    );
    let apply = quire_apply(&v);
    // quire sees the lock and says it waits (an event, and a line on stderr).
    wait_for("quire to wait for the lock", || {
        logged(&v, "git.lock_waiting")
    });
    std::fs::write(&go, "").unwrap();
    let first = person.wait_with_output().unwrap();
    let applied = apply.wait_with_output().unwrap();
    assert!(applied.status.success(), "{applied:?}");
    assert!(String::from_utf8_lossy(&applied.stderr).contains("index.lock"));
    assert!(logged(&v, "git.lock_released"));
    if !first.status.success() {
        // What a person does when a commit fails: try again.
        v.git(&["commit", "-a", "-q", "-m", "My edit, again"]);
    }
    // Both the person's edit and the bundle's file are in main; nothing is left over.
    assert_eq!(v.git(&["show", "HEAD:03_NOTES/theirs.md"]), "# Theirs\n");
    assert_eq!(
        v.git(&["show", "HEAD:03_NOTES/mine.md"]),
        "# Mine\nedited\n"
    );
    assert_eq!(v.status(), "");
    assert_eq!(v.commits_for("beside"), 1);
    // The person's commit came first; the bundle was planned again on top of it.
    assert!(first.status.success(), "{first:?}");
    assert_eq!(v.git(&["log", "-1", "--format=%s"]).trim(), "Bundle beside");
}

#[test]
fn a_stale_index_lock_holds_the_queue_with_a_clear_message_and_nothing_diverges() {
    let v = VaultTest::new();
    let cfg = v
        .read("quire.toml")
        .replace("lock_wait_secs = 120", "lock_wait_secs = 1");
    v.commit(&[("quire.toml", &cfg)], "wait a second for Git locks");
    let head = v.head();
    std::fs::write(v.path(".git/index.lock"), "").unwrap();
    v.drop_json(
        "b.json",
        &bundle(
            "stale",
            json!([{ "op": "create", "path": "03_NOTES/stale.md", "content": "x\n" }]),
        ),
    );
    let out = v.quire(&["apply"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(".git/index.lock") && stderr.contains("delete the file"),
        "{stderr}"
    );
    // Nothing moved: the branch, the work tree, Git's index; the bundle waits.
    assert_eq!(v.head(), head);
    assert!(!v.exists("03_NOTES/stale.md"));
    assert_eq!(v.queue_names(Queue::Processing), ["b.json"]);
    std::fs::remove_file(v.path(".git/index.lock")).unwrap();
    let out = v.quire(&["apply"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(v.commits_for("stale"), 1);
    assert_eq!(v.status(), "");
}
