//! A small harness over real vaults in temporary folders: real Git repositories (checked with the `git`
//! command line too), real files, the real `quire` binary where a process boundary matters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use quire::contributions::{Receipt, Status};
use quire::events::Event;
use quire::vault::{Queue, Vault};
use quire::workflow::{self, ApplyReport};
use serde_json::{Value, json};

/// A vault in `<tmp>/vault`, so tests can check that nothing appeared beside it.
pub struct VaultTest {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
}

/// Environment for `git` and `quire` child processes: a fixed identity and no user configuration, so
/// tests behave the same on every machine.
pub fn isolated(cmd: &mut Command, home: &Path) {
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test Person")
        .env("GIT_AUTHOR_EMAIL", "person@example.org")
        .env("GIT_COMMITTER_NAME", "Test Person")
        .env("GIT_COMMITTER_EMAIL", "person@example.org")
        .env_remove("QUIRE_VAULT")
        .env_remove("QUIRE_TOKEN")
        .env_remove("QUIRE_CRASH_AT")
        .env_remove("QUIRE_FAIL_AT")
        .env_remove("QUIRE_FAIL_WHILE")
        .env_remove("QUIRE_FAIL_ERRNO");
}

impl VaultTest {
    /// A fresh vault made by `quire init` (the library function).
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("vault");
        workflow::init(&root).unwrap();
        let root = std::fs::canonicalize(root).unwrap();
        Self { tmp, root }
    }

    pub fn vault(&self) -> Vault {
        Vault::open(&self.root).unwrap()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Writes files and commits them with `git` (as a person would).
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> &Self {
        for (rel, content) in files {
            self.write(rel, content);
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).symlink_metadata().is_ok()
    }

    /// Runs `git` in the vault; panics on failure.
    pub fn git(&self, args: &[&str]) -> String {
        let out = self.git_output(args);
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn git_output(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("git");
        cmd.arg("-C").arg(&self.root).args(args);
        isolated(&mut cmd, self.tmp.path());
        cmd.output().unwrap()
    }

    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"]).trim().to_owned()
    }

    /// `git status --porcelain` (empty when the work tree and index match HEAD).
    pub fn status(&self) -> String {
        self.git(&["status", "--porcelain", "--untracked-files=all"])
    }

    /// Drops a bundle (a JSON value or raw bytes) into `pending/` under `name`.
    pub fn drop_json(&self, name: &str, bundle: &Value) -> &Self {
        self.drop_bytes(name, &serde_json::to_vec_pretty(bundle).unwrap())
    }

    pub fn drop_bytes(&self, name: &str, bytes: &[u8]) -> &Self {
        let dir = self.vault().queue_dir(Queue::Pending);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
        self
    }

    /// Applies everything pending, in process, recording events.
    pub fn apply(&self) -> (ApplyReport, Vec<Event>) {
        let mut events = Vec::new();
        let report = workflow::apply(&self.vault(), &[], &mut events, &mut ()).unwrap();
        // As `quire apply` does: the index stage follows the commits.
        if report.count(quire::contributions::Status::Applied) > 0 {
            workflow::pipeline::index_after_commits(
                &self.vault(),
                workflow::pipeline::Look::everything(),
                &mut events,
            );
        }
        (report, events)
    }

    /// Applies one bundle and returns its receipt.
    pub fn apply_one(&self, bundle: &Value) -> Receipt {
        self.drop_json("b.json", bundle);
        let (report, _) = self.apply();
        assert_eq!(report.filed.len(), 1, "{report:?}");
        report.filed[0].receipt.clone()
    }

    /// Everything that a refused bundle must leave untouched: refs, HEAD, Git's index and every file
    /// of the work tree (quire's own bookkeeping folders excepted), and the folder around the vault.
    pub fn fingerprint(&self) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        map.insert("refs".into(), self.git(&["show-ref"]));
        map.insert("HEAD".into(), self.head());
        map.insert("index".into(), self.git(&["ls-files", "-s"]));
        map.insert("status".into(), self.status());
        for (path, digest) in
            tree_digest(&self.root, &["contributions", ".quire", "07_LOGS", ".git"])
        {
            map.insert(format!("file:{path}"), digest);
        }
        for (path, digest) in tree_digest(self.tmp.path(), &["vault", ".config"]) {
            map.insert(format!("outside:{path}"), digest);
        }
        map
    }

    /// Commits whose messages carry `Contribution-Id: id`.
    pub fn commits_for(&self, id: &str) -> usize {
        self.git(&[
            "log",
            "--format=%H",
            &format!("--grep=^Contribution-Id: {id}$"),
        ])
        .lines()
        .count()
    }

    pub fn receipt(&self, folder: Queue, name: &str) -> Value {
        let p = self
            .vault()
            .queue_dir(folder)
            .join(format!("{name}.receipt.json"));
        serde_json::from_slice(
            &std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        )
        .unwrap()
    }

    pub fn queue_names(&self, folder: Queue) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.vault().queue_dir(folder))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(quire::vault::fsutil::TEMP_PREFIX))
            .collect();
        names.sort();
        names
    }

    /// Runs the `quire` binary in the vault.
    pub fn quire(&self, args: &[&str]) -> Output {
        self.quire_env(args, &[])
    }

    pub fn quire_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_quire"));
        cmd.current_dir(&self.root).args(args);
        isolated(&mut cmd, self.tmp.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

/// A file path → content hash listing of `root`, skipping the named top-level folders.
fn tree_digest(root: &Path, skip: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if skip
                .iter()
                .any(|s| rel == *s || rel.starts_with(&format!("{s}/")))
            {
                continue;
            }
            let meta = p.symlink_metadata().unwrap();
            if meta.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("link:{}", std::fs::read_link(&p).unwrap().display()),
                );
            } else if meta.is_dir() {
                out.insert(rel.clone(), "dir".into());
                stack.push(p);
            } else {
                out.insert(
                    rel,
                    quire::contributions::sha256_hex(&std::fs::read(&p).unwrap()),
                );
            }
        }
    }
    out
}

/// A bundle with the usual envelope around `changes`.
pub fn bundle(id: &str, changes: Value) -> Value {
    json!({
        "contract": "quire.contribution/1",
        "id": id,
        "author": { "name": "Agent Smith", "email": "agent@example.org" },
        "message": format!("Bundle {id}"),
        "changes": changes,
    })
}

pub fn assert_rejected(r: &Receipt, code: &str) {
    assert_eq!(r.status, Status::Rejected, "{r:#?}");
    assert_eq!(
        r.error.as_ref().map(|e| e.code.as_str()),
        Some(code),
        "{r:#?}"
    );
}

pub fn assert_applied(r: &Receipt) {
    assert_eq!(r.status, Status::Applied, "{r:#?}");
}

/// `../shared`, when this checkout has it beside it; otherwise says, visibly, that `test` is skipped.
pub fn shared_dir_or_skip(test: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if p.is_dir() {
        return Some(std::fs::canonicalize(p).unwrap());
    }
    // Straight to the stderr handle: libtest captures `eprintln!` of passing tests.
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: ../shared is not beside this checkout"
    );
    None
}
