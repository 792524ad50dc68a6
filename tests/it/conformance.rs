//! The RFC 6902 test suite (`../shared/conformance/json-patch-tests/`), run as bundles against real
//! vault files: every enabled case must give the expected document, or be refused leaving the file
//! exactly as it was.

use quire::contributions::Status;
use serde_json::{Value, json};

use crate::harness::{VaultTest, bundle, shared_dir_or_skip};

#[test]
fn rfc6902_suite_runs_as_bundles() {
    let Some(shared) = shared_dir_or_skip("rfc6902_suite_runs_as_bundles") else {
        return;
    };
    let dir = shared.join("conformance/json-patch-tests");
    let mut cases = Vec::new();
    for file in ["tests.json", "spec_tests.json"] {
        let all: Vec<Value> =
            serde_json::from_slice(&std::fs::read(dir.join(file)).unwrap()).unwrap();
        for (i, case) in all.into_iter().enumerate() {
            if case.get("disabled").and_then(Value::as_bool) == Some(true)
                || case.get("doc").is_none()
            {
                continue;
            }
            cases.push((format!("{}-{i}", file.trim_end_matches(".json")), case));
        }
    }
    assert!(cases.len() > 100, "only {} cases found", cases.len());

    let v = VaultTest::new();
    let docs: Vec<(String, String)> = cases
        .iter()
        .map(|(name, case)| {
            (
                format!("data/{name}.json"),
                serde_json::to_string_pretty(&case["doc"]).unwrap() + "\n",
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = docs.iter().map(|(p, d)| (p.as_str(), d.as_str())).collect();
    v.commit(&refs, "RFC 6902 documents");
    for (i, (name, case)) in cases.iter().enumerate() {
        let b = bundle(
            &format!("rfc-{name}"),
            json!([{ "op": "patch", "path": format!("data/{name}.json"), "patch": case["patch"] }]),
        );
        v.drop_json(&format!("{i:04}-{name}.json"), &b);
    }
    let (report, _) = v.apply();
    assert_eq!(report.filed.len(), cases.len());

    let mut agree = 0;
    let mut disagree = Vec::new();
    for ((name, case), filed) in cases.iter().zip(&report.filed) {
        let path = format!("data/{name}.json");
        let now: Value = serde_json::from_str(&v.read(&path)).unwrap();
        let comment = case.get("comment").and_then(Value::as_str).unwrap_or("");
        let ok = if let Some(expected) = case.get("expected") {
            filed.receipt.status == Status::Applied && now == *expected
        } else if case.get("error").is_some() {
            let original = docs.iter().find(|(p, _)| *p == path).unwrap();
            filed.receipt.status == Status::Rejected && v.read(&path) == original.1
        } else {
            // A case with neither (a bare comment) must simply apply.
            filed.receipt.status == Status::Applied
        };
        if ok {
            agree += 1;
        } else {
            disagree.push(format!("{name} ({comment}): {:?}", filed.receipt));
        }
    }
    eprintln!(
        "RFC 6902 conformance: {agree}/{} enabled cases agree",
        cases.len()
    );
    assert!(
        disagree.is_empty(),
        "{} disagreements:\n{}",
        disagree.len(),
        disagree.join("\n")
    );
    assert_eq!(v.status(), "");
}
