//! `[git] remote`: the daemon keeps a bare repository in step with the vault — `main`, the
//! mission branches, quire's refs — goes on working while the remote is away and catches up when
//! it is back, and never overwrites a ref someone else moved there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::daemon::{get_json, http, start, token, wait_until};
use crate::harness::{VaultTest, bundle, isolated};

/// A bare repository beside the vault.
fn bare(t: &VaultTest, name: &str) -> PathBuf {
    let p = t.tmp.path().join(name);
    git_in(
        t,
        t.tmp.path(),
        &["init", "-q", "--bare", p.to_str().unwrap()],
    );
    p
}

fn git_in(t: &VaultTest, dir: &Path, args: &[&str]) -> String {
    let mut c = Command::new("git");
    c.arg("-C").arg(dir).args(args);
    isolated(&mut c, t.tmp.path());
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Every ref of the repository at `dir`.
fn refs(t: &VaultTest, dir: &Path) -> BTreeMap<String, String> {
    git_in(
        t,
        dir,
        &["for-each-ref", "--format=%(refname) %(objectname)"],
    )
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(n, id)| (n.to_owned(), id.to_owned()))
    .collect()
}

fn with_remote(t: &VaultTest, url: &str) {
    let toml = t.read("quire.toml").replace(
        "[git]\n",
        &format!("[git]\nremote = {}\n", crate::missions::toml_string(url)),
    );
    t.commit(&[("quire.toml", &toml)], "a remote");
}

/// A bundle dropped now is applied (the remote being away or not).
pub(crate) fn a_bundle_applies(t: &VaultTest) {
    t.drop_json(
        "while-away.json",
        &bundle(
            "while-away",
            json!([{ "op": "create", "path": "03_NOTES/Away.md", "content": "# Away\n" }]),
        ),
    );
    wait_until("the bundle to apply", Duration::from_secs(30), || {
        t.git(&["log", "--format=%s", "-1"]).contains("while-away")
    });
}

fn remote_health(addr: &str) -> serde_json::Value {
    let (status, h) = get_json(addr, "/healthz");
    assert_eq!(status, 200, "{h}");
    h["remote"].clone()
}

#[test]
fn the_daemon_keeps_its_remote_in_step_and_catches_up_after_it_was_away() {
    let t = crate::missions::engine_vault(&[("plan", "echo planned > PLAN.md")]);
    let remote = bare(&t, "remote.git");
    with_remote(&t, remote.to_str().unwrap());
    let d = start(&t);
    wait_until("main on the remote", Duration::from_secs(30), || {
        refs(&t, &remote).get("refs/heads/main") == Some(&t.head())
    });
    wait_until("/healthz to say in step", Duration::from_secs(30), || {
        remote_health(&d.addr)["in_step"] == true
    });
    assert_eq!(
        remote_health(&d.addr)["url"],
        json!(remote.to_str().unwrap())
    );

    // A mission: its branch reaches the remote with the step's commit.
    let auth = format!("Bearer {}", token(&t));
    let b = crate::missions::brief("moon-1", json!([{ "step": "plan", "uses": "plan" }]));
    let (status, _, _) = http(
        &d.addr,
        "POST",
        "/api/missions",
        &[("Authorization", &auth)],
        &serde_json::to_vec(&b).unwrap(),
    );
    assert_eq!(status, 200);
    wait_until("the decision", Duration::from_secs(60), || {
        get_json(&d.addr, "/api/decisions").1["decisions"][0]["id"] == "moon-1.r1"
    });
    wait_until(
        "the mission branch on the remote",
        Duration::from_secs(30),
        || {
            let there = refs(&t, &remote);
            let here = refs(&t, &t.root);
            there.contains_key("refs/heads/mission/moon-1")
                && there.get("refs/heads/mission/moon-1") == here.get("refs/heads/mission/moon-1")
                && there.get("refs/heads/main") == here.get("refs/heads/main")
        },
    );
    assert_eq!(
        git_in(&t, &remote, &["show", "mission/moon-1:PLAN.md"]),
        "planned"
    );

    // The remote goes away: bundles still apply, and /healthz says since when it lags.
    let away = t.tmp.path().join("remote.away");
    std::fs::rename(&remote, &away).unwrap();
    a_bundle_applies(&t);
    wait_until(
        "/healthz to say the remote lags",
        Duration::from_secs(30),
        || {
            let r = remote_health(&d.addr);
            r["in_step"] == false
                && r["lagging_since"].is_string()
                && r["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("remote.git"))
        },
    );
    let (status, h) = get_json(&d.addr, "/healthz");
    assert_eq!((status, h["status"].clone()), (200, json!("ok")), "{h}");

    // Back: it catches up by itself, and both repositories are whole.
    std::fs::rename(&away, &remote).unwrap();
    wait_until("the remote to catch up", Duration::from_secs(90), || {
        refs(&t, &remote).get("refs/heads/main") == Some(&t.head())
            && remote_health(&d.addr)["in_step"] == true
    });
    let r = remote_health(&d.addr);
    assert!(r["lagging_since"].is_null() && r["error"].is_null(), "{r}");
    git_in(&t, &remote, &["fsck", "--no-progress", "--strict"]);
    t.git(&["fsck", "--no-progress"]);
}

#[test]
fn a_ref_someone_else_moved_on_the_remote_is_never_overwritten() {
    let t = VaultTest::new();
    let remote = bare(&t, "remote.git");
    with_remote(&t, remote.to_str().unwrap());
    let d = start(&t);
    wait_until("main on the remote", Duration::from_secs(30), || {
        refs(&t, &remote).get("refs/heads/main") == Some(&t.head())
    });
    // Someone pushes to the remote's main directly.
    let other = t.tmp.path().join("other");
    git_in(
        &t,
        t.tmp.path(),
        &[
            "clone",
            "-q",
            "-b",
            "main",
            remote.to_str().unwrap(),
            other.to_str().unwrap(),
        ],
    );
    std::fs::write(other.join("theirs.md"), "# Theirs\n").unwrap();
    git_in(&t, &other, &["add", "theirs.md"]);
    git_in(&t, &other, &["commit", "-qm", "theirs"]);
    git_in(&t, &other, &["push", "-q", "origin", "main"]);
    let theirs = git_in(&t, &other, &["rev-parse", "HEAD"]);

    // The vault moves on: its main is not pushed over theirs, and /healthz names the ref.
    t.drop_json(
        "ours.json",
        &bundle(
            "ours",
            json!([{ "op": "create", "path": "03_NOTES/Ours.md", "content": "# Ours\n" }]),
        ),
    );
    // The mirror may see theirs (and say so) before the bundle is applied: wait for both.
    wait_until("the bundle to be applied", Duration::from_secs(30), || {
        t.git(&["log", "--format=%s", "-1"]).contains("ours")
    });
    wait_until(
        "/healthz to name the diverged ref",
        Duration::from_secs(30),
        || {
            let r = remote_health(&d.addr);
            r["in_step"] == false && r["diverged"] == json!(["refs/heads/main"])
        },
    );
    assert!(t.git(&["log", "--format=%s", "-1"]).contains("ours"));
    assert_eq!(refs(&t, &remote)["refs/heads/main"], theirs);
}
