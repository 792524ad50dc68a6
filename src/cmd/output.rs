//! Printing: aligned text tables for people, JSON for programs.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

/// Set once standard output is gone (its reader closed it, as `quire apply | head -1` does): the
/// command then finishes its work without printing, as a pipeline expects, instead of dying half
/// way on the first write.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// Writes to standard output unless it is gone. A closed pipe is silence; any other failure is
/// said once on stderr.
pub(crate) fn write_out(args: std::fmt::Arguments<'_>) {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        gone(&e);
    }
}

/// Notes that standard output failed with `e`.
fn gone(e: &std::io::Error) {
    if !STDOUT_GONE.swap(true, Ordering::Relaxed) && e.kind() != std::io::ErrorKind::BrokenPipe {
        eprintln!("quire: could not write to standard output: {e}");
    }
}

/// `println!` that never panics: see [`write_out`].
macro_rules! outln {
    () => {
        $crate::cmd::output::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cmd::output::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that never panics: see [`write_out`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cmd::output::write_out(format_args!($($arg)*))
    };
}

pub(crate) use {out, outln};

/// Runs `write` against locked standard output unless it is gone; a failure marks it gone (see
/// [`write_out`]) instead of failing the command.
pub(crate) fn with_stdout(write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>) {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    if let Err(e) = write(&mut out).and_then(|()| out.flush()) {
        gone(&e);
    }
}

/// Prints `value` as one JSON document on stdout.
pub(crate) fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    with_stdout(|out| {
        serde_json::to_writer_pretty(&mut *out, value)?;
        writeln!(out)
    });
    Ok(())
}

/// Prints rows as columns padded to their widest cell (the last column is not padded).
pub(crate) fn table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    // Buffered: a long table is one write, not one per line.
    with_stdout(|out| {
        for row in rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(
                        ' ',
                        widths[c] - cell.chars().count() + 2,
                    ));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    });
}

/// The first 10 characters of a commit id.
pub(crate) fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}
