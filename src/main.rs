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
