//! The answers to the read-only questions the CLI and the HTTP API both ask (`quire agenda --json`
//! and `GET /api/agenda`, `quire missions --json` and `GET /api/renderer/missions`): one function
//! per question, so the two can never answer differently.

use chrono::NaiveDate;
use serde_json::{Value, json};

use super::WorkflowError;
use crate::index::{Index, IndexError};
use crate::vault::Vault;

/// The agenda as JSON text: `{"today", "days", "overdue", "today_tasks", "upcoming"}`, each list
/// of task objects in the order the agenda shows them. The task objects are spliced in as the
/// index wrote them, not parsed and written again.
pub fn agenda(index: &Index, today: NaiveDate, days: u32) -> Result<String, IndexError> {
    let a = index.agenda_json(today, days)?;
    let size: usize = [&a.overdue, &a.today, &a.upcoming]
        .iter()
        .flat_map(|l| l.iter())
        .map(|t| t.len() + 1)
        .sum();
    let mut out = String::with_capacity(size + 96);
    out.push_str(&format!("{{\"today\":\"{today}\",\"days\":{days}"));
    for (name, list) in [
        ("overdue", &a.overdue),
        ("today_tasks", &a.today),
        ("upcoming", &a.upcoming),
    ] {
        out.push_str(&format!(",\"{name}\":["));
        for (i, t) in list.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(t);
        }
        out.push(']');
    }
    out.push('}');
    Ok(out)
}

/// The missions with their task counts and their sandbox (`null` when they have none):
/// `{"today", "missions": [...]}`.
pub fn missions(vault: &Vault, index: &Index, today: NaiveDate) -> Result<Value, WorkflowError> {
    let sandboxes = super::sandbox::list(vault)?;
    let missions: Vec<Value> = index
        .missions(today)?
        .into_iter()
        .map(|m| {
            let sandbox = sandboxes.iter().find(|s| s.id == m.id);
            let mut v = serde_json::to_value(&m).unwrap_or(Value::Null);
            v["sandbox"] = serde_json::to_value(sandbox).unwrap_or(Value::Null);
            v
        })
        .collect();
    Ok(json!({ "today": today.to_string(), "missions": missions }))
}

/// Every theme (built in and the vault's own), and for those the vault renders, where the site is
/// and when it last changed: `{"themes": [{name, version, description, parent, origin,
/// overrides_builtin, site}]}`. `site` is `null` for a theme nothing renders (a parent such as
/// `base`), else `{"url", "dir", "configured", "last_render"}`; `last_render` is `null` until a
/// render records one.
pub fn themes(vault: &Vault) -> Result<Value, WorkflowError> {
    let configured = super::render::theme_names(vault, &super::render::Themes::All);
    let site_root = vault.root().join(crate::render::SITE_DIR);
    let themes: Vec<Value> = crate::render::available_themes(vault)
        .map_err(crate::render::RenderError::from)?
        .into_iter()
        .map(|t| {
            let is_configured = configured.contains(&t.name);
            let live = site_root.join(&t.name).join("index.html").is_file();
            let site = (is_configured || live).then(|| {
                json!({
                    "url": format!("/site/{}/", t.name),
                    "dir": format!("{}/{}", crate::render::SITE_DIR, t.name),
                    "configured": is_configured,
                    "last_render": super::render::last_render(vault, &t.name),
                })
            });
            let mut v = serde_json::to_value(&t).unwrap_or(Value::Null);
            v["site"] = site.unwrap_or(Value::Null);
            v
        })
        .collect();
    Ok(json!({ "themes": themes }))
}
