//! Faults injected at each step a bundle goes through (`QUIRE_FAIL_AT`, see `quire::fault`): an
//! error that belongs to one bundle refuses or marks that bundle and the queue moves on; an error
//! of the machine (a full disk) holds the queue, loses nothing, and clears when the cause does.

use quire::contributions::Status;
use quire::vault::Queue;
use serde_json::json;

use crate::harness::{VaultTest, bundle};

/// Three bundles `a`, `b`, `c`, each creating its own note, dropped in that order.
fn three(v: &VaultTest, tag: &str) {
    for name in ["a", "b", "c"] {
        let id = format!("{tag}-{name}");
        v.drop_json(
            &format!("{name}.json"),
            &bundle(
                &id,
                json!([{ "op": "create", "path": format!("03_NOTES/{id}.md"), "content": "x\n" }]),
            ),
        );
        // Arrival order is by modification time, then name.
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn receipt(v: &VaultTest, folder: Queue, name: &str) -> quire::contributions::Receipt {
    serde_json::from_value(v.receipt(folder, name)).unwrap()
}

#[test]
fn an_error_on_one_bundles_own_file_or_paths_refuses_it_and_the_next_applies() {
    for point in ["read_bundle", "worktree_check"] {
        let v = VaultTest::new();
        three(&v, point);
        let out = v.quire_env(&["apply"], &[("QUIRE_FAIL_AT", &format!("{point}:2"))]);
        assert_eq!(out.status.code(), Some(1), "{point}: {out:?}");
        let b = receipt(&v, Queue::Rejected, "b");
        assert_eq!(b.status, Status::Rejected, "{point}");
        let e = b.error.unwrap();
        assert_eq!(e.code, "io_error", "{point}: {e:?}");
        assert!(
            e.message.contains("Input/output error"),
            "{point}: the OS message: {}",
            e.message
        );
        for applied in ["a", "c"] {
            let id = format!("{point}-{applied}");
            assert_eq!(
                receipt(&v, Queue::Processed, &id).status,
                Status::Applied,
                "{id}"
            );
            assert!(v.exists(&format!("03_NOTES/{id}.md")));
        }
        assert!(!v.exists(&format!("03_NOTES/{point}-b.md")));
        assert!(v.queue_names(Queue::Processing).is_empty(), "{point}");
        assert_eq!(v.status(), "", "{point}");
        // Retried without the fault, it applies.
        assert!(v.quire(&["retry", "b"]).status.success());
        assert!(v.quire(&["apply"]).status.success());
        assert!(v.exists(&format!("03_NOTES/{point}-b.md")));
    }
}

#[test]
fn a_file_the_work_tree_cannot_take_after_its_commit_is_named_in_the_receipt_and_the_queue_moves_on()
 {
    let v = VaultTest::new();
    three(&v, "w");
    let out = v.quire_env(&["apply"], &[("QUIRE_FAIL_AT", "worktree_write:2")]);
    // The commit is made before the work tree is written and cannot be taken back without
    // rewriting history: the bundle is applied, and its receipt says what the work tree lacks.
    assert!(out.status.success(), "{out:?}");
    let b = receipt(&v, Queue::Processed, "w-b");
    assert_eq!(b.status, Status::Applied);
    assert_eq!(b.warnings.len(), 1, "{b:?}");
    assert!(
        b.warnings[0].contains("03_NOTES/w-b.md") && b.warnings[0].contains("Input/output error")
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("w-b.md"));
    assert_eq!(receipt(&v, Queue::Processed, "w-c").status, Status::Applied);
    assert!(v.exists("03_NOTES/w-c.md"));
    assert!(v.queue_names(Queue::Processing).is_empty());
    // Git's index follows the commit, so the missing file shows as a work-tree deletion (which
    // `git checkout` undoes), never as a staged one that the next `git commit` would record.
    assert_eq!(v.status(), " D 03_NOTES/w-b.md\n");
    v.git(&["checkout", "--", "03_NOTES/w-b.md"]);
    assert_eq!(v.status(), "");
}

#[test]
fn a_full_disk_holds_the_queue_loses_nothing_and_says_what_failed() {
    let v = VaultTest::new();
    three(&v, "full");
    // ENOSPC while reading the second bundle's paths: the machine's fault, not the bundle's.
    let out = v.quire_env(
        &["apply"],
        &[
            ("QUIRE_FAIL_AT", "worktree_check:2"),
            ("QUIRE_FAIL_ERRNO", "28"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(!stderr.contains("no error"), "{stderr}");
    // Said once, not once per layer.
    assert_eq!(
        stderr.matches("No space left on device").count(),
        1,
        "{stderr}"
    );
    assert!(
        v.queue_names(Queue::Rejected).is_empty(),
        "nothing is refused for a full disk"
    );
    // Space freed: the next run applies every bundle, each once.
    let out = v.quire(&["apply"]);
    assert!(out.status.success(), "{out:?}");
    for name in ["a", "b", "c"] {
        let id = format!("full-{name}");
        assert_eq!(v.commits_for(&id), 1, "{id}");
        assert!(v.exists(&format!("03_NOTES/{id}.md")));
    }
    assert!(v.queue_names(Queue::Processing).is_empty());
    assert_eq!(v.status(), "");
}
