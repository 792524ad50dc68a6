//! `quire init`: a new vault from the built-in template, or the missing pieces of an existing one.

use std::path::{Path, PathBuf};

use super::WorkflowError;
use crate::git::init_repository;
use crate::vault::{CONFIG_FILE, ENV_FILE, TOKEN_ENV, Vault, fsutil, template};

/// Lines `.gitignore` must hold so nothing derived, private or in flight is ever committed.
pub const REQUIRED_IGNORES: &[&str] = &[
    "/.quire/",
    "/_site/",
    "/sandbox/",
    "/contributions/",
    "/07_LOGS/",
    "/06_RUNS/*",
    "!/06_RUNS/promotions/",
    ".env",
    ".quire-tmp-*",
];

/// What `init` did.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// The vault's root.
    pub root: PathBuf,
    /// Whether the folder was not a vault before.
    pub created: bool,
    /// Files written.
    pub written: Vec<String>,
    /// The first commit, if one was made.
    pub commit: Option<String>,
}

/// Makes `dir` a vault: from the template when it is empty or missing; when it already holds
/// `quire.toml`, only what is missing (`.gitignore` lines, `.env`, folders, the repository, a first
/// commit). A folder holding anything else is refused: quire will not commit files it did not
/// expect.
pub fn init(dir: &Path) -> Result<InitReport, WorkflowError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| WorkflowError::io(format!("could not create {}", dir.display()), e))?;
    let root = std::fs::canonicalize(dir)
        .map_err(|e| WorkflowError::io(format!("could not open {}", dir.display()), e))?;
    let existing = root.join(CONFIG_FILE).is_file();
    let mut written = Vec::new();
    if existing {
        if ensure_ignores(&root)? {
            written.push(".gitignore".to_owned());
        }
    } else {
        let mut entries = std::fs::read_dir(&root)
            .map_err(|e| WorkflowError::io(format!("could not read {}", root.display()), e))?;
        if entries.next().is_some() {
            return Err(WorkflowError::NotEmpty(root));
        }
        let files = template::write_missing(&root)
            .map_err(|e| WorkflowError::io("could not write the vault template", e))?;
        written.extend(files.iter().map(|f| (*f).to_owned()));
    }
    if write_env(&root)? {
        written.push(ENV_FILE.to_owned());
    }
    let vault = Vault::open(&root)?;
    vault
        .ensure_work_dirs()
        .map_err(|e| WorkflowError::io("could not create the vault's work folders", e))?;
    let main = &vault.config().git.main;
    let repo = init_repository(&root, main)?;
    let commit = repo
        .commit_initial("Initialize quire vault")?
        .map(|c| c.to_string());
    Ok(InitReport {
        root,
        created: !existing,
        written,
        commit,
    })
}

/// Adds the required `.gitignore` lines that are missing. Returns whether the file changed.
fn ensure_ignores(root: &Path) -> Result<bool, WorkflowError> {
    let path = root.join(".gitignore");
    let current = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(WorkflowError::io("could not read .gitignore", e)),
    };
    let missing: Vec<&str> = REQUIRED_IGNORES
        .iter()
        .copied()
        .filter(|l| !current.lines().any(|c| c.trim() == *l))
        .collect();
    if missing.is_empty() {
        return Ok(false);
    }
    let mut text = current;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# Added by quire: derived, private or in-flight files, never committed.\n");
    for line in missing {
        text.push_str(line);
        text.push('\n');
    }
    fsutil::atomic_write(&path, text.as_bytes(), false)
        .map_err(|e| WorkflowError::io("could not write .gitignore", e))?;
    Ok(true)
}

/// Writes `.env` with a fresh random API token (mode 0600) unless one exists. Returns whether it
/// wrote.
fn write_env(root: &Path) -> Result<bool, WorkflowError> {
    let path = root.join(ENV_FILE);
    if path.symlink_metadata().is_ok() {
        return Ok(false);
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        WorkflowError::io(
            "could not get random bytes for the API token",
            std::io::Error::other(e.to_string()),
        )
    })?;
    let token = crate::hex(&bytes);
    let text =
        format!("# quire secrets: never committed, rendered or served.\n{TOKEN_ENV}={token}\n");
    fsutil::atomic_write_mode(&path, text.as_bytes(), 0o600)
        .map_err(|e| WorkflowError::io("could not write .env", e))?;
    Ok(true)
}
