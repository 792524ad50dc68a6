//! Analytics over what was applied, for real: bundles through `quire apply`, mission attempts
//! through `quire mission start`, read back with `quire stats`, and `/api/analytics/*` from the
//! daemon, before and after `.quire/` is deleted.

use std::time::Duration;

use serde_json::{Value, json};

use crate::daemon::{get_json, start, wait_until};
use crate::harness::{VaultTest, bundle};
use crate::missions::{brief, engine_vault};

fn authored(id: &str, name: &str, email: &str, changes: Value) -> Value {
    let mut b = bundle(id, changes);
    b["author"] = json!({ "name": name, "email": email });
    b
}

fn stats_cli(t: &VaultTest, args: &[&str]) -> Value {
    let mut all = vec!["stats", "--json"];
    all.extend_from_slice(args);
    let out = t.quire(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A vault with bundles from two authors (applied, duplicate, refused twice) and two missions:
/// one whose step is retried once and succeeds, one whose step fails and escalates.
fn busy_vault() -> VaultTest {
    let t = engine_vault(&[
        (
            "flaky",
            "if [ -f \"$QUIRE_VAULT/.quire/tried\" ]; then echo fine > done.txt; else touch \"$QUIRE_VAULT/.quire/tried\"; echo 'rate limit'; exit 75; fi",
        ),
        ("fail", "echo broken; exit 3"),
    ]);
    for i in 0..3 {
        t.drop_json(
            &format!("ann-{i}.json"),
            &authored(
                &format!("ann-{i}"),
                "Ann",
                "ann@example.org",
                json!([{ "op": "create", "path": format!("03_NOTES/garden/n{i}.md"), "content": "# n\n" }]),
            ),
        );
    }
    t.drop_json(
        "bob-1.json",
        &authored(
            "bob-1",
            "Bob",
            "bob@example.org",
            json!([{ "op": "create", "path": "04_AREAS/home.md", "content": "# home\n" }]),
        ),
    );
    t.apply();
    // The same id again, a change to a note that is not there, and no bundle at all.
    t.drop_json(
        "ann-0-again.json",
        &authored(
            "ann-0",
            "Ann",
            "ann@example.org",
            json!([{ "op": "create", "path": "03_NOTES/garden/n0.md", "content": "# n\n" }]),
        ),
    );
    t.drop_json(
        "bob-2.json",
        &authored(
            "bob-2",
            "Bob",
            "bob@example.org",
            json!([{ "op": "patch", "path": "03_NOTES/missing.md", "patch": [{ "op": "add", "path": "/x", "value": 1 }] }]),
        ),
    );
    t.drop_bytes("junk.json", b"{ not json");
    t.apply();
    let retried = brief(
        "m-1",
        json!([{ "step": "work", "uses": "flaky", "heal": [{ "when": "log:rate limit", "retries": 2, "backoff": "10ms" }] }]),
    );
    crate::missions::start(&t, &retried);
    crate::missions::start(&t, &brief("m-2", json!([{ "step": "a", "uses": "fail" }])));
    t
}

#[test]
fn stats_logs_and_trends_count_what_was_applied_and_survive_a_lost_quire_dir() {
    let t = busy_vault();
    let s = stats_cli(&t, &[]);
    let b = &s["bundles"];
    // Four bundles applied, the two mission briefs as well; one duplicate; two refused.
    assert_eq!(
        b["by_status"],
        json!({ "applied": 6, "duplicate": 1, "rejected": 2 }),
        "{s}"
    );
    assert_eq!(b["total"], 9);
    assert_eq!(
        b["by_code"],
        json!({ "invalid_json": 1, "not_found": 1 }),
        "{s}"
    );
    assert_eq!(b["rejection_rate"], 0.2222);
    let authors = b["by_author"].as_array().unwrap();
    assert_eq!(
        authors[0],
        json!({ "author": "Ann <ann@example.org>", "applied": 3, "rejected": 0 }),
        "{s}"
    );
    assert!(
        authors
            .contains(&json!({ "author": "Bob <bob@example.org>", "applied": 1, "rejected": 1 })),
        "{s}"
    );
    let p50 = b["apply_ms"]["p50"].as_f64().unwrap();
    let p95 = b["apply_ms"]["p95"].as_f64().unwrap();
    assert!(p50 > 0.0 && p95 >= p50, "{s}");
    let st = &s["steps"];
    // m-1: a failed attempt and its retry; m-2: one failure, escalated.
    assert_eq!(st["attempts"], 3, "{s}");
    assert_eq!(st["by_state"]["succeeded"], 1, "{s}");
    assert_eq!(st["retry_rate"], 0.3333, "{s}");
    assert_eq!(
        (st["missions"].as_i64(), st["escalated_missions"].as_i64()),
        (Some(2), Some(1)),
        "{s}"
    );
    assert!(st["step_ms"]["p50"].as_f64().unwrap() > 0.0);
    // A later start counts nothing.
    let later = stats_cli(&t, &["--since", "2999-01-01"]);
    assert_eq!(
        (
            later["bundles"]["total"].as_i64(),
            later["steps"]["attempts"].as_i64()
        ),
        (Some(0), Some(0))
    );
    let refused = t.quire(&["stats", "--since", "last tuesday"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("`last tuesday`"));

    let d = start(&t);
    let (status, api) = get_json(&d.addr, "/api/analytics/stats");
    assert_eq!(status, 200);
    assert_eq!(
        api,
        stats_cli(&t, &[]),
        "the API and `quire stats --json` differ"
    );

    // Logs: newest first, filtered, paged.
    let (_, all) = get_json(&d.addr, "/api/analytics/logs?limit=500");
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 9 + 3, "{all}");
    let times: Vec<&str> = items.iter().map(|i| i["at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    let (_, rejected) = get_json(&d.addr, "/api/analytics/logs?status=rejected&kind=bundle");
    assert_eq!(rejected["items"].as_array().unwrap().len(), 2, "{rejected}");
    let (_, by_email) = get_json(&d.addr, "/api/analytics/logs?author=bob@example.org");
    assert_eq!(by_email["items"].as_array().unwrap().len(), 2, "{by_email}");
    let (_, by_name) = get_json(&d.addr, "/api/analytics/logs?author=Ann&status=applied");
    assert_eq!(by_name["items"].as_array().unwrap().len(), 3, "{by_name}");
    let (_, folder) = get_json(&d.addr, "/api/analytics/logs?path=03_NOTES/garden/");
    assert_eq!(folder["items"].as_array().unwrap().len(), 3, "{folder}");
    let (_, one) = get_json(&d.addr, "/api/analytics/logs?path=03_NOTES/garden/n1.md");
    assert_eq!(one["items"][0]["id"], "ann-1", "{one}");
    let (_, mission) = get_json(&d.addr, "/api/analytics/logs?mission=m-1&kind=attempt");
    let m = mission["items"].as_array().unwrap();
    assert_eq!(m.len(), 2, "{mission}");
    assert_eq!(
        (m[0]["status"].as_str(), m[0]["attempt"].as_i64()),
        (Some("succeeded"), Some(2))
    );
    assert_eq!(m[1]["status"], "failed");
    let (_, page1) = get_json(&d.addr, "/api/analytics/logs?limit=5");
    let (_, page2) = get_json(&d.addr, "/api/analytics/logs?limit=5&offset=5");
    let (_, page3) = get_json(&d.addr, "/api/analytics/logs?limit=5&offset=10");
    assert_eq!(
        (page1["next_offset"].as_i64(), page2["next_offset"].as_i64()),
        (Some(5), Some(10))
    );
    assert_eq!(page3["next_offset"], Value::Null);
    let paged: Vec<Value> = [&page1, &page2, &page3]
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap().clone())
        .collect();
    assert_eq!(&paged, items);

    // Trends: today's point holds today's work; empty days are there too.
    let (_, trends) = get_json(&d.addr, "/api/analytics/trends?every=day");
    let series = trends["series"].as_array().unwrap();
    assert_eq!(series.len(), 7, "{trends}");
    let today = series.last().unwrap();
    assert_eq!(
        (
            today["applied"].as_i64(),
            today["rejected"].as_i64(),
            today["attempts"].as_i64()
        ),
        (Some(6), Some(2), Some(3)),
        "{trends}"
    );
    let (_, hours) = get_json(&d.addr, "/api/analytics/trends?every=hour");
    assert_eq!(hours["series"].as_array().unwrap().len(), 48);

    // Every refusal names what to fix.
    for (path, word) in [
        ("/api/analytics/logs?limit=many", "`limit`"),
        ("/api/analytics/logs?kind=receipt", "`kind`"),
        ("/api/analytics/logs?since=soon", "`soon`"),
        ("/api/analytics/trends?every=week", "`every`"),
        ("/api/analytics/trends?since=2999-01-01", "future"),
        (
            "/api/analytics/trends?every=hour&since=1990-01-01",
            "at most",
        ),
        ("/api/analytics/stats?since=nope", "`nope`"),
    ] {
        let (status, v) = get_json(&d.addr, path);
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some("bad_query")),
            "{path}: {v}"
        );
        assert!(
            v["error"]["message"].as_str().unwrap().contains(word),
            "{path}: {v}"
        );
    }
    drop(d);

    // `.quire/` deleted: the daemon rebuilds analytics from the receipts on disk and the missions
    // from Git and their run records; the numbers are the same.
    std::fs::remove_dir_all(t.path(".quire")).unwrap();
    let d = start(&t);
    wait_until("analytics rebuilt", Duration::from_secs(30), || {
        get_json(&d.addr, "/api/analytics/stats").1["bundles"] == s["bundles"]
    });
    let (_, again) = get_json(&d.addr, "/api/analytics/logs?kind=bundle&limit=500");
    assert_eq!(again["items"].as_array().unwrap().len(), 9);
}
