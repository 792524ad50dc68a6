//! `quire.toml`: the vault's configuration.
//!
//! Every key is optional. Unknown keys are errors, not silence: a misspelt `[publsh]` that was quietly
//! ignored would publish private notes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The parsed `quire.toml`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[site]`: what the rendered sites are called and where they live.
    pub site: SiteConfig,
    /// `[publish]`: what is never rendered.
    pub publish: PublishConfig,
    /// `[daemon]`: where the daemon listens.
    pub daemon: DaemonConfig,
    /// `[git]`: branch names.
    pub git: GitConfig,
    /// `[contributions]`: limits on bundles.
    pub contributions: ContributionsConfig,
    /// `[sandbox]`: what a promotion must pass.
    pub sandbox: SandboxConfig,
    /// `[missions]`: whether briefs run, how many at once, and the operator's command catalog.
    pub missions: MissionsConfig,
    /// `[runners]`: steps run on other machines.
    pub runners: RunnersConfig,
}

/// `[runners]`: how the daemon treats runners (`quire runner` on other machines).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunnersConfig {
    /// How long a runner's lease on a step holds without a heartbeat; runners beat at a third of
    /// it. A runner silent for longer has its step given to another.
    pub lease: super::Span,
}

impl Default for RunnersConfig {
    fn default() -> Self {
        Self {
            lease: super::Span(std::time::Duration::from_secs(30)),
        }
    }
}

/// `[site]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SiteConfig {
    /// The site's title.
    pub title: String,
    /// The URL the site is served under.
    pub base_url: String,
    /// Themes rendered by `render --all` and the daemon.
    pub themes: Vec<String>,
    /// The language of the notes (BCP 47, for `<html lang>`).
    pub lang: String,
}

impl Default for SiteConfig {
    fn default() -> Self {
        Self {
            title: "Vault".into(),
            base_url: "/".into(),
            themes: vec!["paper".into()],
            lang: "en".into(),
        }
    }
}

/// `[publish]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublishConfig {
    /// Globs (vault-relative) never rendered.
    pub exclude: Vec<String>,
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            exclude: vec!["00_INBOX/**".into(), "**/private/**".into()],
        }
    }
}

/// `[daemon]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// Address the daemon listens on. Loopback unless the operator says otherwise.
    pub listen: String,
    /// Most HTTP connections open at once; more are closed as they arrive, so clients can never
    /// take the file descriptors the pipeline needs.
    pub max_connections: usize,
    /// Seconds a client may take to send a request's headers (and to start the next request on a
    /// kept-alive connection).
    pub header_timeout_secs: u64,
    /// Seconds a connection may carry no bytes either way before it is closed.
    pub idle_timeout_secs: u64,
    /// Names besides its address the daemon answers to (`name` or `name:port`), for a reverse
    /// proxy that forwards its own `Host`. Requests for any other name are refused, so a web page
    /// that re-points its name at this machine (DNS rebinding) reads nothing.
    pub hosts: Vec<String>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7878".into(),
            max_connections: 256,
            header_timeout_secs: 10,
            idle_timeout_secs: 60,
            hosts: Vec::new(),
        }
    }
}

/// `[git]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GitConfig {
    /// The branch that bundles with `"target": "main"` are committed to.
    pub main: String,
    /// How long quire waits, in seconds, for a lock another Git program holds on a work tree's
    /// index (a `git commit` waiting on its editor) before it gives up for now; it changes nothing
    /// in that work tree meanwhile.
    pub lock_wait_secs: u64,
    /// A Git remote the daemon keeps in step (`main`, the mission branches and quire's refs): a
    /// bare repository by path or `file://`, SSH or HTTPS. Runners on other machines fetch
    /// sandboxes from it. Reached with the system `git`, which must be installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

impl Default for GitConfig {
    fn default() -> Self {
        Self {
            main: "main".into(),
            lock_wait_secs: 120,
            remote: None,
        }
    }
}

/// `[contributions]`: the limits SPEC §4 calls configurable.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContributionsConfig {
    /// Largest bundle file accepted, in bytes (checked before the file is read).
    pub max_bundle_bytes: u64,
    /// Most changes one bundle may hold.
    pub max_changes: usize,
    /// Deepest JSON nesting accepted. serde_json stops at 128 whatever this says.
    pub max_depth: usize,
    /// Globs of operator files bundles may change after all (`["themes/**"]`). quire.toml, hidden
    /// files, `themes/`, `06_RUNS/` and `07_LOGS/` are refused otherwise (`protected_path`); this
    /// list itself can never be changed by a bundle.
    pub allow: Vec<String>,
}

impl Default for ContributionsConfig {
    fn default() -> Self {
        Self {
            max_bundle_bytes: 16 * 1024 * 1024,
            max_changes: 10_000,
            max_depth: 128,
            allow: Vec::new(),
        }
    }
}

impl ContributionsConfig {
    /// The `allow` globs compiled (`*` stays within a folder, `**` crosses folders), or which one
    /// is not a glob.
    pub fn allowed(&self) -> Result<globset::GlobSet, String> {
        let mut set = globset::GlobSetBuilder::new();
        for g in &self.allow {
            let glob = globset::GlobBuilder::new(g)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("`[contributions] allow` glob `{g}` is not valid: {e}"))?;
            set.add(glob);
        }
        set.build()
            .map_err(|e| format!("`[contributions] allow` globs: {e}"))
    }
}

/// `[sandbox]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// A shell command that must succeed in a sandbox's worktree before it is promoted (such as
    /// `quire check`); none by default.
    pub verify: Option<String>,
    /// How long the verification may run, in seconds.
    pub verify_timeout_secs: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            verify: None,
            verify_timeout_secs: 600,
        }
    }
}

/// `[missions]` (SPEC §9).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MissionsConfig {
    /// Whether mission briefs are accepted and run at all. Off, a dropped brief is refused with a
    /// receipt saying so and nothing runs.
    pub enabled: bool,
    /// Most missions (or items) with a step running at once; 0 means one per core.
    pub parallel: usize,
    /// Whether briefs with raw `run` commands start without a `start` decision by a token holder.
    /// Only the operator can set this: `quire.toml` is never changed by a bundle.
    pub trust_briefs: bool,
    /// How long a decision waits for an answer before it expires and the mission escalates.
    pub decision_ttl: super::Span,
    /// Between SIGTERM and SIGKILL when a step is ended.
    pub grace: super::Span,
    /// The first retry's pause; each further retry waits twice as long, up to `backoff_max`.
    pub backoff: super::Span,
    /// The longest pause between retries.
    pub backoff_max: super::Span,
    /// The operator's commands, by name: a step that `uses` one runs it without asking.
    pub commands: std::collections::BTreeMap<String, String>,
    /// Whether the daemon runs steps itself. On (the default), it runs every step that asks for
    /// no labels, and steps with `runs_on` go to runners; off, runners take every step.
    pub local: bool,
}

impl Default for MissionsConfig {
    fn default() -> Self {
        let span = |ms| super::Span(std::time::Duration::from_millis(ms));
        Self {
            enabled: true,
            parallel: 0,
            trust_briefs: false,
            decision_ttl: span(7 * 86_400_000),
            grace: span(10_000),
            backoff: span(15_000),
            backoff_max: span(300_000),
            commands: std::collections::BTreeMap::new(),
            local: true,
        }
    }
}

impl MissionsConfig {
    /// How many missions may have a step running at once.
    pub fn parallel(&self) -> usize {
        match self.parallel {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
}

/// `quire.toml` could not be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("could not read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown key or a wrong type.
    #[error("{} is not a valid quire configuration: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said, including the line and column.
        message: String,
    },
}

impl Config {
    /// Reads and parses the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses configuration text; the error is the parser's message with line and column.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
        config.contributions.allowed()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.contributions.max_bundle_bytes, 16 * 1024 * 1024);
        assert_eq!(c.daemon.listen, "127.0.0.1:7878");
    }

    #[test]
    fn unknown_keys_are_errors_with_a_location() {
        let err = Config::parse("[publsh]\nexclude = []\n").unwrap_err();
        assert!(err.contains("publsh"), "{err}");
        let err = Config::parse("[site]\ntitel = \"x\"\n").unwrap_err();
        assert!(err.contains("titel") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn allow_globs_are_checked_when_the_file_is_read() {
        let c = Config::parse("[contributions]\nallow = [\"themes/**\"]\n").unwrap();
        let set = c.contributions.allowed().unwrap();
        assert!(set.is_match("themes/paper/theme.toml"));
        let err = Config::parse("[contributions]\nallow = [\"themes/[\"]\n").unwrap_err();
        assert!(err.contains("themes/["), "{err}");
    }

    #[test]
    fn missions_read_spans_and_a_command_catalog() {
        let c = Config::parse(
            "[missions]\nparallel = 3\ngrace = \"250ms\"\ndecision_ttl = \"2d\"\n[missions.commands]\nplan = \"scripts/plan.sh\"\n",
        )
        .unwrap();
        assert_eq!(c.missions.parallel(), 3);
        assert_eq!(c.missions.grace.to_string(), "250ms");
        assert_eq!(c.missions.decision_ttl.to_string(), "2d");
        assert_eq!(c.missions.commands["plan"], "scripts/plan.sh");
        assert!(c.missions.enabled && !c.missions.trust_briefs);
        let err = Config::parse("[missions]\ngrace = \"soon\"\n").unwrap_err();
        assert!(err.contains("soon") && err.contains("30s"), "{err}");
    }

    #[test]
    fn partial_sections_keep_other_defaults() {
        let c = Config::parse("[site]\ntitle = \"Mine\"\n").unwrap();
        assert_eq!(c.site.title, "Mine");
        assert_eq!(c.site.themes, ["paper"]);
    }
}
