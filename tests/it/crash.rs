//! `kill -9` at any instant loses no bundle, applies none twice, and leaves the repository valid; the
//! next run finishes the work.
//!
//! Two kinds of test: named crash points (`QUIRE_CRASH_AT`) abort the real binary at each step of the
//! pipeline, deterministically; and a real `kill -9` at arbitrary moments of a long run.

use std::process::{Command, Stdio};
use std::time::Duration;

use quire::vault::Queue;
use serde_json::json;

use crate::harness::{VaultTest, bundle, isolated};

/// Each crash point, and which time it is reached that the run is killed: the second bundle for the
/// points every bundle passes, the first (and only) time for the branch move, which publishes the
/// whole batch at once.
const POINTS: &[(&str, usize)] = &[
    ("after_claim", 2),
    ("before_commit", 2),
    ("after_write", 2),
    ("after_commit", 1),
    ("after_sync", 2),
    ("before_receipt", 2),
    ("after_file", 2),
];

fn vault_with_bundles(n: usize) -> (VaultTest, Vec<String>) {
    let v = VaultTest::new();
    v.commit(
        &[("03_NOTES/shared.md", "# Shared\n\n## Tasks\n")],
        "fixture",
    );
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("crash-{i:03}");
        // Each bundle creates a note and appends to a shared one, so a half-done sync would show.
        let b = bundle(
            &id,
            json!([
                { "op": "create", "path": format!("03_NOTES/n{i:03}.md"), "content": format!("note {i}\n") },
                { "op": "patch", "path": "03_NOTES/shared.md", "body": [ { "append_under_heading": "Tasks", "content": format!("- [ ] task {i}\n") } ] }
            ]),
        );
        v.drop_json(&format!("{i:03}.json"), &b);
        ids.push(id);
    }
    (v, ids)
}

/// Everything that must hold after the queue has been worked to the end, whatever happened before.
fn assert_settled(v: &VaultTest, ids: &[String]) {
    assert!(
        v.queue_names(Queue::Pending).is_empty(),
        "pending: {:?}",
        v.queue_names(Queue::Pending)
    );
    assert!(
        v.queue_names(Queue::Processing).is_empty(),
        "processing: {:?}",
        v.queue_names(Queue::Processing)
    );
    assert!(
        v.queue_names(Queue::Rejected).is_empty(),
        "rejected: {:?}",
        v.queue_names(Queue::Rejected)
    );
    let processed = v.queue_names(Queue::Processed);
    assert_eq!(processed.len(), 2 * ids.len(), "{processed:?}");
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(v.commits_for(id), 1, "{id} must be committed exactly once");
        assert_eq!(v.receipt(Queue::Processed, id)["status"], "applied", "{id}");
        assert_eq!(
            v.read(&format!("03_NOTES/n{i:03}.md")),
            format!("note {i}\n")
        );
    }
    let shared = v.read("03_NOTES/shared.md");
    for i in 0..ids.len() {
        assert_eq!(
            shared.matches(&format!("- [ ] task {i}\n")).count(),
            1,
            "{shared}"
        );
    }
    assert_eq!(v.status(), "", "work tree and index must match HEAD");
    v.git(&["fsck", "--no-dangling"]);
}

#[test]
fn a_crash_at_every_step_is_recovered_by_the_next_run() {
    crash_at_every_step(3);
}

/// Enough bundles for a run to hold its objects in memory and write them as one pack.
#[test]
fn a_crash_at_every_step_of_a_packed_batch_is_recovered_by_the_next_run() {
    crash_at_every_step(40);
}

fn crash_at_every_step(n: usize) {
    for (point, nth) in POINTS {
        let (v, ids) = vault_with_bundles(n);
        let out = v.quire_env(&["apply"], &[("QUIRE_CRASH_AT", &format!("{point}:{nth}"))]);
        assert!(
            !out.status.success(),
            "{point}: the run should have crashed"
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains(point));
        // Nothing was lost: every bundle is somewhere in the queue.
        let total: usize = [Queue::Pending, Queue::Processing, Queue::Processed]
            .iter()
            .map(|q| {
                v.queue_names(*q)
                    .iter()
                    .filter(|n| !n.ends_with(".receipt.json"))
                    .count()
            })
            .sum();
        assert_eq!(total, n, "{point}: a bundle went missing");
        let fsck = v.git_output(&["fsck", "--no-dangling"]);
        assert!(
            fsck.status.success(),
            "{point}: {}",
            String::from_utf8_lossy(&fsck.stderr)
        );

        let out = v.quire(&["apply"]);
        assert!(
            out.status.success(),
            "{point}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_settled(&v, &ids);
    }
}

#[test]
fn a_crash_after_commit_is_reported_applied_not_duplicate() {
    let (v, ids) = vault_with_bundles(1);
    let out = v.quire_env(&["apply"], &[("QUIRE_CRASH_AT", "after_commit")]);
    assert!(!out.status.success());
    assert_eq!(v.commits_for(&ids[0]), 1);
    // The commit is made but the work tree was not updated yet.
    assert!(!v.exists("03_NOTES/n000.md"));
    let out = v.quire(&["apply", "--json"]);
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["bundles"][0]["receipt"]["status"], "applied");
    assert_settled(&v, &ids);
}

#[test]
fn kill_9_at_arbitrary_moments_loses_nothing() {
    let (v, ids) = vault_with_bundles(120);
    // Kill the run at spread-out moments until a run finishes on its own.
    let delays = [3u64, 7, 12, 20, 30, 45, 60, 80, 110, 150, 200, 260];
    let mut kills = 0;
    for (round, delay) in delays.iter().cycle().enumerate() {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_quire"));
        cmd.current_dir(&v.root)
            .args(["apply", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        isolated(&mut cmd, v.tmp.path());
        let mut child = cmd.spawn().unwrap();
        // Three times through the delays, then a run is let finish: on a loaded machine (the
        // whole suite on two cores, a debug build) a run can take longer than every delay, and
        // the point is the kills, not a race against the clock.
        let last = round >= 3 * delays.len();
        if !last {
            std::thread::sleep(Duration::from_millis(*delay));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                continue;
            }
        }
        // Finished on its own, or let finish: read its output on another thread (a full pipe
        // would stall it), bounded, since a run that never ends is a hang, not a pass.
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(child.wait_with_output()));
        let Ok(out) = rx.recv_timeout(Duration::from_secs(120)) else {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("the queue never drained: a run let finish ran for 120 s");
        };
        let out = out.unwrap();
        assert!(
            out.status.success(),
            "round {round}: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        break;
    }
    assert!(kills > 0, "no run was killed; the test proved nothing");
    let out = v.quire(&["apply"]);
    assert!(out.status.success());
    assert_settled(&v, &ids);
    eprintln!(
        "kill -9: {kills} runs killed mid-flight, {} bundles each applied once",
        ids.len()
    );
}

#[test]
fn two_processes_never_apply_the_same_bundle() {
    let (v, ids) = vault_with_bundles(60);
    let spawn = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_quire"));
        cmd.current_dir(&v.root)
            .arg("apply")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        isolated(&mut cmd, v.tmp.path());
        cmd.spawn().unwrap()
    };
    let (mut a, mut b) = (spawn(), spawn());
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    assert_settled(&v, &ids);
}

#[test]
fn a_git_lock_left_by_a_dead_quire_is_cleared() {
    // What a quire killed inside libgit2's ref update leaves: its note, then the lock it took.
    let (v, ids) = vault_with_bundles(2);
    let git = v.path(".git");
    let lock = git.join("refs/heads/main.lock");
    std::fs::write(
        git.join("quire-locks.json"),
        serde_json::to_vec(&[&lock]).unwrap(),
    )
    .unwrap();
    std::fs::write(&lock, "0000000000000000000000000000000000000000\n").unwrap();
    let out = v.quire(&["apply"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!lock.exists());
    assert!(!git.join("quire-locks.json").exists());
    assert_settled(&v, &ids);
}

#[test]
fn a_git_lock_held_by_someone_else_is_never_removed() {
    // `git commit` waiting on its editor holds index.lock; quire has no note for it.
    let (v, ids) = vault_with_bundles(1);
    let cfg = v
        .read("quire.toml")
        .replace("lock_wait_secs = 120", "lock_wait_secs = 1");
    v.commit(&[("quire.toml", &cfg)], "wait a second for Git locks");
    let head = v.head();
    let lock = v.path(".git/index.lock");
    std::fs::write(&lock, "").unwrap();
    let out = v.quire(&["apply"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("index.lock") && err.contains("another program"),
        "{err}"
    );
    assert!(lock.exists(), "someone else's lock must stay");
    // Nothing is lost, and nothing moved past the locked index: the bundle waits in processing/.
    assert_eq!(v.head(), head);
    assert_eq!(v.queue_names(Queue::Processing).len(), 1);
    assert!(!v.path(".git/quire-index-debt.jsonl").exists());
    // Once the other Git is done, the next run applies it.
    std::fs::remove_file(&lock).unwrap();
    let out = v.quire(&["apply"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!v.path(".git/quire-index-debt.jsonl").exists());
    assert_eq!(v.receipt(Queue::Processed, &ids[0])["status"], "applied");
    assert_eq!(v.status(), "");
}

#[test]
fn journaled_index_updates_never_overwrite_a_persons_staged_change() {
    let (v, ids) = vault_with_bundles(1);
    // Killed after the work tree was updated, before the index was written.
    let out = v.quire_env(&["apply"], &[("QUIRE_CRASH_AT", "after_sync")]);
    assert!(!out.status.success());
    assert!(v.path(".git/quire-index-debt.jsonl").is_file());
    // Meanwhile a person stages their own version of a file the bundle changed, and a new file.
    v.write("03_NOTES/shared.md", "# Shared, as I want it\n");
    v.write("03_NOTES/mine.md", "mine\n");
    v.git(&["add", "03_NOTES/shared.md", "03_NOTES/mine.md"]);

    let out = v.quire(&["apply"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(v.commits_for(&ids[0]), 1);
    assert_eq!(v.receipt(Queue::Processed, &ids[0])["status"], "applied");
    // Their staged version and their file are intact; the bundle's other file is in the index.
    assert_eq!(
        v.git(&["show", ":03_NOTES/shared.md"]),
        "# Shared, as I want it\n"
    );
    assert_eq!(v.read("03_NOTES/shared.md"), "# Shared, as I want it\n");
    assert_eq!(v.git(&["show", ":03_NOTES/mine.md"]), "mine\n");
    assert_eq!(v.status(), "A  03_NOTES/mine.md\nM  03_NOTES/shared.md\n");
}
