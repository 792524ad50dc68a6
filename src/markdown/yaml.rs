//! All of quire's YAML goes through this module, so the parser (serde_yaml, deprecated upstream) can
//! be swapped in one place.
//!
//! YAML is read into JSON values, because front matter is patched as JSON (RFC 6902) and indexed as
//! JSON. Reading is bounded: anchors and aliases let a few kilobytes expand to gigabytes ("billion
//! laughs"; a 15 KB fan-out document reaches ~1 GB through serde_yaml's own `Value`). serde_yaml's
//! repetition limit counts alias jumps, not the nodes they replay, so it does not stop a wide
//! fan-out. Here every node built is charged to a budget proportional to the input's size, and
//! parsing stops with an error the moment the budget is spent: memory and time stay bounded by the
//! input, and documents without aliases can never hit the limit.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a YAML document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    /// Not valid YAML (or a shape JSON cannot hold).
    #[error("{message}")]
    Syntax {
        /// What the parser said.
        message: String,
        /// 1-based line within the YAML text, when known.
        line: Option<usize>,
    },
    /// Anchors and aliases expand past the budget.
    #[error(
        "its anchors and aliases (`&name` / `*name`) expand to more than {budget} values; \
         quire refuses such documents to stay within memory; write the values out instead of \
         repeating aliases"
    )]
    Expansion {
        /// The number of values allowed for this input.
        budget: usize,
    },
    /// The top level is not a mapping where one is required.
    #[error("it must be a mapping of `key: value` lines, but it is {found}")]
    NotAMapping {
        /// What was found instead ("a list", "a string", …).
        found: &'static str,
    },
}

impl YamlError {
    /// The 1-based line within the YAML text the error points at, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            YamlError::Syntax { line, .. } => *line,
            _ => None,
        }
    }

    /// The same error for YAML that starts at line `offset + 1` of a file: every line number in the
    /// message is made a file line, and the error's line becomes the earliest one named (the parser
    /// says where it noticed the problem and where the construct it was reading began).
    pub fn shifted(self, offset: usize) -> Self {
        static LINE: std::sync::LazyLock<regex::Regex> =
            std::sync::LazyLock::new(|| regex::Regex::new(r"line (\d+)").expect("valid pattern"));
        match self {
            YamlError::Syntax { message, line } => {
                let mut earliest = line.map(|l| l + offset);
                let message = LINE
                    .replace_all(&message, |c: &regex::Captures<'_>| {
                        let n = c[1].parse::<usize>().unwrap_or(0) + offset;
                        earliest = Some(earliest.map_or(n, |e| e.min(n)));
                        format!("line {n}")
                    })
                    .into_owned();
                YamlError::Syntax {
                    message,
                    line: earliest,
                }
            }
            other => other,
        }
    }
}

/// Values allowed for a YAML text of `len` bytes. Without aliases a document cannot hold more values
/// than it has bytes, so this never refuses an alias-free document.
fn budget_for(len: usize) -> usize {
    len.saturating_add(1024)
}

/// Parses a YAML document into a JSON value, refusing alias blow-ups. Empty text is `null`.
pub fn parse(text: &str) -> Result<Value, YamlError> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    let budget = Budget {
        remaining: Cell::new(budget_for(text.len())),
        total: budget_for(text.len()),
        exhausted: Cell::new(false),
    };
    let de = serde_yaml::Deserializer::from_str(text);
    match (Node { budget: &budget }).deserialize(de) {
        Ok(v) => Ok(v),
        Err(_) if budget.exhausted.get() => Err(YamlError::Expansion {
            budget: budget.total,
        }),
        Err(e) => Err(YamlError::Syntax {
            line: e.location().map(|l| l.line()),
            message: e.to_string(),
        }),
    }
}

/// Parses a YAML document that must be a mapping (front matter). Empty text is an empty mapping.
pub fn parse_mapping(text: &str) -> Result<Map<String, Value>, YamlError> {
    match parse(text)? {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(Map::new()),
        other => Err(YamlError::NotAMapping {
            found: describe(&other),
        }),
    }
}

/// Writes a JSON value as YAML (block style, keys in their order, strings quoted only when YAML
/// would otherwise read them as something else).
pub fn to_string(value: &Value) -> Result<String, YamlError> {
    serde_yaml::to_string(value).map_err(|e| YamlError::Syntax {
        message: e.to_string(),
        line: None,
    })
}

/// Rewrites a block mapping's YAML text so that it holds `new`, touching only the top-level entries
/// that changed: an unchanged entry keeps its original text (comments, quoting, flow style), so
/// patching one key of a note's front matter is a one-line diff. Falls back to writing the whole
/// mapping when the text cannot be split into one entry per key (flow mappings, aliases across
/// entries, odd indentation), or when the result would not read back as `new`.
pub fn rewrite_mapping(
    text: &str,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
) -> Result<String, YamlError> {
    let Some(entries) = split_entries(text, old) else {
        return to_string(&Value::Object(new.clone()));
    };
    let mut out = String::with_capacity(text.len() + 64);
    out.push_str(entries.leading);
    if !out.is_empty() && !out.ends_with('\n') {
        // A last comment line without its newline would swallow the next entry.
        out.push('\n');
    }
    for (key, value) in new {
        match entries.by_key.iter().find(|(k, _)| k == key) {
            Some((_, segment)) if old.get(key) == Some(value) => out.push_str(segment),
            _ => {
                let mut one = Map::new();
                one.insert(key.clone(), value.clone());
                out.push_str(&to_string(&Value::Object(one))?);
            }
        }
    }
    // Keeping text is an optimisation, never a risk: what does not read back as `new` is replaced
    // by a plain serialization.
    match parse_mapping(&out) {
        Ok(back) if back == *new => Ok(out),
        _ => to_string(&Value::Object(new.clone())),
    }
}

struct Entries<'t> {
    /// Comments and blank lines before the first key.
    leading: &'t str,
    /// Each top-level key with its text (key line, its value's lines, trailing comments).
    by_key: Vec<(String, &'t str)>,
}

/// Splits a block mapping into one text segment per top-level key, and proves the split right by
/// parsing each segment alone and comparing with `parsed`.
fn split_entries<'t>(text: &'t str, parsed: &Map<String, Value>) -> Option<Entries<'t>> {
    let mut starts = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let first = line.chars().next();
        let is_key = match first {
            Some(c) => !c.is_whitespace() && c != '#' && c != '-' && !line.starts_with("..."),
            None => false,
        };
        if is_key {
            starts.push(offset);
        }
        offset += line.len();
    }
    if starts.len() != parsed.len() {
        return None;
    }
    let leading = &text[..starts.first().copied().unwrap_or(text.len())];
    let mut by_key = Vec::with_capacity(starts.len());
    for (i, start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(text.len());
        let mut segment = &text[*start..end];
        if !segment.ends_with('\n') {
            // The last entry without a final newline: not worth special-casing.
            return None;
        }
        let one = parse_mapping(segment).ok()?;
        let (key, value) = one.iter().next().filter(|_| one.len() == 1)?;
        if parsed.get(key) != Some(value) {
            return None;
        }
        if by_key.iter().any(|(k, _): &(String, &str)| k == key) {
            return None;
        }
        segment = &text[*start..end];
        by_key.push((key.clone(), segment));
    }
    Some(Entries { leading, by_key })
}

/// "a list", "a string", … for messages.
pub(crate) fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

struct Budget {
    remaining: Cell<usize>,
    total: usize,
    exhausted: Cell<bool>,
}

impl Budget {
    fn charge<E: de::Error>(&self) -> Result<(), E> {
        match self.remaining.get().checked_sub(1) {
            Some(left) => {
                self.remaining.set(left);
                Ok(())
            }
            None => {
                self.exhausted.set(true);
                Err(E::custom("alias expansion budget exhausted"))
            }
        }
    }
}

/// Builds one JSON value, charging the budget for it and everything beneath it.
#[derive(Clone, Copy)]
struct Node<'b> {
    budget: &'b Budget,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.budget.charge()?;
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.budget.charge()?;
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.budget.charge()?;
        Ok(Value::Number(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        self.budget.charge()?;
        Ok(Value::String(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        self.budget.charge()?;
        Ok(Value::String(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.budget.charge()?;
        // JSON has no infinities or NaN; keep them readable rather than silently null.
        Ok(Number::from_f64(v).map_or_else(|| Value::String(v.to_string()), Value::Number))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.budget.charge()?;
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.budget.charge()?;
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.budget.charge()?;
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }
    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        self.deserialize(de)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.budget.charge()?;
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(self)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.budget.charge()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(Key {
            budget: self.budget,
        })? {
            let value = map.next_value_seed(self)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }

    /// A tagged value (`!custom x`): the tag carries no meaning for notes; keep the value.
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        use de::VariantAccess;
        let (_tag, variant): (String, _) = data.variant()?;
        variant.newtype_variant_seed(self)
    }
}

/// A mapping key: JSON keys are strings, so plain scalars are written as YAML would print them.
struct Key<'b> {
    budget: &'b Budget,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<String, D::Error> {
        match (Node {
            budget: self.budget,
        })
        .deserialize(de)?
        {
            Value::String(s) => Ok(s),
            Value::Null => Ok("null".into()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(de::Error::custom(
                "a mapping key is a list or mapping; keys must be plain text",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_ordinary_front_matter_in_order() {
        let m = parse_mapping("title: Hi\ntags: [a, b]\ndue: 2026-12-01\nn: 3\nok: true\nx:\n")
            .unwrap();
        assert_eq!(
            Value::Object(m.clone()),
            json!({"title": "Hi", "tags": ["a", "b"], "due": "2026-12-01", "n": 3, "ok": true, "x": null})
        );
        assert_eq!(
            m.keys().collect::<Vec<_>>(),
            ["title", "tags", "due", "n", "ok", "x"]
        );
    }

    #[test]
    fn modest_aliases_are_fine() {
        let v = parse("base: &b {a: 1}\nother: *b\n").unwrap();
        assert_eq!(v, json!({"base": {"a": 1}, "other": {"a": 1}}));
    }

    #[test]
    fn fan_out_is_refused_quickly() {
        // One anchor of 2,000 values, aliased 2,000 times: 4 million values from ~20 KB.
        let mut doc = String::from("a: &a [");
        doc.push_str(&vec!["x"; 2000].join(","));
        doc.push_str("]\nb: [");
        doc.push_str(&vec!["*a"; 2000].join(","));
        doc.push_str("]\n");
        let err = parse(&doc).unwrap_err();
        assert!(matches!(err, YamlError::Expansion { .. }), "{err}");
    }

    #[test]
    fn nested_laughs_are_refused() {
        let mut doc = String::from("l0: &l0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
        for i in 1..10 {
            let p = i - 1;
            doc.push_str(&format!(
                "l{i}: &l{i} [{}]\n",
                vec![format!("*l{p}"); 9].join(",")
            ));
        }
        assert!(matches!(parse(&doc), Err(YamlError::Expansion { .. })));
    }

    #[test]
    fn syntax_errors_carry_a_line() {
        let err = parse("a: 1\nb: [unclosed\nc: 2\n").unwrap_err();
        assert!(err.line().is_some(), "{err:?}");
        assert!(matches!(
            parse_mapping("- a\n- b\n"),
            Err(YamlError::NotAMapping { .. })
        ));
    }

    #[test]
    fn keys_and_tags_become_json() {
        let v = parse("1: one\ntrue: yes\nt: !custom value\n").unwrap();
        assert_eq!(v, json!({"1": "one", "true": "yes", "t": "value"}));
    }

    #[test]
    fn rewrite_touches_only_changed_entries() {
        let text = "title: \"Quoted\"   # a comment\ntags: [a, b]\nnested:\n  x: 1\n  y: [2]\n# closing comment\n";
        let old = parse_mapping(text).unwrap();
        let mut new = old.clone();
        new.insert("status".into(), json!("active"));
        new.shift_remove("nested");
        new.insert("title".into(), json!("Quoted"));
        let out = rewrite_mapping(text, &old, &new).unwrap();
        assert_eq!(
            out,
            "title: \"Quoted\"   # a comment\ntags: [a, b]\nstatus: active\n"
        );
        let mut changed = old.clone();
        changed.insert("tags".into(), json!(["a"]));
        let out = rewrite_mapping(text, &old, &changed).unwrap();
        assert!(
            out.starts_with("title: \"Quoted\"   # a comment\ntags:\n- a\nnested:\n  x: 1\n"),
            "{out}"
        );
        assert_eq!(parse_mapping(&out).unwrap(), changed);
    }

    #[test]
    fn rewrite_falls_back_when_entries_cannot_be_split() {
        let text = "{a: 1, b: 2}\n";
        let old = parse_mapping(text).unwrap();
        let mut new = old.clone();
        new.insert("c".into(), json!(3));
        assert_eq!(
            rewrite_mapping(text, &old, &new).unwrap(),
            "a: 1\nb: 2\nc: 3\n"
        );
        let text = "base: &b {x: 1}\nother: *b\n";
        let old = parse_mapping(text).unwrap();
        let out = rewrite_mapping(text, &old, &old).unwrap();
        assert_eq!(parse_mapping(&out).unwrap(), old);
    }

    #[test]
    fn writes_back_round_trip() {
        let v = json!({"title": "A: colon", "due": "2026-12-01", "n": "3", "list": [1, 2]});
        let text = to_string(&v).unwrap();
        assert_eq!(parse(&text).unwrap(), v);
    }
}
