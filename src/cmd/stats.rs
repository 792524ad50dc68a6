//! `quire stats`: analytics over what was applied, from the same library answer as
//! `GET /api/analytics/stats`.

use std::process::ExitCode;

use quire::analytics::{Analytics, parse_time};
use quire::vault::Vault;
use serde_json::Value;

use super::output::{self, outln};

pub(crate) fn stats(vault: &Vault, since: Option<String>, json: bool) -> anyhow::Result<ExitCode> {
    let since = since.as_deref().map(parse_time).transpose()?;
    let mut analytics = Analytics::open(vault)?;
    // Receipts filed while nothing recorded them (a crash, a deleted .quire/) count too.
    analytics.catch_up(vault)?;
    let s = analytics.stats(since)?;
    if json {
        output::json(&s)?;
        return Ok(ExitCode::SUCCESS);
    }
    let b = &s["bundles"];
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    let pct = |v: &Value| format!("{:.1} %", v.as_f64().unwrap_or(0.0) * 100.0);
    let ms = |v: &Value| {
        v.as_f64()
            .map(|m| format!("{m:.1} ms"))
            .unwrap_or_else(|| "–".into())
    };
    match &s["since"] {
        Value::String(t) => outln!("Since {t}:"),
        _ => outln!("Everything recorded:"),
    }
    outln!(
        "Bundles: {} ({} applied, {} duplicate, {} rejected; {} refused)",
        n(&b["total"]),
        n(&b["by_status"]["applied"]),
        n(&b["by_status"]["duplicate"]),
        n(&b["by_status"]["rejected"]),
        pct(&b["rejection_rate"])
    );
    outln!(
        "Apply time: p50 {}, p95 {}",
        ms(&b["apply_ms"]["p50"]),
        ms(&b["apply_ms"]["p95"])
    );
    if let Some(codes) = b["by_code"].as_object().filter(|c| !c.is_empty()) {
        let mut codes: Vec<(&String, i64)> = codes.iter().map(|(k, v)| (k, n(v))).collect();
        codes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut rows = vec![vec!["REFUSAL".to_owned(), "COUNT".to_owned()]];
        rows.extend(
            codes
                .into_iter()
                .map(|(k, c)| vec![k.clone(), c.to_string()]),
        );
        outln!();
        output::table(&rows);
    }
    if let Some(authors) = b["by_author"].as_array().filter(|a| !a.is_empty()) {
        let mut rows = vec![vec![
            "AUTHOR".to_owned(),
            "APPLIED".to_owned(),
            "REJECTED".to_owned(),
        ]];
        rows.extend(authors.iter().take(10).map(|a| {
            vec![
                a["author"].as_str().unwrap_or("").to_owned(),
                n(&a["applied"]).to_string(),
                n(&a["rejected"]).to_string(),
            ]
        }));
        outln!();
        output::table(&rows);
    }
    let st = &s["steps"];
    outln!();
    outln!(
        "Mission steps: {} attempts, p50 {}, p95 {}; {} were retries; {} of {} missions escalated ({})",
        n(&st["attempts"]),
        ms(&st["step_ms"]["p50"]),
        ms(&st["step_ms"]["p95"]),
        pct(&st["retry_rate"]),
        n(&st["escalated_missions"]),
        n(&st["missions"]),
        pct(&st["escalation_rate"])
    );
    Ok(ExitCode::SUCCESS)
}
