//! # quire — a Git-native processor for Markdown vaults
//!
//! A vault is an ordinary Git repository of Markdown notes with a `quire.toml` at its root. quire does
//! five jobs on it; this crate is laid out so that each job is a module over a small core:
//!
//! ```text
//!                    cli / cmd            (thin: parse arguments, call a workflow, map exit codes)
//!                        │
//!                    workflow             (init, apply, check, render, sandbox, hooks, demo: wires the jobs)
//!          ┌─────────────┼──────────────┬─────────────┬────────────┐
//!    contributions      git           index        render        http   (daemon: later)
//!          └─────────────┴──────┬───────┴─────────────┘
//!         vault · markdown · events        (core: paths and safety, config, notes and tasks, events)
//! ```
//!
//! * [`vault`] knows where the vault is, how it is laid out, its configuration, and which paths may
//!   be written ([`vault::VaultPath`]); it defines the [`vault::Snapshot`] / [`vault::ChangeSet`] seam
//!   between deciding what changes and recording it.
//! * [`markdown`] reads notes the way Obsidian does: front matter (the one place YAML is parsed, with
//!   bounded alias expansion), headings and sections, named blocks, tags, links, and tasks with their
//!   Obsidian Tasks and Dataview fields.
//! * [`contributions`] turns bundle bytes into a validated [`contributions::Bundle`] and a bundle into
//!   a [`vault::ChangeSet`] against a snapshot, and keeps the drop folders and receipts. It never
//!   touches Git.
//! * [`git`] is the only module that imports `git2`: commits from in-memory trees with a
//!   compare-and-swap of the branch, work-tree sync that never overwrites a person's edit, and the
//!   trailers that make Git the audit trail.
//! * [`index`] is the only module that imports `rusqlite`: every note and task in
//!   `.quire/state.db`, brought up to date incrementally before each query, with tasks, agenda,
//!   missions, calendar, link resolution and health checks.
//! * [`render`] turns the work tree or any commit into themed static sites, incrementally and
//!   atomically; [`http`] serves a site on loopback with live reload.
//! * [`workflow`] holds the functions the CLI, the hooks and the daemon share, among them
//!   [`mod@workflow::sandbox`] (mission branches promoted into main as one merge commit, rolled back
//!   as one revert) and [`mod@workflow::hooks`] (git hooks that index and render).
//! * [`events`] is what happened, as plain data, written to `07_LOGS/`.
//!
//! Data flow for a contribution: `pending/` → claim (rename to `processing/`) → parse → plan against
//! the branch tip → dirty check → commit + compare-and-swap → work-tree sync → receipt → `processed/`
//! or `rejected/`. Crash safety of that flow is argued in [`mod@workflow::apply`].

pub mod analytics;
pub mod contributions;
pub mod daemon;
mod embedded;
pub mod events;
pub mod fault;
pub mod git;
pub mod http;
pub mod index;
pub mod markdown;
pub mod missions;
pub mod process;
pub mod render;
pub mod runners;
pub mod vault;
pub mod workflow;

/// Lowercase hexadecimal of `bytes`: how digests appear as build keys, ETags, names and tokens. A
/// render makes one for every page, so it is one allocation, not one per byte.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Hands memory the C libraries freed (SQLite's page caches, libgit2's objects) back to the system.
/// They allocate through the C library's `malloc`, not Rust's allocator, and glibc keeps what they
/// free in per-thread arenas that it trims only from the top, so the memory of one large pass (a
/// walk of the whole index, a burst's pack) stayed resident. Does nothing off glibc.
pub fn trim_c_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: glibc's `malloc_trim` takes the arenas' locks itself and may be called from any
        // thread at any time.
        unsafe { malloc_trim(0) };
    }
}

/// Shared pieces of the property-based fuzz targets (each lives in the test module of what it
/// fuzzes). `cargo test` runs each target briefly; `scripts/fuzz.sh` runs them long by setting
/// `PROPTEST_CASES`. Failures found are kept in `proptest-regressions/` and replayed first.
#[cfg(test)]
pub(crate) mod fuzz {
    use proptest::prelude::*;

    /// The configuration of a target: `cases` runs unless `PROPTEST_CASES` says otherwise.
    pub(crate) fn config(cases: u32) -> ProptestConfig {
        let mut c = ProptestConfig::default();
        if std::env::var_os("PROPTEST_CASES").is_none() {
            c.cases = cases;
        }
        c
    }

    /// Text built from the pieces that parsers of paths, Markdown, YAML and task lines treat
    /// specially, mixed with arbitrary characters: random bytes alone almost never reach the
    /// interesting branches.
    pub(crate) fn tricky_text(
        pieces: &'static [&'static str],
        max: usize,
    ) -> BoxedStrategy<String> {
        let piece = prop_oneof![
            4 => proptest::sample::select(pieces).prop_map(str::to_owned),
            1 => any::<char>().prop_map(String::from),
            1 => "[a-z ]{1,8}",
        ];
        proptest::collection::vec(piece, 0..max)
            .prop_map(|v| v.concat())
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(super::hex(&[0x00, 0x0f, 0xa0, 0xff, 0x5c]), "000fa0ff5c");
        assert_eq!(super::hex(&[]), "");
    }
}
