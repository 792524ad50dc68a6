//! Edits to Markdown notes: RFC 6902 on the front matter, text operations on the body.
//!
//! A front matter edit rewrites only the front matter; the body is copied through byte for byte. A
//! body edit leaves the front matter bytes alone. Inserted text takes the note's line endings.

use json_patch::PatchOperation;
use serde_json::Value;

use super::bundle::BodyOp;
use super::data::{self, failed};
use super::error::Rejection;
use crate::markdown::{self, sections};
use crate::vault::VaultPath;

/// Applies `ops` to the front matter of the note `path` (created when absent).
pub(super) fn patch_front_matter(
    path: &VaultPath,
    old: &[u8],
    ops: &[PatchOperation],
) -> Result<Vec<u8>, Rejection> {
    let text = note_text(path, old, "frontmatter")?;
    let doc = markdown::split(text);
    let map = doc.front_matter_map().map_err(|e| {
        failed(
            path,
            format!("has front matter quire cannot read ({e}); fix it first"),
        )
    })?;
    let Value::Object(map) = data::apply(path, "frontmatter", Value::Object(map), ops)? else {
        return Err(failed(
            path,
            "would have front matter that is not a mapping; front matter is `key: value` lines"
                .into(),
        ));
    };
    doc.with_front_matter(&map)
        .map(String::into_bytes)
        .map_err(|e| {
            failed(
                path,
                format!("cannot have this front matter written as YAML: {e}"),
            )
        })
}

/// Applies the text operations `ops`, in order, to the body of the note `path`.
pub(super) fn patch_body(
    path: &VaultPath,
    old: &[u8],
    ops: &[BodyOp],
) -> Result<Vec<u8>, Rejection> {
    let text = note_text(path, old, "body")?;
    let doc = markdown::split(text);
    let mut body = doc.body.to_owned();
    for (k, op) in ops.iter().enumerate() {
        body = apply_op(&body, op, doc.newline)
            .map_err(|m| failed(path, format!("`body` operation {k}: {m}")))?;
    }
    let mut out = String::with_capacity(doc.body_offset + body.len());
    out.push_str(&text[..doc.body_offset]);
    out.push_str(&body);
    Ok(out.into_bytes())
}

fn note_text<'a>(path: &VaultPath, old: &'a [u8], field: &str) -> Result<&'a str, Rejection> {
    if !matches!(path.extension().as_deref(), Some("md" | "markdown")) {
        return Err(failed(
            path,
            format!(
                "is not a Markdown note (.md); `{field}` edits notes, `patch` edits .json, .yaml and .toml files"
            ),
        ));
    }
    std::str::from_utf8(old).map_err(|_| failed(path, "is not UTF-8 text".into()))
}

fn apply_op(body: &str, op: &BodyOp, nl: &str) -> Result<String, String> {
    let lines = |s: &str| markdown::with_newlines(s, nl);
    let ended = |mut s: String| {
        if !s.is_empty() && !s.ends_with('\n') {
            s.push_str(nl);
        }
        s
    };
    match op {
        BodyOp::ReplaceBlock { name, content } => {
            let blocks = sections::blocks(body)?;
            let found: Vec<_> = blocks.iter().filter(|b| &b.name == name).collect();
            let block = match found.as_slice() {
                [one] => *one,
                [] => {
                    return Err(format!(
                        "the note has no block `{name}`; surround the text to replace with `<!-- quire:begin {name} -->` and `<!-- quire:end {name} -->`"
                    ));
                }
                many => {
                    return Err(format!(
                        "block `{name}` appears {} times; names must be unique in a note",
                        many.len()
                    ));
                }
            };
            let new = if block.line_mode {
                ended(lines(content))
            } else {
                lines(content)
            };
            Ok(splice(body, block.content.clone(), &new))
        }
        BodyOp::AppendUnderHeading { heading, content } => {
            let range = sections::section(body, heading).ok_or_else(|| {
                format!("the note has no heading `{}`; append to the body with `append`, or add the heading first", heading.trim())
            })?;
            let section = &body[range.clone()];
            let kept = section.trim_end().len();
            // After the section's last non-blank line, so blank lines before the next heading stay put.
            let at = if kept == 0 {
                range.start
            } else {
                let last = range.start + kept;
                body[last..].find('\n').map_or(body.len(), |i| last + i + 1)
            };
            let mut insert = String::new();
            if at > 0 && !body[..at].ends_with('\n') {
                insert.push_str(nl);
            }
            insert.push_str(&ended(lines(content)));
            Ok(splice(body, at..at, &insert))
        }
        BodyOp::Append(content) => {
            let mut out = body.to_owned();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push_str(nl);
            }
            out.push_str(&ended(lines(content)));
            Ok(out)
        }
        BodyOp::Prepend(content) => Ok(ended(lines(content)) + body),
        BodyOp::Replace { find, with, count } => {
            let (find, with) = (lines(find), lines(with));
            let found = body.matches(find.as_str()).count();
            if found != *count {
                return Err(format!(
                    "the text to find occurs {found} time{} in the body, not {count}; quote it exactly, or set `count`",
                    if found == 1 { "" } else { "s" }
                ));
            }
            Ok(body.replace(find.as_str(), &with))
        }
    }
}

fn splice(text: &str, range: std::ops::Range<usize>, with: &str) -> String {
    let mut out = String::with_capacity(text.len() + with.len());
    out.push_str(&text[..range.start]);
    out.push_str(with);
    out.push_str(&text[range.end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(text: &str, ops: &[BodyOp]) -> Result<String, Rejection> {
        patch_body(&VaultPath::new("n.md").unwrap(), text.as_bytes(), ops)
            .map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn front_matter_patch_keeps_body_bytes() {
        let p = VaultPath::new("n.md").unwrap();
        let ops: Vec<PatchOperation> =
            serde_json::from_value(json!([{"op": "add", "path": "/status", "value": "active"}]))
                .unwrap();
        let old = "---\ntitle: T\n---\n# T\r\n\ttabs  \n";
        let out = String::from_utf8(patch_front_matter(&p, old.as_bytes(), &ops).unwrap()).unwrap();
        assert_eq!(out, "---\ntitle: T\nstatus: active\n---\n# T\r\n\ttabs  \n");
        let out = String::from_utf8(patch_front_matter(&p, b"# No front matter\n", &ops).unwrap())
            .unwrap();
        assert_eq!(out, "---\nstatus: active\n---\n# No front matter\n");
    }

    #[test]
    fn append_under_heading_lands_before_blank_lines() {
        let text = "---\na: 1\n---\n# N\n## Tasks\n- [ ] a\n\n## Notes\nx\n";
        let out = body(
            text,
            &[BodyOp::AppendUnderHeading {
                heading: "Tasks".into(),
                content: "- [ ] b".into(),
            }],
        )
        .unwrap();
        assert_eq!(
            out,
            "---\na: 1\n---\n# N\n## Tasks\n- [ ] a\n- [ ] b\n\n## Notes\nx\n"
        );
        let out = body(
            "## Tasks",
            &[BodyOp::AppendUnderHeading {
                heading: "Tasks".into(),
                content: "- [ ] b\n".into(),
            }],
        )
        .unwrap();
        assert_eq!(out, "## Tasks\n- [ ] b\n");
    }

    #[test]
    fn blocks_append_prepend_replace_and_crlf() {
        let text = "a\r\n<!-- quire:begin s -->\r\nold\r\n<!-- quire:end s -->\r\nz";
        let out = body(
            text,
            &[
                BodyOp::ReplaceBlock {
                    name: "s".into(),
                    content: "new\nlines".into(),
                },
                BodyOp::Append("tail".into()),
                BodyOp::Prepend("head\n".into()),
                BodyOp::Replace {
                    find: "a\n".into(),
                    with: "A\n".into(),
                    count: 1,
                },
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            "head\r\nA\r\n<!-- quire:begin s -->\r\nnew\r\nlines\r\n<!-- quire:end s -->\r\nz\r\ntail\r\n"
        );
    }

    #[test]
    fn refusals_explain_what_to_do() {
        let err = body(
            "x\n",
            &[BodyOp::ReplaceBlock {
                name: "s".into(),
                content: "".into(),
            }],
        )
        .unwrap_err();
        assert!(err.message.contains("quire:begin s"), "{err}");
        let err = body(
            "x\n",
            &[BodyOp::AppendUnderHeading {
                heading: "Tasks".into(),
                content: "".into(),
            }],
        )
        .unwrap_err();
        assert!(err.message.contains("no heading"), "{err}");
        let err = body(
            "a a\n",
            &[BodyOp::Replace {
                find: "a".into(),
                with: "b".into(),
                count: 1,
            }],
        )
        .unwrap_err();
        assert!(err.message.contains("2 times"), "{err}");
        let err = patch_body(
            &VaultPath::new("d.json").unwrap(),
            b"{}",
            &[BodyOp::Append("x".into())],
        )
        .unwrap_err();
        assert!(err.message.contains("not a Markdown note"), "{err}");
    }
}
