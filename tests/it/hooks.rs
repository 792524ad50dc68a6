//! Git hooks for real: `quire hooks install` into a vault and into a bare server repository, then
//! `git commit`, `git clone` and `git push` with the `git` command line, which runs them.

use std::path::Path;
use std::process::{Command, Output};

use crate::harness::{VaultTest, isolated};

fn git_in(t: &VaultTest, dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(dir).args(args);
    isolated(&mut cmd, t.tmp.path());
    cmd.output().unwrap()
}

fn git_ok(t: &VaultTest, dir: &Path, args: &[&str]) -> String {
    let out = git_in(t, dir, args);
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn quire_ok(t: &VaultTest, args: &[&str]) -> String {
    let out = t.quire(args);
    assert!(
        out.status.success(),
        "quire {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_exec(path: &Path, script: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn vault_hooks_keep_existing_ones_and_update_the_index_and_site_on_commit() {
    let t = VaultTest::new();
    let marker = t.tmp.path().join("own-hook-ran");
    write_exec(
        &t.path(".git/hooks/post-commit"),
        &format!("#!/bin/sh\necho \"$@\" >> '{}'\n", marker.display()),
    );
    let out = quire_ok(&t, &["hooks", "install"]);
    assert!(out.contains("Kept your hook"), "{out}");
    assert!(t.exists(".git/hooks/post-commit.d/00-original"));
    assert!(
        t.read(".git/hooks/post-commit")
            .contains("quire-hook-dispatcher")
    );
    // Installing twice changes nothing.
    let hooks_before = std::fs::read(t.path(".git/hooks/post-commit")).unwrap();
    let out = quire_ok(&t, &["hooks", "install"]);
    assert!(
        out.contains("Already installed") && !out.contains("Kept"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(t.path(".git/hooks/post-commit")).unwrap(),
        hooks_before
    );
    assert_eq!(
        std::fs::read_dir(t.path(".git/hooks/post-commit.d"))
            .unwrap()
            .count(),
        1
    );

    // A person's `git commit`: their hook still runs, and quire renders the new note.
    t.write(
        "03_NOTES/Hooked.md",
        "# Hooked\n\n- [ ] From a git commit 📅 2026-12-24\n",
    );
    git_ok(&t, &t.root, &["add", "-A"]);
    let out = git_ok(&t, &t.root, &["commit", "-q", "-m", "A note by hand"]);
    assert!(marker.exists(), "the existing hook ran; git said: {out}");
    assert!(
        t.exists("_site/paper/03_notes/hooked/index.html"),
        "the site was rendered by the hook; git said: {out}"
    );
    let tasks = quire_ok(&t, &["--json", "tasks"]);
    assert!(tasks.contains("From a git commit"), "{tasks}");

    // A merge into main (post-merge) renders too.
    git_ok(&t, &t.root, &["checkout", "-q", "-b", "side"]);
    t.write("03_NOTES/Merged.md", "# Merged\n");
    git_ok(&t, &t.root, &["add", "-A"]);
    git_ok(&t, &t.root, &["commit", "-q", "-m", "on a side branch"]);
    assert!(
        !t.exists("_site/paper/03_notes/merged/index.html"),
        "not on main: not rendered"
    );
    git_ok(&t, &t.root, &["checkout", "-q", "main"]);
    let out = git_ok(
        &t,
        &t.root,
        &["merge", "-q", "--no-ff", "--no-edit", "side"],
    );
    assert!(
        t.exists("_site/paper/03_notes/merged/index.html"),
        "the merge was rendered; git said: {out}"
    );

    // A commit in a sandbox worktree (which shares the hooks) leaves main's site alone.
    quire_ok(&t, &["sandbox", "create", "m-1"]);
    let wt = t.path("sandbox/m-1");
    std::fs::write(wt.join("03_NOTES/InSandbox.md"), "# In sandbox\n").unwrap();
    git_ok(&t, &wt, &["add", "-A"]);
    let out = git_ok(&t, &wt, &["commit", "-q", "-m", "sandbox work"]);
    assert!(
        !t.exists("_site/paper/03_notes/insandbox/index.html"),
        "{out}"
    );
    assert!(
        !wt.join("_site").exists(),
        "nothing rendered inside the sandbox: {out}"
    );
}

#[test]
fn installing_into_a_missing_repository_is_refused() {
    let t = VaultTest::new();
    let missing = t.tmp.path().join("nowhere.git");
    let out = t.quire(&[
        "hooks",
        "install",
        "--git-dir",
        missing.to_str().unwrap(),
        "--out",
        t.tmp.path().join("site").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere.git"));
    // --git-dir and --out go together.
    let out = t.quire(&["hooks", "install", "--out", "x"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn core_hooks_path_is_respected() {
    let t = VaultTest::new();
    git_ok(&t, &t.root, &["config", "core.hooksPath", ".githooks"]);
    quire_ok(&t, &["hooks", "install"]);
    assert!(
        t.read(".githooks/post-commit")
            .contains("quire-hook-dispatcher")
    );
    assert!(t.exists(".githooks/post-merge"));
    assert!(!t.exists(".git/hooks/post-commit"));
    t.write("03_NOTES/Via.md", "# Via hooksPath\n");
    git_ok(&t, &t.root, &["add", "03_NOTES/Via.md"]);
    git_ok(&t, &t.root, &["commit", "-q", "-m", "via hooksPath"]);
    assert!(t.exists("_site/paper/03_notes/via/index.html"));
}

#[test]
fn a_bare_server_renders_pushes_to_main_from_git_objects() {
    let t = VaultTest::new();
    let server = t.tmp.path().join("server.git");
    let site = t.tmp.path().join("site");
    git_ok(
        &t,
        t.tmp.path(),
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            server.to_str().unwrap(),
        ],
    );
    let seen = t.tmp.path().join("own-post-receive");
    write_exec(
        &server.join("hooks/post-receive"),
        &format!("#!/bin/sh\ncat >> '{}'\n", seen.display()),
    );
    let out = quire_ok(
        &t,
        &[
            "hooks",
            "install",
            "--git-dir",
            server.to_str().unwrap(),
            "--out",
            site.to_str().unwrap(),
        ],
    );
    assert!(out.contains("Kept your hook"), "{out}");

    // The first push of main renders the site.
    t.commit(
        &[("03_NOTES/Pushed.md", "# Pushed\n\nfrom a push\n")],
        "to push",
    );
    git_ok(
        &t,
        &t.root,
        &["remote", "add", "origin", server.to_str().unwrap()],
    );
    let out = git_ok(&t, &t.root, &["push", "-q", "origin", "main"]);
    let page = site.join("paper/03_notes/pushed/index.html");
    assert!(page.exists(), "rendered on push; git said: {out}");
    let head = git_ok(&t, &t.root, &["rev-parse", "HEAD"]);
    let own = std::fs::read_to_string(&seen).unwrap();
    assert!(
        own.contains(head.trim()) && own.contains("refs/heads/main"),
        "the existing hook got git's input: {own}"
    );
    assert!(
        !server.join("03_NOTES").exists(),
        "no checkout in the bare repository"
    );

    // A clone, a commit, a push: the site follows.
    let clone = t.tmp.path().join("clone");
    git_ok(
        &t,
        t.tmp.path(),
        &[
            "clone",
            "-q",
            server.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    std::fs::write(clone.join("03_NOTES/Second.md"), "# Second\n").unwrap();
    git_ok(&t, &clone, &["add", "-A"]);
    git_ok(&t, &clone, &["commit", "-q", "-m", "second"]);
    git_ok(&t, &clone, &["push", "-q", "origin", "main"]);
    assert!(site.join("paper/03_notes/second/index.html").exists());

    // Other branches and deletions are ignored, and a push never fails because of quire.
    let snapshot = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = walkdir::WalkDir::new(dir)
            .into_iter()
            .flatten()
            .map(|e| e.path().display().to_string())
            .collect();
        v.sort();
        v
    };
    let before = snapshot(&site);
    git_ok(&t, &clone, &["checkout", "-q", "-b", "topic"]);
    std::fs::write(clone.join("03_NOTES/Topic.md"), "# Topic\n").unwrap();
    git_ok(&t, &clone, &["add", "-A"]);
    git_ok(&t, &clone, &["commit", "-q", "-m", "topic"]);
    git_ok(&t, &clone, &["push", "-q", "origin", "topic"]);
    git_ok(&t, &clone, &["push", "-q", "origin", "--delete", "topic"]);
    assert_eq!(before, snapshot(&site), "not main: nothing rendered");

    git_ok(&t, &clone, &["checkout", "-q", "main"]);
    std::fs::write(
        clone.join("quire.toml"),
        "[site]\nthemes = [\"no-such-theme\"]\n",
    )
    .unwrap();
    git_ok(
        &t,
        &clone,
        &["commit", "-q", "-am", "a broken configuration"],
    );
    let out = git_in(&t, &clone, &["push", "origin", "main"]);
    assert!(
        out.status.success(),
        "the push succeeds whatever quire thinks"
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("no-such-theme"),
        "quire's trouble is reported: {said}"
    );
    assert!(page.exists(), "the last good site stays");
}
