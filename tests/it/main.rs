//! quire's integration tests: one binary, a module per capability, each over real vaults (real Git
//! repositories, real files, the real `quire` binary where a process boundary matters).

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod analytics;
mod apply;
mod browser;
mod cli;
mod conformance;
mod crash;
mod daemon;
mod faults;
mod harness;
mod hooks;
mod hostile;
mod index;
mod mission_daemon;
mod missions;
mod neighbours;
mod obsidian;
mod origins;
mod remote;
mod render;
mod robustness;
mod runners;
mod sandbox;
mod serve;
mod snapshots;
