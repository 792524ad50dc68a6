//! HTTP: the daemon's API ([`api`]) and serving rendered sites over loopback. The only module
//! that imports `axum` (the daemon uses tokio's channels to talk to it).
//!
//! [`site`] answers a request for a file of a site safely (nothing outside it, nothing hidden);
//! [`serve`] is `quire serve`, a site with live reload. The daemon's API builds on the same pieces.

pub mod api;
mod control;
mod guard;
mod listen;
mod serve;
pub mod site;

pub use listen::Limits;
pub use serve::{ServeError, ServeOptions, serve, signals};
