//! Library code never panics on user input: mangled bundles, notes and YAML, generated from a fixed
//! seed, go through the real parser, planner and front matter code. Every input must end in a value
//! or a refusal.

use std::collections::BTreeMap;

use quire::contributions::{Bundle, plan};
use quire::markdown;
use quire::vault::{
    ContributionsConfig, FileContent, NodeKind, Snapshot, SnapshotError, VaultPath,
};
use serde_json::json;

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Files in memory, as a snapshot.
struct Files(BTreeMap<String, Vec<u8>>);

impl Snapshot for Files {
    fn kind(&self, path: &str) -> Result<Option<NodeKind>, SnapshotError> {
        if self.0.contains_key(path) {
            return Ok(Some(NodeKind::File { executable: false }));
        }
        let prefix = format!("{path}/");
        Ok(self
            .0
            .keys()
            .any(|k| k.starts_with(&prefix))
            .then_some(NodeKind::Dir))
    }
    fn read(&self, path: &VaultPath) -> Result<Option<FileContent>, SnapshotError> {
        Ok(self
            .0
            .get(path.as_str())
            .map(|b| FileContent::new(b.clone())))
    }
}

const PIECES: &[&str] = &[
    "#",
    "## ",
    "### Tasks",
    "Tasks",
    " ",
    "\n",
    "\r\n",
    "\t",
    "<!--",
    "-->",
    "<!-- quire:begin s -->",
    "<!-- quire:end s -->",
    "quire:begin",
    "s",
    "```",
    "~~~",
    "- [ ] ",
    "* [x] ",
    "> ",
    "> [!note]",
    "|a|b|",
    "é",
    "日本",
    "\u{200b}",
    "\u{feff}",
    "---",
    "...",
    ": ",
    "&a",
    "*a",
    "[",
    "]",
    "{",
    "}",
    "'",
    "\"",
    "\\",
    "x",
    "0",
    "-",
    "===",
    "\0",
];

fn random_text(rng: &mut Rng, max: usize) -> String {
    (0..rng.below(max)).map(|_| *rng.pick(PIECES)).collect()
}

#[test]
fn mangled_bundle_bytes_never_panic_the_parser() {
    let valid = serde_json::to_vec(&json!({
        "contract": "quire.contribution/1", "id": "b-1",
        "author": { "name": "A", "email": "a@x" }, "message": "m", "target": "main", "base": "abcd",
        "changes": [
            { "op": "create", "path": "a/b.md", "content": "x", "encoding": "utf-8" },
            { "op": "patch", "path": "d.json", "patch": [ { "op": "move", "from": "/a", "path": "/b" } ] },
            { "op": "patch", "path": "n.md", "body": [ { "replace": { "find": "a", "with": "b", "count": 2 } } ] }
        ]
    }))
    .unwrap();
    let limits = ContributionsConfig::default();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let bytes: Vec<u8> = b"{}[]\":,\\u0000 \x00\xff\xc3\xa9-.0123456789abcdefnulltrue".to_vec();
    for _ in 0..20_000 {
        let mut b = valid.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(b.len() + 1);
            match rng.below(3) {
                0 if at < b.len() => {
                    b[at] = *rng.pick(&bytes);
                }
                1 => b.insert(at, *rng.pick(&bytes)),
                _ if at < b.len() => {
                    b.remove(at);
                }
                _ => {}
            }
        }
        let _ = Bundle::parse(&b, &limits);
    }
}

#[test]
fn random_notes_and_operations_never_panic_the_planner() {
    let mut rng = Rng(0x5eed_0000_0000_0002);
    let limits = ContributionsConfig::default();
    for round in 0..3_000 {
        let note = random_text(&mut rng, 40);
        let data = random_text(&mut rng, 12);
        let mut files = BTreeMap::new();
        files.insert("n.md".to_owned(), note.clone().into_bytes());
        files.insert("d.json".to_owned(), data.clone().into_bytes());
        files.insert("d.yaml".to_owned(), data.clone().into_bytes());
        files.insert("d.toml".to_owned(), data.into_bytes());
        let text = |rng: &mut Rng| random_text(rng, 8);
        let body_op = match rng.below(5) {
            0 => json!({ "replace_block": "s", "content": text(&mut rng) }),
            1 => {
                json!({ "append_under_heading": *rng.pick(&["Tasks", "## Tasks", "#", "x"]), "content": text(&mut rng) })
            }
            2 => json!({ "append": text(&mut rng) }),
            3 => json!({ "prepend": text(&mut rng) }),
            _ => {
                json!({ "replace": { "find": *rng.pick(&["x", "\n", "é", "-->"]), "with": text(&mut rng), "count": 1 + rng.below(3) } })
            }
        };
        let target = *rng.pick(&["d.json", "d.yaml", "d.toml"]);
        let b = json!({
            "contract": "quire.contribution/1", "id": format!("r-{round}"),
            "author": { "name": "A", "email": "a@x" },
            "changes": [
                { "op": "patch", "path": "n.md", "body": [ body_op ] },
                { "op": "patch", "path": "n.md", "frontmatter": [ { "op": "add", "path": "/k", "value": text(&mut rng) } ] },
                { "op": "patch", "path": target, "patch": [ { "op": "add", "path": "/k", "value": 1 } ] }
            ]
        });
        let bundle = Bundle::parse(&serde_json::to_vec(&b).unwrap(), &limits).unwrap();
        let _ = plan(&bundle, &Files(files), rng.below(2) == 0);

        // And the front matter reader and writer on the same text.
        let doc = markdown::split(&note);
        if let Ok(map) = doc.front_matter_map() {
            let _ = doc.with_front_matter(&map);
        }
        let _ = markdown::sections::headings(&note);
        let _ = markdown::sections::blocks(&note);
    }
}

#[test]
fn random_yaml_never_panics_and_round_trips_when_accepted() {
    let mut rng = Rng(0x5eed_0000_0000_0003);
    for _ in 0..5_000 {
        let text = random_text(&mut rng, 30);
        if let Ok(map) = markdown::yaml::parse_mapping(&text) {
            let mut new = map.clone();
            new.insert("added".into(), json!("v"));
            let out = markdown::yaml::rewrite_mapping(&text, &map, &new).unwrap();
            let back = markdown::yaml::parse_mapping(&out);
            assert_eq!(
                back.as_ref().ok(),
                Some(&new),
                "{text:?} -> {out:?}: {back:?}"
            );
        }
    }
}
