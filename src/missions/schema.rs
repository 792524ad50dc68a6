//! The mission contract as a JSON Schema (`schemas/mission.schema.json`, compiled in), for
//! `quire check` and for anyone writing briefs. Accepting a brief goes through
//! [`Brief::parse`](super::Brief::parse); a test keeps the two in agreement on every structural rule.

use std::sync::OnceLock;

use serde_json::Value;

pub use crate::contributions::schema::SchemaViolation;

/// The schema text, as shipped in the repository.
pub const SCHEMA_TEXT: &str = include_str!("../../schemas/mission.schema.json");

/// Every way `instance` fails the mission schema (empty when it conforms).
pub fn violations(instance: &Value) -> Vec<SchemaViolation> {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    let schema = VALIDATOR.get_or_init(|| crate::contributions::schema::compile(SCHEMA_TEXT));
    crate::contributions::schema::violations_against(schema, instance)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::missions::Brief;
    use serde_json::json;

    #[test]
    fn the_schema_and_the_parser_agree() {
        let step = json!({ "step": "a", "run": "true" });
        let with = |extra: Value| {
            let mut b = json!({ "contract": "quire.mission/1", "id": "m-1", "pipeline": [step] });
            for (k, v) in extra.as_object().unwrap() {
                b[k] = v.clone();
            }
            b
        };
        let cases = [
            (with(json!({})), true),
            (
                with(
                    json!({ "title": "T", "objectives": "O", "tasks": ["x"], "from": "main", "approval": "auto", "max_revisions": 1, "items": ["a", "b-2"], "constraints": { "deadline": "2026-12-15", "other": [1] } }),
                ),
                true,
            ),
            (with(json!({ "items": null })), true),
            (
                with(
                    json!({ "pipeline": [{ "step": "a", "uses": "plan", "timeout": "10m", "effects": "external", "retries": 2, "heal": [{ "when": "exit:75", "retries": 3, "backoff": "250ms" }, { "when": "log:/rate/" }, { "when": "signal:TERM" }, { "when": "lost" }] }] }),
                ),
                true,
            ),
            (with(json!({ "pipeline": [] })), false),
            (with(json!({ "id": "a..b" })), false),
            (with(json!({ "id": "x.lock" })), false),
            (with(json!({ "id": "-x" })), false),
            (with(json!({ "contract": "quire.mission/2" })), false),
            (with(json!({ "extra": 1 })), false),
            (with(json!({ "approval": "maybe" })), false),
            (with(json!({ "items": [] })), false),
            (with(json!({ "items": ["a", "a"] })), false),
            (with(json!({ "items": ["a.b"] })), false),
            (with(json!({ "tasks": ["a\nb"] })), false),
            (
                with(json!({ "constraints": { "deadline": "soon" } })),
                false,
            ),
            (with(json!({ "pipeline": [{ "step": "a" }] })), false),
            (
                with(json!({ "pipeline": [{ "step": "a", "run": "x", "uses": "y" }] })),
                false,
            ),
            (
                with(json!({ "pipeline": [{ "step": "a.b", "run": "x" }] })),
                false,
            ),
            (
                with(json!({ "pipeline": [{ "step": "a", "run": "x", "timeout": "soon" }] })),
                false,
            ),
            (
                with(json!({ "pipeline": [{ "step": "a", "run": "x", "retires": 1 }] })),
                false,
            ),
            (
                with(json!({ "pipeline": [{ "step": "a", "run": "x", "effects": "some" }] })),
                false,
            ),
            (
                with(
                    json!({ "pipeline": [{ "step": "a", "run": "x", "heal": [{ "when": "sometimes" }] }] }),
                ),
                false,
            ),
        ];
        for (brief, valid) in cases {
            let by_schema = violations(&brief).is_empty();
            let by_parser = Brief::parse(&serde_json::to_vec(&brief).unwrap());
            assert_eq!(
                by_schema,
                valid,
                "schema on {brief}: {:?}",
                violations(&brief)
            );
            assert_eq!(by_parser.is_ok(), valid, "parser on {brief}: {by_parser:?}");
        }
    }
}
