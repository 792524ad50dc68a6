//! Git hooks: installing them, and what they do when git runs them.
//!
//! libgit2 runs no hooks, so quire's own commits update the index and sites directly. Commits,
//! merges and pushes made by other tools reach quire through hooks:
//!
//! * in a vault, `post-commit` and `post-merge` bring the task index and the configured sites up to
//!   date after a commit on main;
//! * in a bare server repository, `post-receive` renders each push to main straight from Git
//!   objects into `OUT/<theme>/`, with no checkout.
//!
//! A hook file quire writes is a small dispatcher: hooks that were there before move into
//! `<hook>.d/` and still run first, in name order, with git's arguments and input; then quire
//! runs. A hook never fails the git command that ran it: quire reports its trouble on stderr.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::WorkflowError;
use super::render::{RenderRequest, Themes};
use crate::git::Repo;
use crate::render::{Content, Quiet};
use crate::vault::{Vault, fsutil};

/// The line that marks a hook file as quire's dispatcher.
pub const MARKER: &str = "# quire-hook-dispatcher";
/// The hooks quire installs into a vault.
pub const VAULT_HOOKS: &[&str] = &["post-commit", "post-merge"];

/// What installing did, hook by hook.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Installed {
    /// The hooks folder written to.
    pub dir: PathBuf,
    /// Hooks written or rewritten.
    pub written: Vec<String>,
    /// Hooks already as quire would write them.
    pub unchanged: Vec<String>,
    /// Existing hooks moved into `<hook>.d/` (from, to).
    pub moved: Vec<(PathBuf, PathBuf)>,
}

/// Installs `post-commit` and `post-merge` into the vault's hooks folder (`core.hooksPath`
/// respected).
pub fn install_vault(vault: &Vault, quire: &Path) -> Result<Installed, WorkflowError> {
    let repo = Repo::open(vault.root())?;
    let dir = repo.hooks_dir();
    let mut out = Installed {
        dir: dir.clone(),
        ..Installed::default()
    };
    for hook in VAULT_HOOKS {
        let call = format!("\"$QUIRE\" --vault \"$PWD\" hook {hook} \"$@\"",);
        install_one(&dir, hook, &dispatcher(hook, quire, &call, false), &mut out)?;
    }
    Ok(out)
}

/// Installs `post-receive` into bare repository `git_dir`, rendering pushes to main into
/// `out/<theme>/`.
pub fn install_bare(
    git_dir: &Path,
    out_dir: &Path,
    quire: &Path,
) -> Result<Installed, WorkflowError> {
    let git_dir = std::fs::canonicalize(git_dir).map_err(|e| {
        WorkflowError::Input(format!(
            "{}: {e}; name a bare Git repository",
            git_dir.display()
        ))
    })?;
    let repo = Repo::open(&git_dir)?;
    std::fs::create_dir_all(out_dir)
        .map_err(|e| WorkflowError::io(format!("could not create {}", out_dir.display()), e))?;
    let out_dir = std::fs::canonicalize(out_dir)
        .map_err(|e| WorkflowError::io(format!("could not resolve {}", out_dir.display()), e))?;
    let dir = repo.hooks_dir();
    let mut out = Installed {
        dir: dir.clone(),
        ..Installed::default()
    };
    let call = format!(
        "\"$QUIRE\" hook post-receive --git-dir {} --out {}",
        shell_quote(&git_dir.to_string_lossy()),
        shell_quote(&out_dir.to_string_lossy())
    );
    install_one(
        &dir,
        "post-receive",
        &dispatcher("post-receive", quire, &call, true),
        &mut out,
    )?;
    Ok(out)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The dispatcher script for `hook`: chained hooks first, then `call` (git's input replayed to
/// each when `stdin` is true).
fn dispatcher(hook: &str, quire: &Path, call: &str, stdin: bool) -> String {
    let quire = shell_quote(&quire.to_string_lossy());
    let (save, feed, done) = if stdin {
        (
            "input=$(mktemp) || exit 0\ncat >\"$input\"\n",
            " <\"$input\"",
            "rm -f \"$input\"\n",
        )
    } else {
        ("", "", "")
    };
    format!(
        "#!/bin/sh\n{MARKER}\n\
         # Written by `quire hooks install`. Hooks of your own go in {hook}.d/ (executable files,\n\
         # run first in name order with git's arguments{}); quire runs last and never fails the\n\
         # git command.\n\
         QUIRE={quire}\n\
         [ -x \"$QUIRE\" ] || QUIRE=quire\n\
         {save}status=0\n\
         for h in \"$(dirname \"$0\")/{hook}.d\"/*; do\n\
         \x20 [ -f \"$h\" ] && [ -x \"$h\" ] || continue\n\
         \x20 \"$h\" \"$@\"{feed} || status=$?\n\
         done\n\
         {call}{feed} || true\n\
         {done}exit $status\n",
        if stdin { " and input" } else { "" },
    )
}

fn install_one(
    dir: &Path,
    hook: &str,
    script: &str,
    out: &mut Installed,
) -> Result<(), WorkflowError> {
    let io =
        |what: &str, p: &Path, e| WorkflowError::io(format!("could not {what} {}", p.display()), e);
    std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
    let path = dir.join(hook);
    match std::fs::read(&path) {
        Ok(existing) if existing == script.as_bytes() => {
            out.unchanged.push(hook.to_owned());
            return Ok(());
        }
        Ok(existing) if String::from_utf8_lossy(&existing).contains(MARKER) => {
            // An older dispatcher of quire's (another binary path): replaced.
        }
        Ok(_) => {
            // Someone's own hook: it keeps running, from the chain folder.
            let chain = dir.join(format!("{hook}.d"));
            std::fs::create_dir_all(&chain).map_err(|e| io("create", &chain, e))?;
            let to = fsutil::free_name(&chain, "00-original", "");
            fsutil::rename_no_clobber(&path, &to).map_err(|e| io("move", &path, e))?;
            out.moved.push((path.clone(), to));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("read", &path, e)),
    }
    fsutil::atomic_write_mode(&path, script.as_bytes(), 0o755)
        .map_err(|e| io("write", &path, e))?;
    out.written.push(hook.to_owned());
    Ok(())
}

/// What a hook run did (reported on stderr by the CLI, never as a failure).
#[derive(Debug, Clone, Default, Serialize)]
pub struct HookRun {
    /// What was done, one line each.
    pub did: Vec<String>,
    /// What went wrong, one line each.
    pub problems: Vec<String>,
}

/// `post-commit` / `post-merge` in a vault: after a commit on main, the task index and the
/// configured sites are brought up to date. Commits on other branches (a sandbox worktree shares
/// the hooks) are left alone.
pub fn post_commit(vault: &Vault) -> HookRun {
    let mut run = HookRun::default();
    let main = &vault.config().git.main;
    match Repo::open(vault.root()).map(|r| r.head_branch()) {
        Ok(Some(b)) if &b == main => {}
        Ok(_) => {
            run.did.push(format!("not on `{main}`: nothing to do"));
            return run;
        }
        Err(e) => {
            run.problems.push(e.to_string());
            return run;
        }
    }
    match crate::index::Index::open(vault).and_then(|mut i| i.update(false)) {
        Ok(u) => run.did.push(format!("index: {} notes re-read", u.parsed)),
        Err(e) => run.problems.push(format!("index: {e}")),
    }
    let request = RenderRequest {
        themes: Themes::All,
        out: None,
        git_ref: None,
    };
    match super::render::render(vault, &request, &Quiet) {
        Ok(outcome) => {
            for t in outcome.themes {
                run.did
                    .push(format!("{}: {} pages written", t.theme, t.written));
            }
        }
        Err(e) => run.problems.push(format!("render: {e}")),
    }
    run
}

/// One line of git's `post-receive` input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    /// The old object id (all zeros when the ref was created).
    pub old: String,
    /// The new object id (all zeros when the ref was deleted).
    pub new: String,
    /// The full ref name.
    pub refname: String,
}

/// Parses git's `post-receive` input: `<old> <new> <ref>` per line. Lines that do not have that
/// shape are skipped.
pub fn parse_ref_updates(input: &mut dyn std::io::BufRead) -> Vec<RefUpdate> {
    let mut out = Vec::new();
    let mut line = String::new();
    while input.read_line(&mut line).unwrap_or(0) > 0 {
        let mut parts = line.split_whitespace();
        if let (Some(old), Some(new), Some(refname), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
            && is_oid(old)
            && is_oid(new)
        {
            out.push(RefUpdate {
                old: old.to_owned(),
                new: new.to_owned(),
                refname: refname.to_owned(),
            });
        }
        line.clear();
    }
    out
}

fn is_oid(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `post-receive` in a bare repository: each push to main (the branch `[git] main` of the pushed
/// commit's own `quire.toml` names) is rendered from Git objects into `out/<theme>/` for the
/// themes its `[site] themes` lists. Deletions and other refs are ignored.
pub fn post_receive(git_dir: &Path, out: &Path, input: &mut dyn std::io::BufRead) -> HookRun {
    let mut run = HookRun::default();
    for update in parse_ref_updates(input) {
        if update.new.bytes().all(|b| b == b'0') {
            run.did
                .push(format!("{}: deleted, ignored", update.refname));
            continue;
        }
        let content = match Content::commit(git_dir, &update.new) {
            Ok(c) => c,
            Err(e) => {
                run.problems.push(format!("{}: {e}", update.refname));
                continue;
            }
        };
        let main = format!("refs/heads/{}", content.config().git.main);
        if update.refname != main {
            run.did
                .push(format!("{}: not `{main}`, ignored", update.refname));
            continue;
        }
        let mut themes = content.config().site.themes.clone();
        if themes.is_empty() {
            themes.push("paper".to_owned());
        }
        match crate::render::render(&content, &themes, out, &Quiet) {
            Ok(reports) => {
                for r in reports {
                    run.did.push(format!(
                        "{} {}: {} pages into {}",
                        update.refname,
                        &update.new[..10],
                        r.pages,
                        r.dir.display()
                    ));
                }
            }
            Err(e) => run.problems.push(format!("render of {}: {e}", update.new)),
        }
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_updates_parse_git_input_and_skip_noise() {
        let zero = "0".repeat(40);
        let a = "a".repeat(40);
        let input = format!("{zero} {a} refs/heads/main\nnot a line\n{a} {zero} refs/heads/old\n");
        let got = parse_ref_updates(&mut input.as_bytes());
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].refname, "refs/heads/main");
        assert_eq!(got[1].new, zero);
    }

    #[test]
    fn dispatcher_runs_the_chain_then_quire() {
        let s = dispatcher(
            "post-receive",
            Path::new("/usr/bin/quire"),
            "\"$QUIRE\" hook post-receive",
            true,
        );
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(s.contains(MARKER));
        let chain = s.find("post-receive.d").unwrap();
        let call = s.find("\"$QUIRE\" hook").unwrap();
        assert!(chain < call, "chained hooks run first");
        assert!(s.contains("<\"$input\""), "input replayed");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
