//! The `quire` command: parses arguments, calls the library, maps outcomes to exit codes
//! (0 success, 1 refused or failed, 2 usage error).

mod cli;
mod cmd;

use std::process::ExitCode;

use clap::Parser as _;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Hands memory that mimalloc holds freed back to the system. The daemon calls it when it goes idle
/// after work: mimalloc returns freed memory only after a delay measured in later allocator
/// activity, which an idle daemon has none of, so the memory of its busiest pass (a burst, a full
/// render) stayed resident. Purging sooner (mimalloc's `purge_delay` 0) costs every pass its page
/// faults instead; between passes it costs nothing. What the C libraries freed goes back too.
/// Keeps what mimalloc frees in this process instead of handing it back to the system as it
/// goes: for a command that ends when its work is done, the system takes everything back at exit
/// at once. Purging as it went, and once more at exit, cost a large render a tenth of a second of
/// `madvise` after its last page was written. The daemon, `serve` and `demo` run on and keep
/// purging (and [`release_freed_memory`] when idle); a `MIMALLOC_PURGE_DELAY` the user set stands.
fn keep_freed_memory() {
    unsafe extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    // `mi_option_purge_delay` in the enum of mimalloc.h (v3, as Cargo.lock pins it; the Rust
    // binding names no constant for it); -1 is "never purge".
    const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: mimalloc is linked in as the global allocator above; options are set before any
    // other thread starts (mimalloc asks that of `mi_option_set`).
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

fn release_freed_memory() {
    unsafe extern "C" {
        fn mi_collect(force: bool);
    }
    // SAFETY: mimalloc is linked in as the global allocator above, and `mi_collect` is safe to call
    // from any thread at any time.
    unsafe { mi_collect(true) };
    quire::trim_c_heap();
}

fn main() -> ExitCode {
    // mimalloc asks for transparent huge pages; the kernel then zeroes 2 MiB at every first touch,
    // which for a short command costs more than it saves and makes its timings erratic.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let cli = cli::Cli::parse();
    if !matches!(
        cli.command,
        cli::Command::Daemon { .. } | cli::Command::Serve { .. } | cli::Command::Demo { .. }
    ) {
        keep_freed_memory();
    }
    init_tracing(cli.verbose);
    match cmd::run(cli) {
        Ok(code) => code,
        // The reader of our output went away (`quire tasks --json | head -1`): nothing to say.
        Err(e) if stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quire: {}", report(&e));
            ExitCode::from(1)
        }
    }
}

/// Whether `e` is a write to a closed pipe.
fn stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes in one line, each said once: the library's errors already include
/// their cause in their own message, so `anyhow`'s `{:#}` would repeat it.
fn report(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// Logs go to stderr. `QUIRE_LOG` (a tracing filter, like `RUST_LOG`) wins over `-v`.
fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("QUIRE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("quire={default}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
