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
    /// The one-command tour: a vault with sample notes, missions and tasks, sample bundles applied
    /// through the pipeline, the sites rendered, then the daemon serving them (Ctrl-C stops).
    Demo {
        /// Where to put the demo vault.
        #[arg(default_value = "quire-demo")]
        dir: PathBuf,
        /// Only build the demo vault and its sites; do not start the daemon afterwards.
        #[arg(long)]
        no_daemon: bool,
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
    /// Vault health: bad front matter, invalid task dates, broken links, invalid pending bundles
    /// (exit 1 when anything is wrong).
    Check,
    /// Bring the task index (.quire/state.db) up to date with the notes.
    Index {
        /// Re-read every note instead of only the changed ones.
        #[arg(long)]
        full: bool,
    },
    /// List tasks (open ones by default), ordered by due date.
    Tasks {
        /// open, done, cancelled, in_progress or all.
        #[arg(long, default_value = "open", value_parser = parse_status)]
        status: quire::index::StatusFilter,
        /// Only tasks due before this date (YYYY-MM-DD).
        #[arg(long, value_name = "DATE", value_parser = parse_date)]
        due_before: Option<chrono::NaiveDate>,
        /// Only tasks due after this date (YYYY-MM-DD).
        #[arg(long, value_name = "DATE", value_parser = parse_date)]
        due_after: Option<chrono::NaiveDate>,
        /// Only tasks with this tag, or a tag nested under it (`work` matches #work/ops).
        #[arg(long, value_name = "TAG")]
        tag: Option<String>,
        /// Only tasks of this mission.
        #[arg(long, value_name = "ID")]
        mission: Option<String>,
        /// Only tasks in notes matching this glob (`02_PROJECTS/**`) or under this folder.
        #[arg(long, value_name = "GLOB")]
        path: Option<String>,
    },
    /// Open tasks that are overdue, due today, and due in the next days.
    Agenda {
        /// How many days after today count as upcoming.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Take this date as today (YYYY-MM-DD).
        #[arg(long, value_name = "DATE", value_parser = parse_date)]
        today: Option<chrono::NaiveDate>,
    },
    /// The dated tasks as an iCalendar (RFC 5545) file, for calendar apps.
    Calendar {
        /// Write to this file instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// event: an all-day event per task; todo: a VTODO per task.
        #[arg(long, default_value = "event", value_parser = parse_kind)]
        kind: quire::index::CalendarKind,
    },
    /// Render the vault (or a branch or commit) into _site/<theme>/, through a theme pack.
    Render {
        /// The theme (default: the first of `[site] themes` in quire.toml).
        #[arg(long, value_name = "NAME", conflicts_with = "all")]
        theme: Option<String>,
        /// Every theme of `[site] themes`.
        #[arg(long)]
        all: bool,
        /// Put the sites here, one folder per theme, instead of the vault's _site/.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Render this branch, tag or commit straight from Git objects (the work tree is not read).
        #[arg(long = "ref", value_name = "REF")]
        git_ref: Option<String>,
    },
    /// List the themes: built in, and the vault's own under themes/.
    Themes,
    /// Serve a theme's site on 127.0.0.1, re-rendering and reloading open pages when notes change.
    Serve {
        /// The theme (default: the first of `[site] themes` in quire.toml).
        #[arg(long, value_name = "NAME")]
        theme: Option<String>,
        /// The port (0: any free one).
        #[arg(long, default_value_t = 7879)]
        port: u16,
    },
    /// Missions that run themselves: accept a brief, watch its steps, see where each stands.
    Mission {
        #[command(subcommand)]
        action: MissionAction,
    },
    /// Decisions waiting for an answer.
    Inbox,
    /// Answer a decision: start|reject a brief, approve|reject a round, retry|abort an escalation.
    Decide {
        /// The decision's id (`quire inbox` lists them).
        decision: String,
        /// start, approve, reject, retry or abort.
        answer: String,
        /// Why, recorded with the decision (and on the promotion commit).
        #[arg(long)]
        reason: Option<String>,
        /// The sandbox commit you looked at: refused as stale if the sandbox has moved since.
        #[arg(long, value_name = "COMMIT")]
        commit: Option<String>,
    },
    /// Mission sandboxes: a branch `mission/<ID>` and a worktree `sandbox/<ID>/`, promoted into main
    /// or rolled back.
    Sandbox {
        #[command(subcommand)]
        action: SandboxAction,
    },
    /// Install quire's git hooks into this vault, or into a bare server repository.
    Hooks {
        #[command(subcommand)]
        action: HooksAction,
    },
    /// What the installed git hooks call (reads git's stdin contract); never fails the git command.
    Hook {
        /// post-receive, post-commit or post-merge.
        #[arg(value_parser = ["post-receive", "post-commit", "post-merge"])]
        name: String,
        /// post-receive: render into DIR/<theme>/.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// post-receive: the bare repository (default: $GIT_DIR, else the current folder).
        #[arg(long, value_name = "BARE")]
        git_dir: Option<PathBuf>,
        /// Arguments git passes to the hook.
        #[arg(trailing_var_arg = true, hide = true)]
        args: Vec<String>,
    },
    /// Run the pipeline (apply dropped bundles, index, render, record) on every change, and serve
    /// the HTTP API and the sites.
    Daemon {
        /// Listen here instead of `[daemon] listen` (127.0.0.1:7878).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Analytics over what was applied: bundles by status, refusal code and author, apply and
    /// step durations (p50/p95), retry and escalation rates. `--json` prints what
    /// `GET /api/analytics/stats` answers.
    Stats {
        /// From this date (YYYY-MM-DD, UTC) or time (RFC 3339) on; default: everything.
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
    },
    /// Take mission steps from a daemon and run them on this machine (fetching sandboxes from the
    /// vault's Git remote and pushing results there); or, with `token`, manage runner tokens.
    Runner {
        /// The daemon, `http://host:port`.
        #[arg(long, value_name = "URL")]
        daemon: Option<String>,
        /// The runner token (`quire runner token new NAME` on the daemon's machine prints one).
        #[arg(
            long,
            env = "QUIRE_RUNNER_TOKEN",
            value_name = "TOKEN",
            hide_env_values = true
        )]
        token: Option<String>,
        /// What this machine offers, comma-separated (`linux,gpu`); steps with `runs_on` need them.
        #[arg(long, value_delimiter = ',', value_name = "LABELS")]
        labels: Vec<String>,
        /// Steps at once.
        #[arg(long, default_value_t = 1)]
        slots: u32,
        /// Where the runner keeps its repositories and step files.
        #[arg(long, value_name = "DIR", default_value = "quire-runner")]
        workdir: PathBuf,
        /// The vault's Git remote as this machine reaches it (default: the daemon's `[git] remote`).
        #[arg(long, value_name = "URL")]
        remote: Option<String>,
        #[command(subcommand)]
        action: Option<RunnerAction>,
    },
    /// Missions with their task counts.
    Missions {
        /// Take this date as today (YYYY-MM-DD).
        #[arg(long, value_name = "DATE", value_parser = parse_date)]
        today: Option<chrono::NaiveDate>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum RunnerAction {
    /// Runner tokens, kept in the vault's `.quire/runners.db` (as hashes).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenAction {
    /// Make a token for runner NAME and print it on stdout (it is shown only this once).
    New {
        /// The runner's name (letters, digits, `-`, `_`, `.`).
        name: String,
    },
    /// End runner NAME's token: its next request is refused, and its step goes to another.
    Revoke {
        /// The runner's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum MissionAction {
    /// Accept a brief (as if dropped into contributions/pending/) and run its steps here, showing
    /// their progress, until it waits for a decision.
    Start {
        /// The brief, a `quire.mission/1` JSON file.
        file: PathBuf,
    },
    /// Every mission: state, the step each run is at, attempts, open decisions.
    List,
    /// One mission: its runs, every attempt (with its log) and its open decisions.
    Status {
        /// The mission id.
        id: String,
    },
    /// A step's log (its latest attempt; without STEP, the mission's latest attempt).
    Logs {
        /// The mission id.
        id: String,
        /// The step.
        step: Option<String>,
        /// Keep printing what the step writes until its attempt ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// Run a mission again: its escalated steps, or every waiting run from STEP in a new round.
    Retry {
        /// The mission id.
        id: String,
        /// Go back to this step (a new round), from the sandbox as it is.
        #[arg(long, value_name = "STEP")]
        from: Option<String>,
    },
    /// End a mission: steps in flight are ended, open decisions closed; sandboxes are kept.
    Abort {
        /// The mission id.
        id: String,
        /// Why, recorded with the mission's closed decisions.
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SandboxAction {
    /// Branch `mission/<ID>` from main (or REF) with a worktree at sandbox/<ID>/.
    Create {
        /// The mission id: letters, digits, `.`, `_`, `-`.
        id: String,
        /// Start from this branch, tag, ref or commit instead of main.
        #[arg(long, value_name = "REF")]
        from: Option<String>,
        /// Only the branch: no worktree (bundles still commit to it).
        #[arg(long)]
        no_worktree: bool,
    },
    /// Every sandbox: tip, ahead/behind main, created, state.
    List,
    /// What promoting the sandbox would bring: files and a unified diff from the merge base.
    Diff {
        /// The mission id.
        id: String,
    },
    /// Merge the sandbox into main as one commit carrying a promotion record.
    Promote {
        /// The mission id.
        id: String,
    },
    /// Revert the sandbox's last promotion on main (a new commit) and hold the mission.
    Rollback {
        /// The mission id.
        id: String,
    },
    /// Remove the sandbox's worktree and branch, keeping its tip under refs/quire/archive/.
    Discard {
        /// The mission id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum HooksAction {
    /// Write post-commit and post-merge hooks into the vault (existing hooks keep running), or with
    /// --git-dir and --out a post-receive hook into a bare repository that renders pushes to main.
    Install {
        /// A bare repository to install the post-receive hook into.
        #[arg(long, value_name = "BARE", requires = "out")]
        git_dir: Option<PathBuf>,
        /// Where the post-receive hook renders: DIR/<theme>/.
        #[arg(long, value_name = "DIR", requires = "git_dir")]
        out: Option<PathBuf>,
    },
}

fn parse_date(s: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("`{s}` is not a date; write YYYY-MM-DD"))
}

fn parse_status(s: &str) -> Result<quire::index::StatusFilter, String> {
    s.parse()
}

fn parse_kind(s: &str) -> Result<quire::index::CalendarKind, String> {
    s.parse()
}
