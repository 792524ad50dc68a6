//! Snapshot tests: whole rendered pages of a fixed vault, compared byte for byte with the copies
//! committed under `tests/snapshots/<theme>/`.
//!
//! A change to a template, the Markdown renderer or the page model shows up here as a diff a person
//! reviews. To accept one, run `QUIRE_UPDATE_SNAPSHOTS=1 cargo test --test it snapshots`, read the
//! `git diff` of `tests/snapshots/`, and commit it with the change that caused it. A missing
//! snapshot fails the test rather than being written silently, so CI never accepts a page nobody
//! has looked at.

use std::path::{Path, PathBuf};

use crate::render::{render_theme, rich_vault};

/// The pages worth watching: one of each kind, in both built-in themes.
const PAGES: &[(&str, &[&str])] = &[
    (
        "paper",
        &[
            "index.html",
            "02_projects/garden-plan/index.html",
            "02_projects/index.html",
            "03_notes/raw/index.html",
            "tags/index.html",
            "tags/garden/index.html",
            "tasks/2026-04/index.html",
            "calendar/2026-04/index.html",
            "missions/m-1/index.html",
            "404.html",
            "search.json",
            "feed.xml",
        ],
    ),
    (
        "desk",
        &[
            "index.html",
            "missions/index.html",
            "missions/m-1/index.html",
            "agenda/index.html",
        ],
    ),
];

fn snapshot_path(theme: &str, page: &str) -> PathBuf {
    // One flat file per page keeps the folder easy to review.
    let name = page.trim_end_matches("/index.html").replace('/', "__");
    let name = if page == "index.html" {
        "index.html".to_owned()
    } else if name.contains('.') {
        name
    } else {
        format!("{name}.html")
    };
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(theme)
        .join(name)
}

/// Where two texts first differ, with a few lines of each around it.
fn first_difference(want: &str, got: &str) -> String {
    let (w, g): (Vec<_>, Vec<_>) = (want.lines().collect(), got.lines().collect());
    let at = w
        .iter()
        .zip(&g)
        .position(|(a, b)| a != b)
        .unwrap_or(w.len().min(g.len()));
    let show = |lines: &[&str]| {
        lines
            .iter()
            .enumerate()
            .skip(at.saturating_sub(2))
            .take(5)
            .map(|(i, l)| format!("  {:>4} | {l}\n", i + 1))
            .collect::<String>()
    };
    format!(
        "first difference at line {}\n snapshot:\n{} rendered:\n{}",
        at + 1,
        show(&w),
        show(&g)
    )
}

#[test]
fn rendered_pages_match_their_reviewed_snapshots() {
    let update = std::env::var_os("QUIRE_UPDATE_SNAPSHOTS").is_some_and(|v| v == "1");
    let t = rich_vault();
    let mut failures = Vec::new();
    for (theme, pages) in PAGES {
        render_theme(&t, theme);
        let site = t.path("_site").join(theme);
        for page in *pages {
            let got = std::fs::read_to_string(site.join(page))
                .unwrap_or_else(|e| panic!("{theme}: {page} was not rendered: {e}"));
            let file = snapshot_path(theme, page);
            if update {
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(&file, &got).unwrap();
                continue;
            }
            match std::fs::read_to_string(&file) {
                Ok(want) if want == got => {}
                Ok(want) => failures.push(format!(
                    "{theme}/{page} differs from {}: {}",
                    file.display(),
                    first_difference(&want, &got)
                )),
                Err(e) => failures.push(format!(
                    "{theme}/{page}: no snapshot at {} ({e})",
                    file.display()
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\nIf the change is intended: QUIRE_UPDATE_SNAPSHOTS=1 cargo test --test it snapshots, \
         then review `git diff tests/snapshots` before committing.",
        failures.join("\n\n")
    );
}
