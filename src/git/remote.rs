//! Keeping a Git remote in step with the vault (`[git] remote`): `main`, the mission branches and
//! quire's own refs are pushed there after each change, so that runners on other machines can
//! fetch sandboxes from it and people can clone the vault's truth from one place.
//!
//! Every push is a compare-and-swap, never a blind force. The remote is listed first; each ref is
//! sent with the value just seen there as its expected old value (`--force-with-lease`), so a ref
//! that someone else moved in between is refused by the remote itself and looked at again on the
//! next round. A ref the remote has at a commit this vault never had (someone pushed there
//! directly) is *diverged*: it is never overwritten, and is reported until a person reconciles
//! it. `main` only ever moves forward on the remote.
//!
//! The transport is the system `git`, run as a process quire owns ([`crate::process::run`]):
//! libgit2 is built here without network transports (SPEC §1: no OpenSSL), and `git` brings the
//! user's SSH agent and credential helpers for SSH and HTTPS remotes. It never prompts: a remote
//! that needs a password it cannot find fails, with git's own words in the error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{Context as _, GitError, Oid, Repo};

/// Refs runners push their steps' results to; the daemon reads them, it does not mirror them.
pub const RUNS_PREFIX: &str = "refs/quire/runs/";

/// Where quire keeps what is not a branch (archives, salvage, run results).
pub const QUIRE_PREFIX: &str = "refs/quire/";

/// Mission branches (`mission/<id>`), as full ref names.
pub const MISSION_PREFIX: &str = "refs/heads/mission/";

/// How long one `git` transport command may take.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Between SIGTERM and SIGKILL for a `git` past its time.
const GRACE: Duration = Duration::from_secs(2);

/// Talking to the remote failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// `git` could not be started.
    #[error(
        "could not run `git` to reach the remote {url}: {source}; install Git, or remove `[git] remote` from quire.toml"
    )]
    Spawn {
        /// The remote.
        url: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The remote did not answer in time.
    #[error("the remote {url} did not answer within {secs} s")]
    TimedOut {
        /// The remote.
        url: String,
        /// How long quire waited.
        secs: u64,
    },
    /// `git` failed: the remote is unreachable, refused, or needs credentials it cannot find.
    #[error("the remote {url} could not be reached or refused: {message}")]
    Failed {
        /// The remote.
        url: String,
        /// What git said (its last lines).
        message: String,
    },
    /// The local repository could not be read.
    #[error(transparent)]
    Git(#[from] GitError),
}

/// Whether the remote took one ref (`Err`: git's reason it did not).
pub type Pushed = Result<(), String>;

/// One ref to change on the remote: from the value seen there (`None`: absent) to this vault's
/// (`None`: delete it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The full ref name (`refs/heads/main`).
    pub name: String,
    /// Its value on the remote, as listed.
    pub from: Option<Oid>,
    /// Its value here.
    pub to: Option<Oid>,
}

/// What a round of [`sync`] would change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Refs to send.
    pub updates: Vec<Update>,
    /// Refs the remote has at commits this vault never had: left alone, and reported.
    pub diverged: Vec<String>,
}

/// What a round of [`sync`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Synced {
    /// Refs the remote took.
    pub pushed: Vec<String>,
    /// Refs the remote refused this round (moved meanwhile, or a hook said no), with git's reason.
    pub refused: Vec<(String, String)>,
    /// Refs left alone because they diverged (see [`Plan::diverged`]).
    pub diverged: Vec<String>,
}

impl Synced {
    /// Whether the remote now has every mirrored ref as this vault has it.
    pub fn in_step(&self) -> bool {
        self.refused.is_empty() && self.diverged.is_empty()
    }
}

/// A remote, reached with the system `git` from the repository at `root`.
#[derive(Debug, Clone)]
pub struct Remote {
    url: String,
    root: PathBuf,
}

impl Remote {
    /// The remote `url` (a path, `file://`, SSH or HTTPS), for the repository whose work tree or
    /// Git directory is `root`.
    pub fn new(root: &Path, url: &str) -> Self {
        Self {
            url: url.to_owned(),
            root: root.to_owned(),
        }
    }

    /// The remote's address.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn git(&self, args: &[&str]) -> Result<Vec<u8>, RemoteError> {
        let out = self.git_raw(args)?;
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(self.failed(&out))
        }
    }

    fn failed(&self, out: &crate::process::Captured) -> RemoteError {
        RemoteError::Failed {
            url: self.url.clone(),
            message: last_lines(&out.stderr),
        }
    }

    fn git_raw(&self, args: &[&str]) -> Result<crate::process::Captured, RemoteError> {
        let mut c = Command::new("git");
        c.arg("-C").arg(&self.root).args(args);
        // Never ask a person for anything, and never take a transport that runs commands.
        c.env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ALLOW_PROTOCOL", "file:git:ssh:http:https")
            .env("LC_ALL", "C");
        if std::env::var_os("GIT_SSH_COMMAND").is_none() && std::env::var_os("GIT_SSH").is_none() {
            c.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
        }
        let out = crate::process::run(c, TIMEOUT, GRACE).map_err(|source| RemoteError::Spawn {
            url: self.url.clone(),
            source,
        })?;
        match out.status {
            None => Err(RemoteError::TimedOut {
                url: self.url.clone(),
                secs: TIMEOUT.as_secs(),
            }),
            Some(_) => Ok(out),
        }
    }

    /// Every ref the remote has, by full name (peeled tags and `HEAD` left out).
    pub fn list(&self) -> Result<BTreeMap<String, Oid>, RemoteError> {
        let out = self.git(&["ls-remote", "--refs", "--", &self.url])?;
        let mut refs = BTreeMap::new();
        for line in String::from_utf8_lossy(&out).lines() {
            let Some((id, name)) = line.split_once('\t') else {
                continue;
            };
            if let Ok(id) = Oid::from_str(id.trim()) {
                refs.insert(name.trim().to_owned(), id);
            }
        }
        Ok(refs)
    }

    /// Sends `updates`, each guarded by its expected old value. Returns, per ref, whether the
    /// remote took it (and git's reason when not). Refs are independent: one refused does not hold
    /// back the others.
    pub fn push(&self, updates: &[Update]) -> Result<Vec<(String, Pushed)>, RemoteError> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let mut args: Vec<String> = vec!["push".into(), "--porcelain".into(), "--no-verify".into()];
        for u in updates {
            args.push(format!(
                "--force-with-lease={}:{}",
                u.name,
                u.from.map(|o| o.to_string()).unwrap_or_default()
            ));
        }
        args.push("--".into());
        args.push(self.url.clone());
        for u in updates {
            args.push(match u.to {
                Some(to) => format!("{to}:{}", u.name),
                None => format!(":{}", u.name),
            });
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        // A push with some refs refused exits 1 but still reports each ref on stdout; one that
        // reports none did not reach the remote.
        let out = self.git_raw(&refs)?;
        let report = String::from_utf8_lossy(&out.stdout);
        if !out.success() && !report.lines().any(|l| l.contains('\t')) {
            return Err(self.failed(&out));
        }
        Ok(porcelain(&report, updates))
    }

    /// Fetches `refspecs` (`+refs/heads/x:refs/heads/x`) from the remote.
    pub fn fetch(&self, refspecs: &[&str]) -> Result<(), RemoteError> {
        // The refspecs quire fetches are forced and its own; who forced what is not news, and
        // housekeeping after each fetch is one more process for every step on a busy runner.
        // (As settings, which a Git too old to know them ignores, rather than flags.)
        let mut args = vec![
            "-c",
            "fetch.showForcedUpdates=false",
            "-c",
            "maintenance.auto=false",
            "-c",
            "gc.auto=0",
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--",
        ];
        args.push(&self.url);
        args.extend_from_slice(refspecs);
        self.git(&args).map(drop)
    }
}

/// The last few lines git wrote to stderr: enough to say why, without its progress chatter.
fn last_lines(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let from = lines.len().saturating_sub(3);
    let said = lines[from..].join(" / ");
    if said.is_empty() {
        "git gave no reason".into()
    } else {
        said
    }
}

/// Reads `git push --porcelain`: a line `<flag>\t<from>:<to>\t<summary>` per ref, `!` for
/// refused. A ref git did not report is counted as refused, so it is tried again.
fn porcelain(out: &str, updates: &[Update]) -> Vec<(String, Pushed)> {
    let mut seen: BTreeMap<&str, Pushed> = BTreeMap::new();
    for line in out.lines() {
        let mut parts = line.splitn(3, '\t');
        let (Some(flag), Some(spec), summary) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Some((_, to)) = spec.rsplit_once(':') else {
            continue;
        };
        let Some(u) = updates.iter().find(|u| u.name == to) else {
            continue;
        };
        let result = if flag.trim() == "!" {
            Err(summary.unwrap_or("refused").trim().to_owned())
        } else {
            Ok(())
        };
        seen.insert(u.name.as_str(), result);
    }
    updates
        .iter()
        .map(|u| {
            let r = seen
                .remove(u.name.as_str())
                .unwrap_or_else(|| Err("git did not report this ref".into()));
            (u.name.clone(), r)
        })
        .collect()
}

impl Repo {
    /// The refs a remote mirrors: `main`, every mission branch, and quire's refs except runners'
    /// results (which runners write to the remote and the daemon only reads).
    pub fn mirrored_refs(&self, main: &str) -> Result<BTreeMap<String, Oid>, GitError> {
        let mut out = BTreeMap::new();
        let main_ref = format!("refs/heads/{main}");
        for r in self
            .raw()
            .references()
            .ctx(|| "could not list references".into())?
        {
            let r = r.ctx(|| "could not list references".into())?;
            let (Ok(name), Some(id)) = (r.name(), r.target()) else {
                continue;
            };
            if mirrored(name, &main_ref) {
                out.insert(name.to_owned(), id);
            }
        }
        Ok(out)
    }

    /// Whether this repository has object `id`.
    pub fn has_object(&self, id: Oid) -> bool {
        self.raw().odb().map(|odb| odb.exists(id)).unwrap_or(false)
    }
}

fn mirrored(name: &str, main_ref: &str) -> bool {
    name == main_ref
        || name.starts_with(MISSION_PREFIX)
        || (name.starts_with(QUIRE_PREFIX) && !name.starts_with(RUNS_PREFIX))
}

/// What to send so that the remote has `local`, given that it has `remote` (both by full ref
/// name; `remote` may hold refs quire does not mirror, which are ignored).
pub fn plan(
    repo: &Repo,
    main: &str,
    local: &BTreeMap<String, Oid>,
    remote: &BTreeMap<String, Oid>,
) -> Plan {
    let main_ref = format!("refs/heads/{main}");
    let mut p = Plan::default();
    for (name, &to) in local {
        match remote.get(name) {
            Some(&from) if from == to => {}
            None => p.updates.push(Update {
                name: name.clone(),
                from: None,
                to: Some(to),
            }),
            Some(&from) => {
                // A commit this vault never had was put there by someone else: never overwritten.
                // One it had is quire's own earlier value: moved on from (main only forward).
                let ours = repo.has_object(from);
                let forward = ours && repo.contains(to, from);
                if !ours || (name == &main_ref && !forward) {
                    p.diverged.push(name.clone());
                } else {
                    p.updates.push(Update {
                        name: name.clone(),
                        from: Some(from),
                        to: Some(to),
                    });
                }
            }
        }
    }
    for (name, &from) in remote {
        if local.contains_key(name) || !mirrored(name, &main_ref) || name == &main_ref {
            continue;
        }
        // Gone here (a rejected mission's branch): removed there too, if it is still quire's.
        if repo.has_object(from) {
            p.updates.push(Update {
                name: name.clone(),
                from: Some(from),
                to: None,
            });
        } else {
            p.diverged.push(name.clone());
        }
    }
    p
}

/// One round: lists the remote, sends what differs, and says what the remote took.
pub fn sync(repo: &Repo, remote: &Remote, main: &str) -> Result<Synced, RemoteError> {
    let theirs = remote.list()?;
    let ours = repo.mirrored_refs(main)?;
    let p = plan(repo, main, &ours, &theirs);
    let mut done = Synced {
        diverged: p.diverged,
        ..Synced::default()
    };
    for (name, result) in remote.push(&p.updates)? {
        match result {
            Ok(()) => done.pushed.push(name),
            Err(why) => done.refused.push((name, why)),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::git::git_cli as git;

    fn commit(dir: &Path, file: &str) -> Oid {
        std::fs::write(dir.join(file), file).unwrap();
        git(dir, &["add", file]);
        git(dir, &["commit", "-qm", file]);
        Oid::from_str(&git(dir, &["rev-parse", "HEAD"])).unwrap()
    }

    #[test]
    fn refs_are_sent_as_compare_and_swap_and_a_ref_someone_else_moved_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let (vault, bare, other) = (
            tmp.path().join("vault"),
            tmp.path().join("remote.git"),
            tmp.path().join("other"),
        );
        std::fs::create_dir_all(&vault).unwrap();
        git(&vault, &["init", "-q", "-b", "main"]);
        commit(&vault, "a.md");
        git(&vault, &["branch", "mission/m-1"]);
        git(
            tmp.path(),
            &["init", "-q", "--bare", bare.to_str().unwrap()],
        );
        let repo = Repo::open(&vault).unwrap();
        let remote = Remote::new(&vault, bare.to_str().unwrap());

        // First round: everything is new there.
        let done = sync(&repo, &remote, "main").unwrap();
        assert_eq!(done.pushed, ["refs/heads/main", "refs/heads/mission/m-1"]);
        assert!(done.in_step());
        assert_eq!(remote.list().unwrap(), repo.mirrored_refs("main").unwrap());

        // Forward moves and a deleted mission branch follow; a branch quire does not mirror stays.
        let b = commit(&vault, "b.md");
        git(&vault, &["branch", "-D", "mission/m-1"]);
        git(&vault, &["branch", "topic"]);
        let done = sync(&repo, &remote, "main").unwrap();
        assert_eq!(done.pushed, ["refs/heads/main", "refs/heads/mission/m-1"]);
        let there = remote.list().unwrap();
        assert_eq!(there.get("refs/heads/main"), Some(&b));
        assert!(!there.contains_key("refs/heads/mission/m-1"));
        assert!(!there.contains_key("refs/heads/topic"));
        assert_eq!(sync(&repo, &remote, "main").unwrap(), Synced::default());

        // Someone pushes to the remote's main directly: quire's next change does not overwrite it.
        git(
            tmp.path(),
            &[
                "clone",
                "-q",
                "-b",
                "main",
                bare.to_str().unwrap(),
                other.to_str().unwrap(),
            ],
        );
        let theirs = commit(&other, "theirs.md");
        git(&other, &["push", "-q", "origin", "main"]);
        commit(&vault, "c.md");
        let done = sync(&repo, &remote, "main").unwrap();
        assert_eq!(done.diverged, ["refs/heads/main"]);
        assert!(!done.in_step());
        assert_eq!(remote.list().unwrap().get("refs/heads/main"), Some(&theirs));

        // A lease on a value the remote no longer has is refused by git, ref by ref.
        let stale = Update {
            name: "refs/quire/archive/x".into(),
            from: Some(b),
            to: Some(b),
        };
        let fresh = Update {
            name: "refs/quire/archive/y".into(),
            from: None,
            to: Some(b),
        };
        let got = remote.push(&[stale, fresh]).unwrap();
        assert!(got[0].1.is_err(), "{got:?}");
        assert_eq!(got[1].1, Ok(()));
    }

    #[test]
    fn an_unreachable_remote_says_so_with_gits_words() {
        let tmp = tempfile::tempdir().unwrap();
        git(tmp.path(), &["init", "-q", "-b", "main"]);
        let remote = Remote::new(tmp.path(), tmp.path().join("nowhere.git").to_str().unwrap());
        let e = remote.list().unwrap_err();
        assert!(matches!(e, RemoteError::Failed { .. }), "{e}");
        assert!(e.to_string().contains("nowhere.git"), "{e}");
    }
}
