//! RFC 6902 JSON Patch on data files (`.json`, `.yaml`/`.yml`, `.toml`): parse, patch, write back in
//! the file's own format.
//!
//! Key order is kept: the patched document lists keys in their original order, new keys after
//! (json-patch removes keys with a swap, which would otherwise shuffle a file on every edit). JSON
//! keeps its indentation style. YAML and TOML are rewritten by their serializers, so comments in
//! those files do not survive a patch; that is documented in the contract.

use json_patch::{PatchErrorKind, PatchOperation};
use serde_json::{Map, Value};

use super::error::{ErrorCode, Rejection};
use crate::markdown::yaml;
use crate::vault::VaultPath;

/// Applies `ops` to the data file `path` whose current bytes are `old`.
pub(super) fn patch_file(
    path: &VaultPath,
    old: &[u8],
    ops: &[PatchOperation],
) -> Result<Vec<u8>, Rejection> {
    let ext = path.extension().unwrap_or_default();
    let text = std::str::from_utf8(old)
        .map_err(|_| failed(path, "is not UTF-8 text, so it cannot be patched".into()))?;
    match ext.as_str() {
        "json" => {
            let doc: Value = serde_json::from_str(text)
                .map_err(|e| failed(path, format!("is not valid JSON ({e}); fix the file first")))?;
            let new = apply(path, "patch", doc, ops)?;
            Ok(write_json(text, &new).into_bytes())
        }
        "yaml" | "yml" => {
            let doc = yaml::parse(text)
                .map_err(|e| failed(path, format!("is not YAML quire can read: {e}")))?;
            let new = apply(path, "patch", doc, ops)?;
            let out = yaml::to_string(&new).map_err(|e| failed(path, e.to_string()))?;
            Ok(out.into_bytes())
        }
        "toml" => {
            let table: toml::Table = toml::from_str(text)
                .map_err(|e| failed(path, format!("is not valid TOML: {}", e.to_string().trim_end())))?;
            let original = toml::Value::Table(table);
            let new = apply(path, "patch", toml_to_json(&original), ops)?;
            let back = json_to_toml(&new, Some(&original)).map_err(|m| failed(path, m))?;
            let toml::Value::Table(table) = back else {
                return Err(failed(path, "the patched document must stay a table (a TOML file is one)".into()));
            };
            toml::to_string(&table)
                .map(String::into_bytes)
                .map_err(|e| failed(path, format!("cannot be written as TOML: {e}")))
        }
        _ => Err(failed(
            path,
            "is not a .json, .yaml, .yml or .toml file; `patch` edits data files, `frontmatter` and `body` edit notes".into(),
        )),
    }
}

/// Applies `ops` to `doc`, keeping key order; errors name the operation. `what` is the field the
/// operations came from (`patch` or `frontmatter`).
pub(super) fn apply(
    path: &VaultPath,
    what: &str,
    mut doc: Value,
    ops: &[PatchOperation],
) -> Result<Value, Rejection> {
    let original = doc.clone();
    // `patch_unsafe` leaves `doc` half-patched on error; that is fine, it is dropped on error, and it
    // avoids the crate's undo path, which panics if undoing fails.
    json_patch::patch_unsafe(&mut doc, ops).map_err(|e| {
        let (code, why) = match e.kind {
            PatchErrorKind::TestFailed => (ErrorCode::TestFailed, "the value there does not match the `test` value"),
            PatchErrorKind::InvalidFromPointer => {
                (ErrorCode::PatchFailed, "nothing is at `from` (or its array index is out of range or malformed)")
            }
            PatchErrorKind::CannotMoveInsideItself => (ErrorCode::PatchFailed, "a value cannot be moved inside itself"),
            _ => (
                ErrorCode::PatchFailed,
                "nothing is at that path, its parent is missing, or an array index is out of range or malformed",
            ),
        };
        let op = ops.get(e.operation).map_or("?", op_name);
        Rejection {
            code,
            message: format!("`{what}` operation {} (`{op}` at `{}`): {why}", e.operation, e.path),
            change: None,
            path: Some(path.to_string()),
        }
    })?;
    restore_order(&original, &mut doc);
    Ok(doc)
}

fn op_name(op: &PatchOperation) -> &'static str {
    match op {
        PatchOperation::Add(_) => "add",
        PatchOperation::Remove(_) => "remove",
        PatchOperation::Replace(_) => "replace",
        PatchOperation::Move(_) => "move",
        PatchOperation::Copy(_) => "copy",
        PatchOperation::Test(_) => "test",
    }
}

pub(super) fn failed(path: &VaultPath, what: String) -> Rejection {
    Rejection {
        code: ErrorCode::PatchFailed,
        message: format!("`{path}` {what}"),
        change: None,
        path: Some(path.to_string()),
    }
}

/// Puts the keys of every object back in `original`'s order (new keys last, in their own order).
fn restore_order(original: &Value, new: &mut Value) {
    match (original, new) {
        (Value::Object(old), Value::Object(map)) => {
            let pos: std::collections::HashMap<&str, usize> = old
                .keys()
                .enumerate()
                .map(|(i, k)| (k.as_str(), i))
                .collect();
            let rank = |k: &str| pos.get(k).copied().unwrap_or(usize::MAX);
            if !map.keys().map(|k| rank(k)).is_sorted() {
                let mut entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
                // Stable: new keys (usize::MAX) keep their relative order.
                entries.sort_by_key(|(k, _)| rank(k));
                *map = entries.into_iter().collect::<Map<_, _>>();
            }
            for (k, v) in map.iter_mut() {
                if let Some(o) = old.get(k) {
                    restore_order(o, v);
                }
            }
        }
        (Value::Array(old), Value::Array(items)) => {
            for (o, v) in old.iter().zip(items.iter_mut()) {
                restore_order(o, v);
            }
        }
        _ => {}
    }
}

/// Writes JSON the way the original was written: compact if it was on one line, else indented with
/// its indentation; a final newline if it had one.
fn write_json(original: &str, value: &Value) -> String {
    let trimmed = original.trim();
    let mut out = if trimmed.contains('\n') {
        let indent: String = trimmed
            .lines()
            .nth(1)
            .map(|l| l.chars().take_while(|c| *c == ' ' || *c == '\t').collect())
            .filter(|s: &String| !s.is_empty())
            .unwrap_or_else(|| "  ".into());
        let mut buf = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
        serde::Serialize::serialize(value, &mut ser).expect("a JSON value always serializes");
        String::from_utf8(buf).expect("serde_json writes UTF-8")
    } else {
        value.to_string()
    };
    if original.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map_or_else(|| Value::String(f.to_string()), Value::Number),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// JSON back to TOML. A string where the original held a date-time, and that still reads as one,
/// becomes a date-time again, so patching a TOML file does not turn its dates into strings.
fn json_to_toml(v: &Value, original: Option<&toml::Value>) -> Result<toml::Value, String> {
    Ok(match v {
        Value::Null => {
            return Err(
                "would hold a null, which TOML cannot store; remove the key instead".into(),
            );
        }
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            (None, Some(f)) if n.is_f64() => toml::Value::Float(f),
            _ => {
                return Err(format!(
                    "would hold {n}, which is too large for a TOML integer"
                ));
            }
        },
        Value::String(s) => match original {
            Some(toml::Value::Datetime(_)) => s
                .parse::<toml::value::Datetime>()
                .map_or_else(|_| toml::Value::String(s.clone()), toml::Value::Datetime),
            _ => toml::Value::String(s.clone()),
        },
        Value::Array(items) => {
            let old = original.and_then(toml::Value::as_array);
            toml::Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| json_to_toml(x, old.and_then(|a| a.get(i))))
                    .collect::<Result<_, _>>()?,
            )
        }
        Value::Object(map) => {
            let old = original.and_then(toml::Value::as_table);
            let mut table = toml::Table::new();
            for (k, x) in map {
                table.insert(k.clone(), json_to_toml(x, old.and_then(|t| t.get(k)))?);
            }
            toml::Value::Table(table)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ops(v: Value) -> Vec<PatchOperation> {
        serde_json::from_value(v).unwrap()
    }

    fn p(s: &str) -> VaultPath {
        VaultPath::new(s).unwrap()
    }

    #[test]
    fn json_keeps_order_indent_and_final_newline() {
        let old = "{\n    \"a\": 1,\n    \"b\": 2,\n    \"c\": 3,\n    \"d\": 4\n}\n";
        let out = patch_file(
            &p("x.json"),
            old.as_bytes(),
            &ops(json!([{"op": "remove", "path": "/b"}, {"op": "add", "path": "/e", "value": 5}])),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\n    \"a\": 1,\n    \"c\": 3,\n    \"d\": 4,\n    \"e\": 5\n}\n"
        );
        let out = patch_file(
            &p("x.json"),
            b"{\"a\":1}",
            &ops(json!([{"op": "replace", "path": "/a", "value": 2}])),
        )
        .unwrap();
        assert_eq!(out, b"{\"a\":2}");
    }

    #[test]
    fn yaml_and_toml_round_trip() {
        let out = patch_file(
            &p("x.yaml"),
            b"b: 1\na: [x]\n",
            &ops(json!([{"op": "add", "path": "/a/-", "value": "y"}])),
        )
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "b: 1\na:\n- x\n- y\n");
        let old = "title = \"T\"\nwhen = 2026-01-02T03:04:05Z\n[site]\nthemes = [\"paper\"]\n";
        let out = patch_file(
            &p("q.toml"),
            old.as_bytes(),
            &ops(json!([{"op": "replace", "path": "/site/themes/0", "value": "desk"}])),
        )
        .unwrap();
        let back: toml::Table = toml::from_str(std::str::from_utf8(&out).unwrap()).unwrap();
        assert_eq!(back["site"]["themes"][0].as_str(), Some("desk"));
        assert!(back["when"].is_datetime(), "{back:?}");
        let keys: Vec<_> = back.keys().cloned().collect();
        assert_eq!(keys, ["title", "when", "site"]);
    }

    #[test]
    fn refusals_name_the_operation() {
        let err = patch_file(&p("x.json"), b"{}", &ops(json!([{"op": "add", "path": "/a", "value": 1}, {"op": "test", "path": "/a", "value": 2}]))).unwrap_err();
        assert_eq!(err.code, ErrorCode::TestFailed);
        assert!(
            err.message.contains("operation 1") && err.message.contains("`test`"),
            "{err}"
        );
        let err = patch_file(
            &p("x.json"),
            b"{}",
            &ops(json!([{"op": "remove", "path": "/zz"}])),
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::PatchFailed);
        let err = patch_file(
            &p("x.toml"),
            b"a = 1\n",
            &ops(json!([{"op": "add", "path": "/b", "value": null}])),
        )
        .unwrap_err();
        assert!(err.message.contains("null"), "{err}");
        let err = patch_file(
            &p("x.txt"),
            b"",
            &ops(json!([{"op": "add", "path": "/b", "value": 1}])),
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::PatchFailed);
        let err = patch_file(
            &p("x.json"),
            b"{",
            &ops(json!([{"op": "add", "path": "/b", "value": 1}])),
        )
        .unwrap_err();
        assert!(err.message.contains("not valid JSON"), "{err}");
    }
}
