//! The contribution contract `quire.contribution/1`: bytes in, a validated [`Bundle`] out.
//!
//! Parsing happens once, here, in stages that each own a class of refusal:
//!
//! 1. size, UTF-8 and nesting depth are checked on the raw bytes (`too_large`, `invalid_json`),
//!    before any parser allocates for them;
//! 2. the JSON syntax is checked as a whole (`invalid_json`);
//! 3. the envelope and then each change are deserialized *straight from the bytes* into typed,
//!    `deny_unknown_fields` structs (`invalid_bundle`). Going through `serde_json::Value` would
//!    silently keep the last of two duplicate keys; typed deserialization refuses them, so an op
//!    like `{"op":"add","path":"/a","path":"/b"}` cannot mean two things;
//! 4. every path becomes a [`VaultPath`] (`unsafe_path`), and one that belongs to the vault's
//!    operator ([`VaultPath::protection`]) is refused unless `[contributions] allow` opens it
//!    (`protected_path`).
//!
//! Downstream code receives a [`Bundle`] and never re-checks any of it.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::{ErrorCode, Rejection};
use crate::vault::{ContributionsConfig, Protected, VaultPath};

/// The contract name this version reads.
pub const CONTRACT: &str = "quire.contribution/1";

/// Longest accepted bundle id.
pub const MAX_ID_LEN: usize = 128;

/// A bundle that passed every check that does not need the repository.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The idempotency key.
    pub id: String,
    /// Who made the change (the commit's author).
    pub author: Author,
    /// The commit message (before quire's trailers).
    pub message: String,
    /// Which branch the commit goes to.
    pub target: Target,
    /// The commit the author saw, if they said.
    pub base: Option<String>,
    /// The changes, in order.
    pub changes: Vec<Change>,
}

/// The commit author named by a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    /// Display name.
    pub name: String,
    /// E-mail address.
    pub email: String,
}

/// Where a bundle is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The vault's main branch (`[git] main`).
    Main,
    /// The mission sandbox `mission/<id>`.
    Sandbox(String),
}

impl Target {
    /// The target as written in a bundle (`main`, `sandbox:<id>`).
    pub fn as_written(&self) -> String {
        match self {
            Target::Main => "main".into(),
            Target::Sandbox(id) => format!("sandbox:{id}"),
        }
    }
}

/// One change of a bundle.
#[derive(Debug, Clone)]
pub enum Change {
    /// A new file; refused if the path exists.
    Create {
        /// Where.
        path: VaultPath,
        /// The file's bytes.
        content: Vec<u8>,
    },
    /// Removes a file; refused if it is not there.
    Delete {
        /// Which file.
        path: VaultPath,
    },
    /// Renames a file; refused if the source is missing or the destination exists.
    Move {
        /// The file now.
        from: VaultPath,
        /// The file after.
        to: VaultPath,
    },
    /// Edits a file in place.
    Patch {
        /// Which file.
        path: VaultPath,
        /// How.
        edit: Edit,
    },
}

impl Bundle {
    /// The index of the first change that writes `path` (as its path, or as a move's
    /// destination): the change a refusal about that path names.
    pub fn change_at(&self, path: &VaultPath) -> Option<usize> {
        self.changes
            .iter()
            .position(|c| c.path() == path || matches!(c, Change::Move { to, .. } if to == path))
    }
}

impl Change {
    /// The path the change is addressed to (the source, for a move).
    pub fn path(&self) -> &VaultPath {
        match self {
            Change::Create { path, .. } | Change::Delete { path } | Change::Patch { path, .. } => {
                path
            }
            Change::Move { from, .. } => from,
        }
    }
}

/// The three kinds of in-place edit.
#[derive(Debug, Clone)]
pub enum Edit {
    /// RFC 6902 on a `.json`, `.yaml`/`.yml` or `.toml` file.
    Data(Vec<json_patch::PatchOperation>),
    /// RFC 6902 on a note's front matter seen as JSON.
    FrontMatter(Vec<json_patch::PatchOperation>),
    /// Text operations on a note's body.
    Body(Vec<BodyOp>),
}

/// A text operation on a Markdown body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyOp {
    /// Replaces the text between `<!-- quire:begin NAME -->` and `<!-- quire:end NAME -->`.
    ReplaceBlock {
        /// The block's name.
        name: String,
        /// The new text.
        content: String,
    },
    /// Adds text at the end of a heading's section.
    AppendUnderHeading {
        /// The heading (`Tasks`, or `## Tasks` to pick the level).
        heading: String,
        /// The text to add.
        content: String,
    },
    /// Adds text at the end of the body.
    Append(String),
    /// Adds text at the start of the body (after the front matter).
    Prepend(String),
    /// Replaces exact text, which must occur exactly `count` times.
    Replace {
        /// The text to find.
        find: String,
        /// Its replacement.
        with: String,
        /// How many times `find` must occur.
        count: usize,
    },
}

// ---- raw, as deserialized ---------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBundle<'a> {
    contract: String,
    id: String,
    author: RawAuthor,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    base: Option<String>,
    #[serde(borrow)]
    changes: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthor {
    name: String,
    email: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChange<'a> {
    op: String,
    path: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default, borrow)]
    patch: Option<&'a RawValue>,
    #[serde(default, borrow)]
    frontmatter: Option<&'a RawValue>,
    #[serde(default)]
    body: Option<Vec<RawBodyOp>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBodyOp {
    #[serde(default)]
    replace_block: Option<String>,
    #[serde(default)]
    append_under_heading: Option<String>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    append: Option<String>,
    #[serde(default)]
    prepend: Option<String>,
    #[serde(default)]
    replace: Option<RawReplace>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplace {
    find: String,
    with: String,
    #[serde(default = "one")]
    count: usize,
}

fn one() -> usize {
    1
}

// ---- parsing -----------------------------------------------------------------------------------

impl Bundle {
    /// Parses and validates a bundle from its bytes, within `limits`.
    pub fn parse(bytes: &[u8], limits: &ContributionsConfig) -> Result<Bundle, Rejection> {
        if bytes.len() as u64 > limits.max_bundle_bytes {
            return Err(too_large_bytes(bytes.len() as u64, limits.max_bundle_bytes));
        }
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let (line, col) = line_col(bytes, e.valid_up_to());
            Rejection::new(
                ErrorCode::InvalidJson,
                format!("the bundle is not UTF-8 (invalid byte at line {line}, column {col}); save it as UTF-8"),
            )
        })?;
        check_depth(text, limits.max_depth)?;
        serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| {
            Rejection::new(
                ErrorCode::InvalidJson,
                format!("the bundle is not valid JSON: {e}"),
            )
        })?;
        let raw: RawBundle<'_> = serde_json::from_str(text).map_err(|e| {
            Rejection::new(
                ErrorCode::InvalidBundle,
                format!("the bundle does not follow {CONTRACT}: {e}; see schemas/contribution.schema.json"),
            )
        })?;

        if raw.contract != CONTRACT {
            return Err(Rejection::new(
                ErrorCode::InvalidBundle,
                format!(
                    "`contract` is `{}`; this quire reads `{CONTRACT}`",
                    raw.contract
                ),
            ));
        }
        check_id(&raw.id)?;
        let author = check_author(raw.author)?;
        let message = match raw.message {
            Some(m) if m.contains('\0') => {
                return Err(invalid(
                    "`message` contains a NUL character, which Git cannot store",
                ));
            }
            Some(m) if !m.trim().is_empty() => m,
            _ => format!("Apply contribution {}", raw.id),
        };
        let target = parse_target(raw.target.as_deref())?;
        let base = match raw.base {
            Some(b) if is_commitish(&b) => Some(b),
            Some(b) => {
                return Err(invalid(format!(
                    "`base` is `{b}`; it must be a commit id (4 to 64 hexadecimal digits)"
                )));
            }
            None => None,
        };
        if raw.changes.is_empty() {
            return Err(invalid(
                "`changes` is empty; a bundle must change something",
            ));
        }
        if raw.changes.len() > limits.max_changes {
            return Err(Rejection::new(
                ErrorCode::TooLarge,
                format!(
                    "the bundle has {} changes; the limit is {} (`[contributions] max_changes` in quire.toml); split it into several bundles",
                    raw.changes.len(),
                    limits.max_changes
                ),
            ));
        }
        let mut gate = Gate::new(limits);
        let changes = raw
            .changes
            .iter()
            .enumerate()
            .map(|(i, c)| parse_change(i, c, &mut gate))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Bundle {
            id: raw.id,
            author,
            message,
            target,
            base,
            changes,
        })
    }
}

/// The bundle's `id`, if the bytes are JSON with a valid one, even when the bundle is otherwise
/// refused: a rejected receipt then names the bundle its writer knows.
pub fn peek_id(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Peek {
        id: String,
    }
    let peek: Peek = serde_json::from_slice(bytes).ok()?;
    is_valid_id(&peek.id).then_some(peek.id)
}

/// The refusal for a bundle file over the size limit (also used before the file is read).
pub fn too_large_bytes(size: u64, limit: u64) -> Rejection {
    Rejection::new(
        ErrorCode::TooLarge,
        format!(
            "the bundle is {size} bytes; the limit is {limit} (`[contributions] max_bundle_bytes` in quire.toml); split it into several bundles"
        ),
    )
}

fn invalid(message: impl Into<String>) -> Rejection {
    Rejection::new(ErrorCode::InvalidBundle, message)
}

/// The `contract` a dropped JSON file names, if it is a JSON object naming one (read only when a
/// file is not a bundle, to route it: a mission brief is not refused as a bad bundle).
pub fn contract_of(bytes: &[u8]) -> Option<String> {
    peek_contract(bytes).ok()?.map(Into::into)
}

/// The `contract` a JSON object names (`None` when it names none), or why the bytes are not such
/// an object: serde_json's error tells a whole document of another shape
/// ([`serde_json::error::Category::Data`]) from one cut short or broken.
pub fn peek_contract(bytes: &[u8]) -> Result<Option<std::borrow::Cow<'_, str>>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Peek<'a> {
        #[serde(borrow)]
        contract: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Peek<'_>>(bytes).map(|p| p.contract)
}

/// Whether `id` is a valid bundle id: `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`.
pub fn is_valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_ID_LEN
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

fn check_id(id: &str) -> Result<(), Rejection> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(invalid(format!(
            "`id` is `{}`; it must start with a letter or digit and hold only letters, digits, `.`, `_` and `-`, at most {MAX_ID_LEN} characters",
            id.escape_debug()
        )))
    }
}

fn check_author(raw: RawAuthor) -> Result<Author, Rejection> {
    for (field, value) in [("name", &raw.name), ("email", &raw.email)] {
        if value.trim().is_empty() {
            return Err(invalid(format!("`author.{field}` is empty")));
        }
        if value.len() > 256 {
            return Err(invalid(format!(
                "`author.{field}` is longer than 256 bytes"
            )));
        }
        if value
            .chars()
            .any(|c| c.is_control() || c == '<' || c == '>')
        {
            return Err(invalid(format!(
                "`author.{field}` contains `<`, `>` or a control character, which Git does not allow in an identity"
            )));
        }
    }
    Ok(Author {
        name: raw.name.trim().to_owned(),
        email: raw.email.trim().to_owned(),
    })
}

fn parse_target(raw: Option<&str>) -> Result<Target, Rejection> {
    match raw {
        None | Some("main") => Ok(Target::Main),
        Some(t) => match t.strip_prefix("sandbox:") {
            Some(id) if is_valid_id(id) => Ok(Target::Sandbox(id.to_owned())),
            _ => Err(invalid(format!(
                "`target` is `{}`; it must be `main` or `sandbox:<id>`",
                t.escape_debug()
            ))),
        },
    }
}

fn is_commitish(s: &str) -> bool {
    (4..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Keeps bundles out of the operator's files: a protected path passes only when a glob of
/// `[contributions] allow` matches it. The globs are compiled only when a protected path comes up.
struct Gate<'c> {
    limits: &'c ContributionsConfig,
    compiled: Option<globset::GlobSet>,
}

impl<'c> Gate<'c> {
    fn new(limits: &'c ContributionsConfig) -> Self {
        Self {
            limits,
            compiled: None,
        }
    }

    fn check(&mut self, index: usize, path: &VaultPath) -> Result<(), Rejection> {
        let Some(kind) = path.protection() else {
            return Ok(());
        };
        if !self.limits.allow.is_empty() {
            let limits = self.limits;
            // quire.toml's globs were checked when it was read; a set built in code that fails to
            // compile opens nothing.
            let set = self.compiled.get_or_insert_with(|| {
                limits
                    .allowed()
                    .unwrap_or_else(|_| globset::GlobSet::empty())
            });
            if set.is_match(path.as_str()) {
                return Ok(());
            }
        }
        Err(protected(index, path, kind))
    }
}

/// The refusal of a change to an operator file: which file, why it is protected, how to open it.
fn protected(index: usize, path: &VaultPath, kind: Protected) -> Rejection {
    let example = match kind {
        Protected::Config => "quire.toml".to_owned(),
        Protected::Hidden => path.as_str().to_owned(),
        Protected::Themes | Protected::Records => {
            format!("{}/**", path.segments().next().unwrap_or_default())
        }
    };
    Rejection::at(
        ErrorCode::ProtectedPath,
        index,
        path.as_str(),
        format!(
            "`{path}` is {}; bundles may change notes only. If contributors should be able to change it, the vault's operator adds a matching glob to `[contributions] allow` in quire.toml (for example `allow = [{example:?}]`)",
            kind.describe()
        ),
    )
}

fn parse_change(index: usize, raw: &RawValue, gate: &mut Gate<'_>) -> Result<Change, Rejection> {
    let bad = |message: String| Rejection {
        code: ErrorCode::InvalidBundle,
        message,
        change: Some(index),
        path: None,
    };
    let c: RawChange<'_> =
        serde_json::from_str(raw.get()).map_err(|e| bad(strip_position(&e.to_string())))?;
    let path = vault_path(index, &c.path)?;
    gate.check(index, &path)?;
    let named = |p: &VaultPath, message: String| {
        Rejection::at(ErrorCode::InvalidBundle, index, p.as_str(), message)
    };

    // Each op takes its own fields and no others, so a misplaced field is an error, not ignored.
    let fields = [
        ("content", c.content.is_some()),
        ("encoding", c.encoding.is_some()),
        ("to", c.to.is_some()),
        ("patch", c.patch.is_some()),
        ("frontmatter", c.frontmatter.is_some()),
        ("body", c.body.is_some()),
    ];
    let allowed: &[&str] = match c.op.as_str() {
        "create" => &["content", "encoding"],
        "delete" => &[],
        "move" => &["to"],
        "patch" => &["patch", "frontmatter", "body"],
        other => {
            return Err(named(
                &path,
                format!(
                    "unknown op `{}`; use `create`, `delete`, `move` or `patch`",
                    other.escape_debug()
                ),
            ));
        }
    };
    if let Some((field, _)) = fields.iter().find(|(f, set)| *set && !allowed.contains(f)) {
        return Err(named(
            &path,
            format!("`{field}` does not belong to a `{}` change", c.op),
        ));
    }

    match c.op.as_str() {
        "create" => {
            let Some(content) = c.content else {
                return Err(named(&path, "a `create` change needs `content`".into()));
            };
            let content = match c.encoding.as_deref() {
                None | Some("utf-8") => content.into_bytes(),
                Some("base64") => {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD
                        .decode(content.trim())
                        .map_err(|e| named(&path, format!("`content` is not valid base64: {e}")))?
                }
                Some(other) => {
                    return Err(named(
                        &path,
                        format!(
                            "`encoding` is `{}`; use `utf-8` or `base64`",
                            other.escape_debug()
                        ),
                    ));
                }
            };
            Ok(Change::Create { path, content })
        }
        "delete" => Ok(Change::Delete { path }),
        "move" => {
            let Some(to) = c.to else {
                return Err(named(&path, "a `move` change needs `to`".into()));
            };
            let to = vault_path(index, &to)?;
            gate.check(index, &to)?;
            if to == path {
                return Err(named(&path, "`to` is the same as `path`".into()));
            }
            Ok(Change::Move { from: path, to })
        }
        _ => {
            let given = [c.patch.is_some(), c.frontmatter.is_some(), c.body.is_some()]
                .iter()
                .filter(|x| **x)
                .count();
            if given != 1 {
                return Err(named(
                    &path,
                    "a `patch` change needs exactly one of `patch`, `frontmatter` or `body`".into(),
                ));
            }
            let edit = if let Some(p) = c.patch {
                Edit::Data(json_patch_ops(p).map_err(|m| named(&path, format!("`patch` {m}")))?)
            } else if let Some(p) = c.frontmatter {
                Edit::FrontMatter(
                    json_patch_ops(p).map_err(|m| named(&path, format!("`frontmatter` {m}")))?,
                )
            } else {
                let ops = c.body.unwrap_or_default();
                if ops.is_empty() {
                    return Err(named(&path, "`body` is empty".into()));
                }
                Edit::Body(
                    ops.into_iter()
                        .enumerate()
                        .map(|(k, op)| {
                            body_op(op)
                                .map_err(|m| named(&path, format!("`body` operation {k}: {m}")))
                        })
                        .collect::<Result<_, _>>()?,
                )
            };
            Ok(Change::Patch { path, edit })
        }
    }
}

fn vault_path(index: usize, raw: &str) -> Result<VaultPath, Rejection> {
    VaultPath::new(raw).map_err(|e| {
        Rejection::at(
            ErrorCode::UnsafePath,
            index,
            raw.escape_debug().to_string(),
            e.to_string(),
        )
    })
}

/// A JSON Patch document, each operation deserialized on its own from its bytes, so an error names
/// the operation and duplicate members are refused.
fn json_patch_ops(raw: &RawValue) -> Result<Vec<json_patch::PatchOperation>, String> {
    let items: Vec<&RawValue> = serde_json::from_str(raw.get())
        .map_err(|_| "must be a list of JSON Patch operations (RFC 6902)".to_owned())?;
    items
        .iter()
        .enumerate()
        .map(|(k, item)| {
            serde_json::from_str::<json_patch::PatchOperation>(item.get())
                .map_err(|e| format!("operation {k}: {}", strip_position(&e.to_string())))
        })
        .collect()
}

fn body_op(raw: RawBodyOp) -> Result<BodyOp, String> {
    let kinds = [
        raw.replace_block.is_some(),
        raw.append_under_heading.is_some(),
        raw.append.is_some(),
        raw.prepend.is_some(),
        raw.replace.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err("needs exactly one of `replace_block`, `append_under_heading`, `append`, `prepend` or `replace`".into());
    }
    let needs_content = raw.replace_block.is_some() || raw.append_under_heading.is_some();
    if needs_content != raw.content.is_some() {
        return Err(if needs_content {
            "needs `content`".into()
        } else {
            "`content` belongs only to `replace_block` and `append_under_heading`".into()
        });
    }
    let content = raw.content.unwrap_or_default();
    Ok(if let Some(name) = raw.replace_block {
        if name.trim().is_empty() || name.contains(char::is_whitespace) {
            return Err(
                "`replace_block` must name a block (one word, as in `<!-- quire:begin NAME -->`)"
                    .into(),
            );
        }
        BodyOp::ReplaceBlock { name, content }
    } else if let Some(heading) = raw.append_under_heading {
        if heading.trim().is_empty() {
            return Err("`append_under_heading` is empty".into());
        }
        BodyOp::AppendUnderHeading { heading, content }
    } else if let Some(text) = raw.append {
        BodyOp::Append(text)
    } else if let Some(text) = raw.prepend {
        BodyOp::Prepend(text)
    } else {
        let r = raw.replace.ok_or("needs an operation")?;
        if r.find.is_empty() {
            return Err("`replace.find` is empty".into());
        }
        if r.count == 0 {
            return Err("`replace.count` must be at least 1".into());
        }
        BodyOp::Replace {
            find: r.find,
            with: r.with,
            count: r.count,
        }
    })
}

/// serde_json ends messages with "at line L column C"; inside one change, those positions are
/// relative to the change and would mislead, so they are dropped (the change index is reported).
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Refuses nesting deeper than `limit` before any parser recurses into it.
fn check_depth(text: &str, limit: usize) -> Result<(), Rejection> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, b) in text.bytes().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    let (line, col) = line_col(text.as_bytes(), i);
                    return Err(Rejection::new(
                        ErrorCode::TooLarge,
                        format!(
                            "the bundle nests deeper than {limit} levels (at line {line}, column {col}); the limit is `[contributions] max_depth` in quire.toml"
                        ),
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn line_col(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    (line, col)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn limits() -> ContributionsConfig {
        ContributionsConfig::default()
    }

    fn parse(s: &str) -> Result<Bundle, Rejection> {
        Bundle::parse(s.as_bytes(), &limits())
    }

    const AUTHOR: &str = r#""author":{"name":"A","email":"a@x"}"#;

    fn bundle(changes: &str) -> String {
        format!(
            r#"{{"contract":"quire.contribution/1","id":"b-1",{AUTHOR},"changes":[{changes}]}}"#
        )
    }

    #[test]
    fn parses_every_op() {
        let b = parse(&bundle(
            r#"{"op":"create","path":"a.md","content":"x"},
               {"op":"create","path":"img.png","content":"aGk=","encoding":"base64"},
               {"op":"delete","path":"b.md"},
               {"op":"move","path":"c.md","to":"d/c.md"},
               {"op":"patch","path":"s.json","patch":[{"op":"add","path":"/a","value":1}]},
               {"op":"patch","path":"a.md","frontmatter":[{"op":"remove","path":"/x"}]},
               {"op":"patch","path":"a.md","body":[{"replace_block":"s","content":"t"},{"append_under_heading":"Tasks","content":"- [ ] x"},{"append":"e"},{"prepend":"p"},{"replace":{"find":"a","with":"b","count":2}}]}"#,
        ))
        .unwrap();
        assert_eq!(b.changes.len(), 7);
        assert_eq!(b.message, "Apply contribution b-1");
        assert_eq!(b.target, Target::Main);
        match &b.changes[1] {
            Change::Create { content, .. } => assert_eq!(content, b"hi"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn duplicate_keys_are_refused_at_every_level() {
        let cases = [
            format!(
                r#"{{"contract":"quire.contribution/1","id":"a","id":"b",{AUTHOR},"changes":[{{"op":"delete","path":"a"}}]}}"#
            ),
            bundle(r#"{"op":"delete","path":"a","path":"b"}"#),
            bundle(
                r#"{"op":"patch","path":"a.json","patch":[{"op":"add","path":"/a","path":"/b","value":1}]}"#,
            ),
            bundle(
                r#"{"op":"patch","path":"a.json","patch":[{"op":"add","op":"remove","path":"/a","value":1}]}"#,
            ),
        ];
        for case in cases {
            let err = parse(&case).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidBundle, "{case}: {err}");
            assert!(err.message.contains("duplicate"), "{case}: {err}");
        }
    }

    #[test]
    fn classifies_refusals() {
        let cases: &[(&[u8], ErrorCode)] = &[
            (b"{not json", ErrorCode::InvalidJson),
            (b"\xff\xfe{}", ErrorCode::InvalidJson),
            (b"[]", ErrorCode::InvalidBundle),
            (br#"{"contract":"quire.contribution/2","id":"a","author":{"name":"A","email":"a@x"},"changes":[{"op":"delete","path":"a"}]}"#, ErrorCode::InvalidBundle),
        ];
        for (bytes, code) in cases {
            assert_eq!(
                Bundle::parse(bytes, &limits()).unwrap_err().code,
                *code,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        for (changes, code) in [
            (
                r#"{"op":"frobnicate","path":"a"}"#,
                ErrorCode::InvalidBundle,
            ),
            (r#"{"op":"delete","path":"../a"}"#, ErrorCode::UnsafePath),
            (
                r#"{"op":"move","path":"a","to":".git/x"}"#,
                ErrorCode::UnsafePath,
            ),
            (
                r#"{"op":"delete","path":"a","content":"x"}"#,
                ErrorCode::InvalidBundle,
            ),
            (r#"{"op":"patch","path":"a.md"}"#, ErrorCode::InvalidBundle),
            (
                r#"{"op":"patch","path":"a.md","body":[{"append":"x","prepend":"y"}]}"#,
                ErrorCode::InvalidBundle,
            ),
            (
                r#"{"op":"patch","path":"a.json","patch":[{"op":"spam","path":"/a"}]}"#,
                ErrorCode::InvalidBundle,
            ),
            (
                r#"{"op":"create","path":"a","content":"!!","encoding":"base64"}"#,
                ErrorCode::InvalidBundle,
            ),
        ] {
            let err = parse(&bundle(changes)).unwrap_err();
            assert_eq!(err.code, code, "{changes}: {err}");
            assert_eq!(err.change, Some(0), "{changes}: {err}");
        }
        let bad_id = format!(
            r#"{{"contract":"quire.contribution/1","id":"-a",{AUTHOR},"changes":[{{"op":"delete","path":"a"}}]}}"#
        );
        assert_eq!(parse(&bad_id).unwrap_err().code, ErrorCode::InvalidBundle);
        let bad_target = bundle(r#"{"op":"delete","path":"a"}"#)
            .replace(r#""id""#, r#""target":"develop","id""#);
        assert!(parse(&bad_target).unwrap_err().message.contains("target"));
    }

    #[test]
    fn limits_are_enforced_before_parsing() {
        let small = ContributionsConfig {
            max_bundle_bytes: 10,
            max_changes: 1,
            max_depth: 4,
            ..ContributionsConfig::default()
        };
        let b = bundle(r#"{"op":"delete","path":"a"}"#);
        assert_eq!(
            Bundle::parse(b.as_bytes(), &small).unwrap_err().code,
            ErrorCode::TooLarge
        );
        let small = ContributionsConfig {
            max_bundle_bytes: 1 << 20,
            ..small
        };
        let two = bundle(r#"{"op":"delete","path":"a"},{"op":"delete","path":"b"}"#);
        assert_eq!(
            Bundle::parse(two.as_bytes(), &small).unwrap_err().code,
            ErrorCode::TooLarge
        );
        let deep = bundle(
            r#"{"op":"patch","path":"a.json","patch":[{"op":"add","path":"/a","value":[[[[1]]]]}]}"#,
        );
        let err = Bundle::parse(deep.as_bytes(), &small).unwrap_err();
        assert_eq!(err.code, ErrorCode::TooLarge);
        assert!(err.message.contains("line 1"), "{err}");
        // Brackets inside strings do not count.
        let stringy = bundle(r#"{"op":"create","path":"a","content":"[[[[[[[[[[\"{{{{{{"}"#);
        assert!(Bundle::parse(stringy.as_bytes(), &small).is_ok());
    }

    #[test]
    fn default_depth_limit_matches_serde_json() {
        let nest = |n: usize| {
            format!(
                r#"{{"op":"patch","path":"a.json","patch":[{{"op":"add","path":"/a","value":{}1{}}}]}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        // The envelope, `changes`, the change, `patch` and the op take 5 levels.
        assert!(parse(&bundle(&nest(123))).is_ok());
        assert_eq!(
            parse(&bundle(&nest(124))).unwrap_err().code,
            ErrorCode::TooLarge
        );
    }

    /// Bundles as a contributor (or an attacker) might write them: every op, paths built from the
    /// pieces path checks care about, JSON Patch and body operations, extra and missing fields.
    pub(crate) fn arbitrary_bundle() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        use serde_json::json;
        const PIECES: &[&str] = &[
            "03_NOTES/",
            "a.md",
            "b.md",
            "/",
            "..",
            ".git/",
            ".gitignore",
            "quire.toml",
            "themes/",
            "data.json",
            "x.yaml",
            "c.toml",
            "\\",
            ":",
            " ",
            "é",
            ".env",
            "07_LOGS/",
            "06_RUNS/",
        ];
        let path = prop_oneof![
            2 => proptest::sample::select(&["03_NOTES/a.md", "03_NOTES/b.md", "data.json", "x.yaml", "c.toml"][..])
                .prop_map(str::to_owned),
            3 => "(0[0-5]_[A-Z]{1,5}/)?[a-z]{1,6}\\.(md|json|yaml|toml)",
            1 => crate::fuzz::tricky_text(PIECES, 5),
        ];
        let value = prop_oneof![
            Just(json!(null)),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z#\\[\\]|^=-]{0,12}".prop_map(|s| json!(s)),
            Just(json!({ "k": [1, 2] })),
        ];
        let pointer = prop_oneof![
            Just("".to_owned()),
            Just("/".to_owned()),
            "(/[a-z0-9~-]{0,4}){1,3}",
            Just("/a/-".to_owned()),
        ];
        let patch_op = (
            proptest::sample::select(
                &["add", "remove", "replace", "move", "copy", "test", "nope"][..],
            ),
            pointer.clone(),
            pointer,
            value.clone(),
        )
            .prop_map(|(op, path, from, value)| match op {
                "remove" => json!({ "op": op, "path": path }),
                "move" | "copy" => json!({ "op": op, "path": path, "from": from }),
                _ => json!({ "op": op, "path": path, "value": value }),
            });
        let body_op = prop_oneof![
            "[a-z\\n#-]{0,12}".prop_map(|c| json!({ "append": c })),
            "[a-z\\n]{0,12}".prop_map(|c| json!({ "prepend": c })),
            ("[A-Za-z #]{0,8}", "[a-z\\n-]{0,12}")
                .prop_map(|(h, c)| json!({ "append_under_heading": h, "content": c })),
            ("[a-z]{0,6}", "[a-z\\n]{0,8}")
                .prop_map(|(b, c)| json!({ "replace_block": b, "content": c })),
            ("[a-z]{0,4}", "[a-z]{0,4}", 1u32..3)
                .prop_map(|(f, w, n)| json!({ "replace": { "find": f, "with": w, "count": n } })),
        ];
        let change = prop_oneof![
            (path.clone(), "[a-z\\n#\\[\\] -]{0,40}")
                .prop_map(|(p, c)| json!({ "op": "create", "path": p, "content": c })),
            (path.clone(), "[A-Za-z0-9+/=]{0,16}").prop_map(
                |(p, c)| json!({ "op": "create", "path": p, "content": c, "encoding": "base64" })
            ),
            path.clone()
                .prop_map(|p| json!({ "op": "delete", "path": p })),
            (path.clone(), path.clone())
                .prop_map(|(p, t)| json!({ "op": "move", "path": p, "to": t })),
            (
                path.clone(),
                proptest::collection::vec(patch_op.clone(), 0..4)
            )
                .prop_map(|(p, ops)| json!({ "op": "patch", "path": p, "patch": ops })),
            (path.clone(), proptest::collection::vec(patch_op, 0..4))
                .prop_map(|(p, ops)| json!({ "op": "patch", "path": p, "frontmatter": ops })),
            (path.clone(), proptest::collection::vec(body_op, 0..4))
                .prop_map(|(p, ops)| json!({ "op": "patch", "path": p, "body": ops })),
            (path, value).prop_map(|(p, v)| json!({ "op": "patch", "path": p, "patch": v })),
        ];
        let envelope = (
            prop_oneof![4 => "[a-z][a-z0-9-]{0,10}", 1 => "[A-Za-z0-9._~-]{0,12}"],
            proptest::collection::vec(change, 1..5),
            proptest::option::weighted(0.2, proptest::sample::select(&["main", "sandbox:m-1", "sandbox:../x", "develop"][..])),
            proptest::bool::weighted(0.9),
        )
            .prop_map(|(id, changes, target, author)| {
                let mut b = json!({ "contract": CONTRACT, "id": id, "message": "fuzz", "changes": changes });
                if author {
                    b["author"] = json!({ "name": "Fuzz", "email": "fuzz@example.org" });
                }
                if let Some(t) = target {
                    b["target"] = json!(t);
                }
                serde_json::to_vec(&b).unwrap_or_default()
            });
        prop_oneof![
            6 => envelope.clone(),
            // Damaged: cut short, or a byte changed.
            1 => (envelope.clone(), any::<proptest::sample::Index>())
                .prop_map(|(b, i)| b[..i.index(b.len() + 1)].to_vec()),
            1 => (envelope, any::<proptest::sample::Index>(), any::<u8>()).prop_map(|(mut b, i, x)| {
                if !b.is_empty() {
                    let at = i.index(b.len());
                    b[at] = x;
                }
                b
            }),
            1 => proptest::collection::vec(any::<u8>(), 0..64),
        ]
    }

    proptest::proptest! {
        #![proptest_config(crate::fuzz::config(1000))]

        /// Parsing never panics, and what it accepts holds only paths that are safe and open to
        /// bundles, within the limits.
        #[test]
        fn fuzz_parsing_never_panics_and_accepts_only_safe_paths(bytes in arbitrary_bundle()) {
            let limits = limits();
            let Ok(b) = Bundle::parse(&bytes, &limits) else { return Ok(()) };
            proptest::prop_assert!(is_valid_id(&b.id));
            proptest::prop_assert!(!b.changes.is_empty() && b.changes.len() <= limits.max_changes);
            for c in &b.changes {
                let mut paths = vec![c.path()];
                if let Change::Move { to, .. } = c {
                    paths.push(to);
                }
                for p in paths {
                    proptest::prop_assert_eq!(VaultPath::new(p.as_str()), Ok(p.clone()));
                    proptest::prop_assert_eq!(p.protection(), None, "{} is protected", p);
                }
            }
        }
    }
}
