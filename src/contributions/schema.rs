//! The bundle contract as a JSON Schema (`schemas/contribution.schema.json`, compiled in), for
//! `quire check` and for anyone writing bundles.
//!
//! Applying a bundle does not go through the schema: [`Bundle::parse`](super::Bundle::parse) reads the
//! bytes into typed structs, which catches what a schema over a `Value` cannot (duplicate keys) and
//! checks what a pattern cannot express (`.git` aliases, reserved folders). A test keeps the two in
//! agreement on every structural rule.

use std::sync::OnceLock;

use serde_json::Value;

/// The schema text, as shipped in the repository.
pub const SCHEMA_TEXT: &str = include_str!("../../schemas/contribution.schema.json");

/// One way an instance fails the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaViolation {
    /// JSON Pointer to the offending part of the bundle (`/changes/2/op`).
    pub pointer: String,
    /// What is wrong.
    pub message: String,
}

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| compile(SCHEMA_TEXT))
}

/// A schema shipped in the repository, compiled (the tests compile every one).
pub(crate) fn compile(text: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(text).expect("a shipped schema is valid JSON");
    jsonschema::validator_for(&schema).expect("a shipped schema is a valid JSON Schema")
}

/// Every way `instance` fails the contract's schema (empty when it conforms).
pub fn violations(instance: &Value) -> Vec<SchemaViolation> {
    violations_against(validator(), instance)
}

/// Every way `instance` fails `schema`.
pub(crate) fn violations_against(
    schema: &jsonschema::Validator,
    instance: &Value,
) -> Vec<SchemaViolation> {
    schema
        .iter_errors(instance)
        .map(|e| SchemaViolation {
            pointer: e.instance_path().to_string(),
            message: e.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contributions::{Bundle, ErrorCode};
    use crate::vault::ContributionsConfig;

    const HEAD: &str =
        r#""contract":"quire.contribution/1","id":"b-1","author":{"name":"A","email":"a@x"}"#;

    fn with_changes(changes: &str) -> String {
        format!(r#"{{{HEAD},"changes":[{changes}]}}"#)
    }

    /// Bundles the typed parser accepts, and bundles it refuses for reasons the schema can see.
    fn cases() -> Vec<(String, bool)> {
        let ok = |c: &str| (with_changes(c), true);
        let bad = |c: &str| (with_changes(c), false);
        vec![
            ok(r#"{"op":"create","path":"a.md","content":"x"}"#),
            ok(r#"{"op":"create","path":"a.png","content":"aGk=","encoding":"base64"}"#),
            ok(r#"{"op":"delete","path":"a/b.md"}"#),
            ok(r#"{"op":"move","path":"a.md","to":"b/a.md"}"#),
            ok(r#"{"op":"patch","path":"a.json","patch":[{"op":"add","path":"/a","value":1},{"op":"move","from":"/a","path":"/b"}]}"#),
            ok(r#"{"op":"patch","path":"a.md","frontmatter":[{"op":"remove","path":"/a"}]}"#),
            ok(r###"{"op":"patch","path":"a.md","body":[{"replace_block":"s","content":"x"},{"append_under_heading":"## T","content":"x"},{"append":"x"},{"prepend":"x"},{"replace":{"find":"a","with":"b","count":2}}]}"###),
            (format!(r#"{{{HEAD},"target":"sandbox:m-1","base":"9fceb02","message":"m","changes":[{{"op":"delete","path":"a"}}]}}"#), true),
            bad(r#"{"op":"frobnicate","path":"a"}"#),
            bad(r#"{"op":"create","path":"a"}"#),
            bad(r#"{"op":"create","path":"a","content":"x","to":"b"}"#),
            bad(r#"{"op":"delete"}"#),
            bad(r#"{"op":"move","path":"a"}"#),
            bad(r#"{"op":"patch","path":"a.md"}"#),
            bad(r#"{"op":"patch","path":"a.md","patch":[{"op":"add","path":"/a","value":1}],"body":[{"append":"x"}]}"#),
            ok(r#"{"op":"patch","path":"a.json","patch":[]}"#),
            bad(r#"{"op":"patch","path":"a.json","patch":[{"op":"add","path":"/a"}]}"#),
            bad(r#"{"op":"patch","path":"a.json","patch":[{"op":"copy","path":"/a"}]}"#),
            bad(r#"{"op":"patch","path":"a.json","patch":[{"op":"add","path":"a","value":1}]}"#),
            bad(r#"{"op":"patch","path":"a.json","patch":[{"op":"spam","path":"/a"}]}"#),
            bad(r#"{"op":"patch","path":"a.md","body":[{"append":"x","content":"y"}]}"#),
            bad(r#"{"op":"patch","path":"a.md","body":[{"replace_block":"s"}]}"#),
            bad(r#"{"op":"patch","path":"a.md","body":[{"replace_block":"two words","content":""}]}"#),
            bad(r#"{"op":"patch","path":"a.md","body":[{"replace":{"find":"","with":"b"}}]}"#),
            bad(r#"{"op":"patch","path":"a.md","body":[{"replace":{"find":"a","with":"b","count":0}}]}"#),
            bad(r#"{"op":"patch","path":"a.md","body":[]}"#),
            bad(r#"{"op":"create","path":"/abs","content":""}"#),
            bad(r#"{"op":"create","path":"a/../b","content":""}"#),
            bad(r#"{"op":"create","path":"a\\b","content":""}"#),
            bad(r#"{"op":"create","path":"c:/x","content":""}"#),
            bad(r#"{"op":"create","path":"a//b","content":""}"#),
            bad(r#"{"op":"create","path":"a","content":"","encoding":"hex"}"#),
            (format!(r#"{{{HEAD},"changes":[]}}"#), false),
            (format!(r#"{{{HEAD},"extra":1,"changes":[{{"op":"delete","path":"a"}}]}}"#), false),
            (format!(r#"{{{HEAD},"target":"develop","changes":[{{"op":"delete","path":"a"}}]}}"#), false),
            (format!(r#"{{{HEAD},"base":"xyz","changes":[{{"op":"delete","path":"a"}}]}}"#), false),
            (r#"{"contract":"quire.contribution/1","id":"-x","author":{"name":"A","email":"a@x"},"changes":[{"op":"delete","path":"a"}]}"#.into(), false),
            (r#"{"contract":"quire.contribution/1","id":"x","author":{"name":"<A>","email":"a@x"},"changes":[{"op":"delete","path":"a"}]}"#.into(), false),
            (r#"{"contract":"quire.contribution/1","id":"x","author":{"name":" ","email":"a@x"},"changes":[{"op":"delete","path":"a"}]}"#.into(), false),
            (r#"{"contract":"quire.contribution/1","id":"x","changes":[{"op":"delete","path":"a"}]}"#.into(), false),
            (r#"{"contract":"other/1","id":"x","author":{"name":"A","email":"a@x"},"changes":[{"op":"delete","path":"a"}]}"#.into(), false),
        ]
    }

    #[test]
    fn schema_and_typed_parser_agree() {
        for (text, valid) in cases() {
            let value: Value = serde_json::from_str(&text).unwrap();
            let schema_ok = violations(&value).is_empty();
            let typed = Bundle::parse(text.as_bytes(), &ContributionsConfig::default());
            assert_eq!(
                schema_ok,
                valid,
                "schema on {text}: {:?}",
                violations(&value)
            );
            assert_eq!(typed.is_ok(), valid, "typed parser on {text}: {typed:?}");
            if let Err(e) = typed {
                assert!(
                    matches!(e.code, ErrorCode::InvalidBundle | ErrorCode::UnsafePath),
                    "{text}: {e}"
                );
            }
        }
    }

    #[test]
    fn violations_point_into_the_bundle() {
        let value: Value =
            serde_json::from_str(&with_changes(r#"{"op":"create","path":"a"}"#)).unwrap();
        let v = violations(&value);
        assert!(v.iter().any(|v| v.pointer == "/changes/0"), "{v:?}");
    }
}
