//! `quire render` and `quire themes`.

use super::output::outln;

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use quire::render::{Origin, Progress, available_themes};
use quire::vault::Vault;
use quire::workflow::{self, RenderRequest};

use super::output;

pub(crate) fn render(
    vault: &Vault,
    request: &RenderRequest,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let bar = Bar::default();
    let outcome = workflow::render::render(vault, request, &bar)?;
    if json {
        output::json(&outcome)?;
        return Ok(ExitCode::SUCCESS);
    }
    for t in &outcome.themes {
        let dir = t.dir.strip_prefix(vault.root()).unwrap_or(&t.dir);
        let what = if t.changed {
            format!(
                "{} rendered, {} file{} written, {} removed",
                t.rendered,
                t.written,
                if t.written == 1 { "" } else { "s" },
                t.removed
            )
        } else {
            "unchanged, nothing written".to_owned()
        };
        outln!(
            "{}: {} pages, {} attachments → {}/ ({what}) in {:.2} s",
            t.theme,
            t.pages,
            t.attachments,
            dir.display(),
            t.elapsed.as_secs_f64()
        );
    }
    let broken = outcome.themes.first().map_or(0, |t| t.broken_links);
    if broken > 0 {
        outln!(
            "{broken} link{} lead nowhere; they are marked in the pages, and `quire check` lists them.",
            if broken == 1 { "" } else { "s" }
        );
    }
    // Notes left out on purpose (excluded, drafts) are only counted; a URL clash is a surprise.
    let clashes: Vec<(&String, &String)> = outcome
        .unpublished
        .iter()
        .filter(|(_, why)| why.starts_with("its URL"))
        .collect();
    for (path, why) in &clashes {
        eprintln!("quire: {path} is not published: {why}");
    }
    let withheld = outcome.unpublished.len() - clashes.len();
    if withheld > 0 {
        outln!(
            "{withheld} note{} not published (excluded in quire.toml, `draft: true` or `publish: false`).",
            if withheld == 1 { " is" } else { "s are" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn serve(vault: &Vault, theme: Option<String>, port: u16) -> anyhow::Result<ExitCode> {
    let theme = match theme {
        Some(t) => t,
        None => workflow::render::theme_names(vault, &workflow::Themes::Default).remove(0),
    };
    let options = quire::http::ServeOptions {
        theme: theme.clone(),
        port,
    };
    quire::http::serve(vault, &options, |addr| {
        // Scripts wait for this line to know the server is up.
        outln!("Serving {theme} at http://{addr}/ (live reload on; Ctrl-C stops)");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    })?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn daemon(
    vault: &Vault,
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<ExitCode> {
    let addr = match listen {
        Some(a) => a,
        None => vault.config().daemon.listen.parse().map_err(|e| {
            anyhow::anyhow!(
                "`[daemon] listen = \"{}\"` in quire.toml is not an address like 127.0.0.1:7878: {e}",
                vault.config().daemon.listen
            )
        })?,
    };
    let themes = workflow::render::theme_names(vault, &workflow::Themes::All);
    quire::http::api::run_daemon(vault, addr, |addr| {
        // Scripts wait for this line to know the daemon is up. A reader that went away must not
        // take the daemon with it, so write errors are ignored.
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "quire daemon on http://{addr}/ (API under /api/, sites under /site/<theme>/; Ctrl-C or SIGTERM stops)"
        );
        for t in &themes {
            let _ = writeln!(out, "  http://{addr}/site/{t}/");
        }
        let _ = out.flush();
    })?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn themes(vault: &Vault, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        output::json(&quire::workflow::queries::themes(vault)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let themes = available_themes(vault)?;
    let configured = &vault.config().site.themes;
    let mut rows = vec![vec![
        "NAME".into(),
        "VERSION".into(),
        "EXTENDS".into(),
        "FROM".into(),
        "DESCRIPTION".into(),
    ]];
    for t in &themes {
        let from = match (&t.origin, t.overrides_builtin) {
            (Origin::BuiltIn, _) => "built-in",
            (Origin::Vault, true) => "vault (replaces built-in)",
            (Origin::Vault, false) => "vault",
        };
        let mark = if configured.contains(&t.name) {
            " *"
        } else {
            ""
        };
        rows.push(vec![
            format!("{}{mark}", t.name),
            t.version.clone(),
            t.parent.clone().unwrap_or_else(|| "–".into()),
            from.into(),
            t.description.clone(),
        ]);
    }
    output::table(&rows);
    outln!("* rendered by `quire render --all` and the daemon ([site] themes in quire.toml)");
    Ok(ExitCode::SUCCESS)
}

/// A progress bar on stderr that appears only once a render has taken a second (indicatif keeps it
/// hidden when stderr is not a terminal).
#[derive(Default)]
struct Bar {
    state: Mutex<Option<(ProgressBar, Instant, bool)>>,
}

impl Progress for Bar {
    fn start(&self, theme: &str, pages: usize) {
        let bar = ProgressBar::with_draw_target(Some(pages as u64), ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} {bar:40} {pos}/{len} pages  {per_sec}  eta {eta}",
        ) {
            bar.set_style(style);
        }
        bar.set_prefix(theme.to_owned());
        if let Ok(mut s) = self.state.lock() {
            *s = Some((bar, Instant::now(), false));
        }
    }

    fn advance(&self, n: usize) {
        if let Ok(mut s) = self.state.lock()
            && let Some((bar, started, shown)) = s.as_mut()
        {
            bar.inc(n as u64);
            if !*shown && started.elapsed() > Duration::from_secs(1) {
                bar.set_draw_target(ProgressDrawTarget::stderr());
                *shown = true;
            }
        }
    }

    fn finish(&self) {
        if let Ok(mut s) = self.state.lock()
            && let Some((bar, _, _)) = s.take()
        {
            bar.finish_and_clear();
        }
    }
}
