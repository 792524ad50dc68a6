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
