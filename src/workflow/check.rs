//! `quire check`: vault health, every finding with its file and line.
//!
//! - Notes, from the index (brought up to date first): front matter that is not valid YAML or that
//!   expands through aliases, task dates that are not real dates, links and embeds that resolve to
//!   nothing.
//! - The bundles waiting in `pending/`, each validated against the shipped JSON Schema and by the
//!   same parser `apply` uses, so `check` never passes a bundle that `apply` would refuse on its own
//!   terms.

use serde::Serialize;

use super::WorkflowError;
use crate::contributions::{Bundle, queue, schema};
use crate::index::Index;
use crate::vault::{Queue, Vault};

/// One thing wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What kind of check found it (`note`, `link`, `bundle`).
    pub kind: String,
    /// The vault-relative file.
    pub file: String,
    /// The line, when known.
    pub line: Option<usize>,
    /// A machine-readable code (`invalid_bundle`, `schema`, …).
    pub code: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// What `check` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Notes examined.
    pub notes_checked: usize,
    /// Pending bundles examined.
    pub bundles_checked: usize,
    /// Everything wrong, in file order.
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the vault.
pub fn check(vault: &Vault) -> Result<CheckReport, WorkflowError> {
    let mut report = CheckReport::default();
    let (index, update) = Index::open_fresh(vault)?;
    report.notes_checked = update.notes;
    for p in index.problems()? {
        report.problems.push(Problem {
            kind: "note".into(),
            file: p.path,
            line: p.line,
            code: p.code,
            message: p.message,
        });
    }
    for l in index.broken_links()? {
        let what = if l.kind == "embed" {
            "embeds"
        } else {
            "links to"
        };
        report.problems.push(Problem {
            kind: "link".into(),
            file: l.path,
            line: Some(l.line),
            code: "broken_link".into(),
            message: format!(
                "{what} `{}`, which is no note or file in the vault",
                l.target
            ),
        });
    }

    let pending = queue::list(vault, Queue::Pending)
        .map_err(|e| WorkflowError::io("could not list contributions/pending/", e))?;
    let limits = &vault.config().contributions;
    for path in pending {
        report.bundles_checked += 1;
        let file = path
            .strip_prefix(vault.root())
            .map_or_else(|_| path.display().to_string(), |p| p.display().to_string());
        let mut problem = |code: &str, line: Option<usize>, message: String| {
            report.problems.push(Problem {
                kind: "bundle".into(),
                file: file.clone(),
                line,
                code: code.into(),
                message,
            });
        };
        let bytes = match queue::read_bundle(&path, limits.max_bundle_bytes) {
            Ok(Ok(b)) => b,
            Ok(Err(rejection)) => {
                problem(rejection.code.as_str(), None, rejection.message);
                continue;
            }
            // Claimed by a running quire between listing and reading: nothing to check.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                report.bundles_checked -= 1;
                continue;
            }
            Err(e) => return Err(WorkflowError::io(format!("could not read {file}"), e)),
        };
        // A mission brief is checked against its own contract.
        if crate::contributions::contract_of(&bytes).as_deref()
            == Some(crate::missions::brief::CONTRACT)
        {
            if let Err(rejection) = crate::missions::Brief::parse(&bytes) {
                problem(
                    rejection.code.as_str(),
                    json_error_line(&bytes),
                    rejection.message,
                );
            }
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                for v in crate::missions::schema::violations(&value) {
                    let at = if v.pointer.is_empty() {
                        "the brief".to_owned()
                    } else {
                        format!("`{}`", v.pointer)
                    };
                    problem("schema", None, format!("{at}: {}", v.message));
                }
            }
            continue;
        }
        if let Err(rejection) = Bundle::parse(&bytes, limits) {
            let line = json_error_line(&bytes);
            let where_ = match (rejection.change, &rejection.path) {
                (Some(i), Some(p)) => format!("change {i} (`{p}`): "),
                (Some(i), None) => format!("change {i}: "),
                _ => String::new(),
            };
            problem(
                rejection.code.as_str(),
                line,
                format!("{where_}{}", rejection.message),
            );
        }
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            for v in schema::violations(&value) {
                let at = if v.pointer.is_empty() {
                    "the bundle".to_owned()
                } else {
                    format!("`{}`", v.pointer)
                };
                problem("schema", None, format!("{at}: {}", v.message));
            }
        }
    }
    Ok(report)
}

/// The line of a JSON syntax error, if the bytes are not JSON.
fn json_error_line(bytes: &[u8]) -> Option<usize> {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .err()
        .map(|e| e.line())
}
