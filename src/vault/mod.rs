//! The vault: where it is, how it is laid out, what it is configured to do, and which paths in it
//! may be written.
//!
//! This is the ground floor. It knows nothing of Git, SQLite or HTTP; the job modules stand on it.

mod config;
pub mod fsutil;
mod path;
mod span;
pub mod template;
mod tree;

use std::path::{Path, PathBuf};

pub use config::{
    Config, ConfigError, ContributionsConfig, DaemonConfig, GitConfig, MissionsConfig,
    PublishConfig, SiteConfig,
};
pub use path::{
    MAX_NAME_BYTES, MAX_PATH_BYTES, PathError, Protected, RESERVED_ROOTS, SECRET_NAME, VaultPath,
};
pub use span::Span;
pub use tree::{ChangeSet, FileContent, NodeKind, Snapshot, SnapshotError};

/// The configuration file whose presence makes a folder a vault.
pub const CONFIG_FILE: &str = "quire.toml";
/// The secrets file (`QUIRE_TOKEN=…`), git-ignored, never rendered or served.
pub const ENV_FILE: &str = ".env";
/// Environment variable naming the vault when `--vault` is not given.
pub const VAULT_ENV: &str = "QUIRE_VAULT";
/// Environment variable (or `.env` key) holding the API token.
pub const TOKEN_ENV: &str = "QUIRE_TOKEN";

/// quire's private, rebuildable state folder.
pub const STATE_DIR: &str = ".quire";
/// Pipeline-run records.
pub const RUNS_DIR: &str = "06_RUNS";
/// JSON Lines event logs.
pub const LOGS_DIR: &str = "07_LOGS";

/// The four drop folders of the contribution queue, in the order a bundle moves through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// Where writers drop bundles.
    Pending,
    /// Claimed by a running quire.
    Processing,
    /// Applied or duplicate, with receipts.
    Processed,
    /// Refused, with receipts saying why.
    Rejected,
}

impl Queue {
    /// Every queue folder.
    pub const ALL: [Queue; 4] = [
        Queue::Pending,
        Queue::Processing,
        Queue::Processed,
        Queue::Rejected,
    ];

    /// The folder's path relative to the vault root.
    pub fn rel(self) -> &'static str {
        match self {
            Queue::Pending => "contributions/pending",
            Queue::Processing => "contributions/processing",
            Queue::Processed => "contributions/processed",
            Queue::Rejected => "contributions/rejected",
        }
    }
}

/// A vault could not be found or opened.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// No `quire.toml` in the named folder.
    #[error("{} is not a quire vault (it has no quire.toml); run `quire init {}` to make one", .0.display(), .0.display())]
    NotAVault(PathBuf),
    /// No `quire.toml` in the current folder or any above it.
    #[error("no quire vault here: no quire.toml in {} or any folder above it; pass --vault DIR, set QUIRE_VAULT, or run `quire init`", .0.display())]
    NotFound(PathBuf),
    /// The folder could not be read.
    #[error("could not open the vault at {}: {source}", path.display())]
    Io {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `quire.toml` is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// An opened vault: its root folder and its configuration.
#[derive(Debug, Clone)]
pub struct Vault {
    root: PathBuf,
    config: Config,
}

impl Vault {
    /// Opens the vault whose root is `root` (which must hold `quire.toml`).
    pub fn open(root: &Path) -> Result<Self, VaultError> {
        let root = std::fs::canonicalize(root).map_err(|source| VaultError::Io {
            path: root.to_owned(),
            source,
        })?;
        let config_path = root.join(CONFIG_FILE);
        if !config_path.is_file() {
            return Err(VaultError::NotAVault(root));
        }
        let config = Config::load(&config_path)?;
        Ok(Self { root, config })
    }

    /// Finds the vault the way every command does (SPEC §2): `explicit` (from `--vault` or
    /// `QUIRE_VAULT`) if given, else the first folder at or above `cwd` holding `quire.toml`.
    pub fn discover(explicit: Option<&Path>, cwd: &Path) -> Result<Self, VaultError> {
        if let Some(dir) = explicit {
            return Self::open(dir);
        }
        let mut here = Some(cwd);
        while let Some(dir) = here {
            if dir.join(CONFIG_FILE).is_file() {
                return Self::open(dir);
            }
            here = dir.parent();
        }
        Err(VaultError::NotFound(cwd.to_owned()))
    }

    /// The vault's root folder (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The vault's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The absolute path of a queue folder.
    pub fn queue_dir(&self, queue: Queue) -> PathBuf {
        self.root.join(queue.rel())
    }

    /// The absolute path of `.quire/`.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    /// The absolute path of `07_LOGS/`.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join(LOGS_DIR)
    }

    /// Creates the folders quire writes into but Git does not carry (they are git-ignored, so a
    /// fresh clone lacks them).
    pub fn ensure_work_dirs(&self) -> std::io::Result<()> {
        for q in Queue::ALL {
            std::fs::create_dir_all(self.queue_dir(q))?;
        }
        std::fs::create_dir_all(self.state_dir())?;
        std::fs::create_dir_all(self.logs_dir())?;
        std::fs::create_dir_all(self.root.join(RUNS_DIR))?;
        Ok(())
    }

    /// The API token: `QUIRE_TOKEN` from the environment, else from the vault's `.env`.
    pub fn token(&self) -> Option<String> {
        if let Ok(t) = std::env::var(TOKEN_ENV)
            && !t.is_empty()
        {
            return Some(t);
        }
        let text = std::fs::read_to_string(self.root.join(ENV_FILE)).ok()?;
        parse_env_value(&text, TOKEN_ENV)
    }
}

/// Reads `KEY=value` from `.env` text (optionally `export KEY=…`, optionally quoted).
fn parse_env_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (k, v) = line.split_once('=')?;
        if k.trim() != key {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        (!v.is_empty()).then(|| v.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_are_read_in_common_shapes() {
        let text = "# secrets\nOTHER=1\nexport QUIRE_TOKEN=\"abc\"\n";
        assert_eq!(parse_env_value(text, TOKEN_ENV).as_deref(), Some("abc"));
        assert_eq!(
            parse_env_value("QUIRE_TOKEN=x y", TOKEN_ENV).as_deref(),
            Some("x y")
        );
        assert_eq!(parse_env_value("QUIRE_TOKEN=", TOKEN_ENV), None);
    }

    #[test]
    fn discovery_walks_up_and_explains_failure() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "").unwrap();
        let deep = dir.path().join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        let v = Vault::discover(None, &deep).unwrap();
        assert_eq!(v.root(), std::fs::canonicalize(dir.path()).unwrap());

        let other = tempfile::tempdir().unwrap();
        let err = Vault::discover(Some(other.path()), &deep).unwrap_err();
        assert!(err.to_string().contains("quire init"), "{err}");
    }
}
