//! Command-line arguments (SPEC §3).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// A Git-native processor for Markdown vaults.
#[derive(Debug, Parser)]
#[command(name = "quire", version, about, long_about = None, propagate_version = true)]
pub(crate) struct Cli {
    /// The vault (default: $QUIRE_VAULT, else the first folder at or above the current one with a
    /// quire.toml).
    #[arg(long, global = true, env = "QUIRE_VAULT", value_name = "DIR")]
    pub(crate) vault: Option<PathBuf>,

    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a vault from the built-in template (`git init -b main`, first commit).
    Init {
        /// Where (default: the current folder).
        dir: Option<PathBuf>,
    },
    /// The one-command tour: a vault with sample notes, missions and tasks, and sample bundles
    /// applied through the pipeline.
    Demo {
        /// Where to put the demo vault.
        #[arg(default_value = "quire-demo")]
        dir: PathBuf,
    },
    /// Apply contribution bundles now: the named files, or everything in contributions/pending/.
    Apply {
        /// Bundle files (copied into pending/ first). None: all of pending/.
        files: Vec<PathBuf>,
    },
    /// Move a rejected bundle back to contributions/pending/.
    Retry {
        /// The bundle's id, or its file name in contributions/rejected/ without `.json`.
        id: String,
    },
    /// Vault health: invalid pending bundles (exit 1 when anything is wrong).
    Check,
}
