//! Hostile input: every refusal is clear, and nothing is written anywhere (in the repository, the work
//! tree, Git's index, or beside the vault).

use quire::vault::Queue;
use serde_json::json;

use crate::harness::{VaultTest, assert_rejected, bundle};

fn target_vault() -> VaultTest {
    let v = VaultTest::new();
    v.commit(
        &[
            ("03_NOTES/a.md", "---\ntitle: A\n---\n# A\n"),
            ("data/x.json", "{}\n"),
        ],
        "fixtures",
    );
    v
}

/// Applies `b` and checks the refusal code and that the vault and its surroundings did not change.
fn refused(v: &VaultTest, name: &str, bytes: &[u8], code: &str) -> quire::contributions::Receipt {
    let before = v.fingerprint();
    v.drop_bytes(name, bytes);
    let (report, _) = v.apply();
    assert_eq!(report.filed.len(), 1);
    let r = report.filed[0].receipt.clone();
    assert_rejected(&r, code);
    assert_eq!(v.fingerprint(), before, "{name} changed something");
    // The refused bundle is kept as it came.
    let kept = std::fs::read(report.filed[0].bundle.clone()).unwrap();
    assert_eq!(kept, bytes);
    assert!(
        report.filed[0]
            .bundle
            .starts_with(v.vault().queue_dir(Queue::Rejected))
    );
    r
}

#[test]
fn unsafe_paths_are_refused_for_every_op() {
    let v = target_vault();
    let paths = [
        "../outside.md",
        "a/../../outside.md",
        "/etc/passwd",
        "/tmp/quire-escape.md",
        "a\\b.md",
        "..\\outside.md",
        "C:/Windows/x.md",
        "C:x.md",
        "//server/share/x.md",
        "\\\\server\\share\\x.md",
        "a:stream.md",
        "a\u{0}b.md",
        "a//b.md",
        "a/./b.md",
        "trailing/",
        "",
        ".git/config",
        ".git/hooks/post-commit",
        ".GIT/config",
        ".git./config",
        ".Git /config",
        "GIT~1/config",
        "git~2/HEAD",
        "sub/.git/config",
        ".quire/state.db",
        "contributions/pending/evil.json",
        "Contributions/processed/x.json",
        "sandbox/m/x.md",
        "_site/paper/index.html",
        ".env",
        "nested/.env",
    ];
    for (i, path) in paths.iter().enumerate() {
        for (j, change) in [
            json!({ "op": "create", "path": path, "content": "pwned\n" }),
            json!({ "op": "delete", "path": path }),
            json!({ "op": "patch", "path": path, "patch": [ { "op": "add", "path": "/a", "value": 1 } ] }),
            json!({ "op": "move", "path": "03_NOTES/a.md", "to": path }),
            json!({ "op": "move", "path": path, "to": "03_NOTES/b.md" }),
        ]
        .into_iter()
        .enumerate()
        {
            let b = bundle(&format!("unsafe-{i}-{j}"), json!([change]));
            let r = refused(&v, &format!("u{i}-{j}.json"), &serde_json::to_vec(&b).unwrap(), "unsafe_path");
            let e = r.error.unwrap();
            assert_eq!(e.change, Some(0));
            assert!(!e.message.is_empty());
        }
    }
    assert!(!std::path::Path::new("/tmp/quire-escape.md").exists());
}

#[cfg(unix)]
#[test]
fn symlinks_are_never_written_through() {
    use std::os::unix::fs::symlink;
    let v = target_vault();
    let outside = v.tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret.md"), "outside the vault\n").unwrap();
    // Committed links: one to a folder inside the vault, one leaving it, one to a file.
    symlink("03_NOTES", v.path("inside-link")).unwrap();
    symlink(&outside, v.path("outside-link")).unwrap();
    symlink("03_NOTES/a.md", v.path("leaf-link.md")).unwrap();
    v.git(&["add", "-A"]);
    v.git(&["commit", "-q", "-m", "links"]);
    // An uncommitted link in the work tree only.
    symlink(&outside, v.path("03_NOTES/worktree-link")).unwrap();

    let cases = [
        json!({ "op": "create", "path": "inside-link/x.md", "content": "x" }),
        json!({ "op": "patch", "path": "inside-link/a.md", "frontmatter": [ { "op": "add", "path": "/x", "value": 1 } ] }),
        json!({ "op": "create", "path": "outside-link/new.md", "content": "x" }),
        json!({ "op": "delete", "path": "outside-link/secret.md" }),
        json!({ "op": "patch", "path": "outside-link/secret.md", "body": [ { "append": "x" } ] }),
        json!({ "op": "patch", "path": "leaf-link.md", "body": [ { "append": "x" } ] }),
        json!({ "op": "delete", "path": "leaf-link.md" }),
        json!({ "op": "move", "path": "03_NOTES/a.md", "to": "outside-link/moved.md" }),
        json!({ "op": "create", "path": "03_NOTES/worktree-link/x.md", "content": "x" }),
    ];
    for (i, change) in cases.into_iter().enumerate() {
        let b = bundle(&format!("link-{i}"), json!([change.clone()]));
        let r = refused(
            &v,
            &format!("l{i}.json"),
            &serde_json::to_vec(&b).unwrap(),
            "unsafe_path",
        );
        assert!(r.error.unwrap().message.contains("link"), "{change}");
    }
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    assert_eq!(
        std::fs::read_to_string(outside.join("secret.md")).unwrap(),
        "outside the vault\n"
    );
}

#[test]
fn malformed_bundles_are_refused_with_their_code() {
    let v = target_vault();
    let ok_change = json!([{ "op": "create", "path": "03_NOTES/n.md", "content": "x" }]);
    let envelope = |id: &str| bundle(id, ok_change.clone());

    refused(&v, "not-json.json", b"{ this is not json", "invalid_json");
    refused(
        &v,
        "truncated.json",
        br#"{"contract":"quire.contribution/1","id":"t""#,
        "invalid_json",
    );
    refused(
        &v,
        "latin1.json",
        b"{\"contract\":\"quire.contribution/1\",\"id\":\"caf\xe9\"}",
        "invalid_json",
    );
    refused(&v, "bom-utf16.json", b"\xff\xfe{\x00}\x00", "invalid_json");
    refused(&v, "empty.json", b"", "invalid_json");
    refused(&v, "array.json", b"[]", "invalid_bundle");

    let mut b = envelope("x");
    b["contract"] = json!("quire.contribution/2");
    refused(
        &v,
        "contract.json",
        &serde_json::to_vec(&b).unwrap(),
        "invalid_bundle",
    );
    for bad_id in [
        "",
        "-starts-with-dash",
        "has space",
        "slash/id",
        "dots..ok-but-é",
        &"a".repeat(129),
    ] {
        let b = envelope(bad_id);
        refused(
            &v,
            "bad-id.json",
            &serde_json::to_vec(&b).unwrap(),
            "invalid_bundle",
        );
    }
    let mut b = envelope("unknown-field");
    b["chnages"] = json!([]);
    refused(
        &v,
        "typo.json",
        &serde_json::to_vec(&b).unwrap(),
        "invalid_bundle",
    );
    let r = refused(
        &v,
        "unknown-op.json",
        &serde_json::to_vec(&bundle(
            "unknown-op",
            json!([{ "op": "frobnicate", "path": "a.md" }]),
        ))
        .unwrap(),
        "invalid_bundle",
    );
    assert!(r.error.as_ref().unwrap().message.contains("frobnicate"));
    assert_eq!(
        r.id.as_deref(),
        Some("unknown-op"),
        "a rejected receipt names the id when it can be read"
    );
    refused(
        &v,
        "unknown-patch-op.json",
        &serde_json::to_vec(&bundle("unknown-patch-op", json!([{ "op": "patch", "path": "data/x.json", "patch": [ { "op": "spam", "path": "/a", "value": 1 } ] }]))).unwrap(),
        "invalid_bundle",
    );
    let mut b = envelope("bad-target");
    b["target"] = json!("develop");
    refused(
        &v,
        "target.json",
        &serde_json::to_vec(&b).unwrap(),
        "invalid_bundle",
    );
    let mut b = envelope("missing-sandbox");
    b["target"] = json!("sandbox:ghost");
    refused(
        &v,
        "sandbox.json",
        &serde_json::to_vec(&b).unwrap(),
        "unknown_target",
    );
}

#[test]
fn duplicate_keys_are_refused_not_resolved() {
    let v = target_vault();
    let head = r#"{"contract":"quire.contribution/1","id":"dup","author":{"name":"A","email":"a@x"},"changes":["#;
    let cases = [
        // Two `path`s in one patch op: which one was meant?
        r#"{"op":"patch","path":"data/x.json","patch":[{"op":"add","path":"/safe","path":"/other","value":1}]}"#,
        // Two `op`s in one patch op.
        r#"{"op":"patch","path":"data/x.json","patch":[{"op":"test","op":"add","path":"/a","value":1}]}"#,
        // Two `value`s.
        r#"{"op":"patch","path":"data/x.json","patch":[{"op":"add","path":"/a","value":1,"value":2}]}"#,
        // Two `path`s in a change: a safe one to fool a reviewer, an unsafe one last.
        r#"{"op":"create","path":"03_NOTES/ok.md","path":"../escape.md","content":"x"}"#,
    ];
    for (i, change) in cases.iter().enumerate() {
        let text = format!("{head}{change}]}}");
        let r = refused(
            &v,
            &format!("dup{i}.json"),
            text.as_bytes(),
            "invalid_bundle",
        );
        assert!(r.error.unwrap().message.contains("duplicate"), "{change}");
    }
    let text = r#"{"contract":"quire.contribution/1","id":"a","id":"b","author":{"name":"A","email":"a@x"},"changes":[{"op":"delete","path":"x"}]}"#;
    refused(&v, "dup-id.json", text.as_bytes(), "invalid_bundle");
}

#[test]
fn limits_refuse_before_parsing() {
    let v = target_vault();
    // Over 16 MiB and not even JSON: refused as too large, so it was never parsed.
    let big = vec![b'x'; 16 * 1024 * 1024 + 1];
    let r = refused(&v, "big.json", &big, "too_large");
    assert!(r.error.unwrap().message.contains("16777216"));
    // Nesting deeper than 128.
    let deep = format!(
        r#"{{"contract":"quire.contribution/1","id":"deep","author":{{"name":"A","email":"a@x"}},"changes":[{{"op":"patch","path":"data/x.json","patch":[{{"op":"add","path":"/a","value":{}1{}}}]}}]}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    refused(&v, "deep.json", deep.as_bytes(), "too_large");
    // More than 10,000 changes.
    let changes: Vec<_> = (0..10_001)
        .map(|i| json!({ "op": "create", "path": format!("n/{i}.md"), "content": "" }))
        .collect();
    let r = refused(
        &v,
        "many.json",
        &serde_json::to_vec(&bundle("many", json!(changes))).unwrap(),
        "too_large",
    );
    assert!(r.error.unwrap().message.contains("10000"));
}

#[test]
fn configured_limits_apply() {
    let v = target_vault();
    let cfg = v
        .read("quire.toml")
        .replace("max_changes = 10000", "max_changes = 2");
    v.commit(&[("quire.toml", &cfg)], "tighten limits");
    let changes: Vec<_> = (0..3)
        .map(|i| json!({ "op": "create", "path": format!("n/{i}.md"), "content": "" }))
        .collect();
    refused(
        &v,
        "three.json",
        &serde_json::to_vec(&bundle("three", json!(changes))).unwrap(),
        "too_large",
    );
}

/// A 15 KB front matter whose aliases fan out to ~1 GB of values under serde_yaml.
fn fan_out_front_matter() -> String {
    let mut doc = String::from("---\nitems: &a [");
    doc.push_str(&vec!["lol"; 2500].join(","));
    doc.push_str("]\nfan: [");
    doc.push_str(&vec!["*a"; 2500].join(","));
    doc.push_str("]\n---\n# Body\n");
    doc
}

#[test]
fn yaml_alias_bombs_are_refused_naming_the_file() {
    let v = target_vault();
    let doc = fan_out_front_matter();
    assert!(doc.len() < 20_000);
    v.commit(&[("03_NOTES/bomb.md", &doc)], "a hostile note");
    let b = bundle(
        "bomb",
        json!([{ "op": "patch", "path": "03_NOTES/bomb.md", "frontmatter": [ { "op": "add", "path": "/x", "value": 1 } ] }]),
    );
    let r = refused(
        &v,
        "bomb.json",
        &serde_json::to_vec(&b).unwrap(),
        "patch_failed",
    );
    let e = r.error.unwrap();
    assert!(
        e.message.contains("03_NOTES/bomb.md") && e.message.contains("aliases"),
        "{}",
        e.message
    );
    assert_eq!(e.path.as_deref(), Some("03_NOTES/bomb.md"));

    // The same for a YAML data file.
    let yaml = doc
        .trim_start_matches("---\n")
        .split("---\n")
        .next()
        .unwrap()
        .to_owned();
    v.commit(&[("data/bomb.yaml", &yaml)], "a hostile data file");
    let b = bundle(
        "bomb-yaml",
        json!([{ "op": "patch", "path": "data/bomb.yaml", "patch": [ { "op": "add", "path": "/x", "value": 1 } ] }]),
    );
    refused(
        &v,
        "bomb-yaml.json",
        &serde_json::to_vec(&b).unwrap(),
        "patch_failed",
    );
}

#[cfg(target_os = "linux")]
#[test]
fn yaml_alias_bombs_stay_within_bounded_memory() {
    // The same refusal by the real binary under a 1 GiB address-space limit: an expansion that built
    // the values would die of allocation failure instead of answering.
    let v = target_vault();
    v.commit(
        &[("03_NOTES/bomb.md", &fan_out_front_matter())],
        "a hostile note",
    );
    let b = bundle(
        "bomb",
        json!([{ "op": "patch", "path": "03_NOTES/bomb.md", "frontmatter": [ { "op": "add", "path": "/x", "value": 1 } ] }]),
    );
    v.drop_json("bomb.json", &b);
    let mut cmd = std::process::Command::new("sh");
    cmd.current_dir(&v.root).arg("-c").arg(format!(
        "ulimit -v 1048576 && exec '{}' apply --json",
        env!("CARGO_BIN_EXE_quire")
    ));
    crate::harness::isolated(&mut cmd, v.tmp.path());
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["bundles"][0]["receipt"]["error"]["code"],
        "patch_failed"
    );
}

#[cfg(unix)]
#[test]
fn a_bundle_that_is_a_symlink_is_refused_and_its_target_untouched() {
    let v = target_vault();
    let outside = v.tmp.path().join("elsewhere.json");
    let b = bundle(
        "via-link",
        json!([{ "op": "create", "path": "03_NOTES/l.md", "content": "x" }]),
    );
    std::fs::write(&outside, serde_json::to_vec(&b).unwrap()).unwrap();
    let pending = v.vault().queue_dir(Queue::Pending);
    std::os::unix::fs::symlink(&outside, pending.join("link.json")).unwrap();
    let before = v.fingerprint();
    let (report, _) = v.apply();
    assert_rejected(&report.filed[0].receipt, "invalid_bundle");
    assert!(
        report.filed[0]
            .receipt
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("symbolic link")
    );
    assert_eq!(v.fingerprint(), before);
    assert!(
        outside.is_file(),
        "the link's target is not moved or deleted"
    );
}

#[test]
fn a_missing_main_branch_is_an_unknown_target() {
    let v = target_vault();
    let cfg = v
        .read("quire.toml")
        .replace("main = \"main\"", "main = \"trunk\"");
    v.commit(
        &[("quire.toml", &cfg)],
        "point at a branch that does not exist",
    );
    let b = bundle(
        "to-trunk",
        json!([{ "op": "create", "path": "03_NOTES/t.md", "content": "x" }]),
    );
    let r = refused(
        &v,
        "trunk.json",
        &serde_json::to_vec(&b).unwrap(),
        "unknown_target",
    );
    assert!(r.error.unwrap().message.contains("[git] main"));
}

#[test]
fn operator_files_are_refused_naming_the_file_and_how_to_open_it() {
    let v = target_vault();
    v.commit(
        &[("themes/mine/theme.toml", "name = \"mine\"\n")],
        "a vault theme",
    );
    let cases = [
        // Taking the vault over through its configuration.
        json!([{ "op": "patch", "path": "quire.toml", "patch": [ { "op": "replace", "path": "/daemon/listen", "value": "0.0.0.0:7878" } ] }]),
        json!([{ "op": "patch", "path": "quire.toml", "patch": [ { "op": "add", "path": "/sandbox/verify", "value": "touch /tmp/quire-pwned" } ] }]),
        json!([{ "op": "patch", "path": "quire.toml", "patch": [ { "op": "replace", "path": "/publish/exclude", "value": [] } ] }]),
        json!([{ "op": "delete", "path": "quire.toml" }]),
        json!([{ "op": "create", "path": "Quire.TOML", "content": "[daemon]\nlisten = \"0.0.0.0:1\"\n" }]),
        // Un-ignoring `.env` and `.quire/` so the next `git add -A` commits the token.
        json!([{ "op": "delete", "path": ".gitignore" }, { "op": "create", "path": ".gitignore", "content": "" }]),
        json!([{ "op": "create", "path": "03_NOTES/.gitignore", "content": "!.env\n" }]),
        json!([{ "op": "create", "path": ".gitattributes", "content": "* filter=x\n" }]),
        json!([{ "op": "create", "path": ".githooks/pre-commit", "content": "#!/bin/sh\n" }]),
        json!([{ "op": "create", "path": ".obsidian/plugins/x/main.js", "content": "x" }]),
        // Themes every site is rendered with.
        json!([{ "op": "create", "path": "themes/paper/templates/note.html", "content": "{{ broken" }]),
        json!([{ "op": "delete", "path": "themes/mine/theme.toml" }]),
        json!([{ "op": "move", "path": "03_NOTES/a.md", "to": "themes/mine/a.md" }]),
        // quire's own records and logs, and its temporary files.
        json!([{ "op": "create", "path": "07_LOGS/quire-2099-01-01.jsonl", "content": "{}\n" }]),
        json!([{ "op": "create", "path": "06_RUNS/20991231-pipeline.md", "content": "forged\n" }]),
        json!([{ "op": "create", "path": "03_NOTES/.quire-tmp-x", "content": "x" }]),
    ];
    for (i, changes) in cases.into_iter().enumerate() {
        let last = changes.as_array().unwrap().len() - 1;
        let b = bundle(&format!("operator-{i}"), changes.clone());
        let r = refused(
            &v,
            &format!("op{i}.json"),
            &serde_json::to_vec(&b).unwrap(),
            "protected_path",
        );
        let e = r.error.unwrap();
        let path = e.path.clone().unwrap();
        assert!(e.change.is_some_and(|c| c <= last), "{changes}: {e:?}");
        assert!(
            e.message.contains(&format!("`{path}`")) && e.message.contains("[contributions] allow"),
            "{changes}: the message names the file and how to open it: {}",
            e.message
        );
    }
    assert!(!std::path::Path::new("/tmp/quire-pwned").exists());
    // Notes themselves stay open.
    let r = v.apply_one(&bundle(
        "a-note",
        json!([{ "op": "create", "path": "03_NOTES/themes and quire.toml.md", "content": "fine\n" }]),
    ));
    crate::harness::assert_applied(&r);
}

#[test]
fn the_operator_opens_selected_files_and_no_bundle_can_widen_that() {
    let v = target_vault();
    let cfg = v
        .read("quire.toml")
        .replace("allow = []", "allow = [\"themes/**\", \"quire.toml\"]");
    assert!(cfg.contains("themes/**"), "the template has an allow key");
    v.commit(&[("quire.toml", &cfg)], "open themes and the configuration");

    let theme = v.apply_one(&bundle(
        "theme",
        json!([{ "op": "create", "path": "themes/mine/theme.toml", "content": "name = \"mine\"\n" }]),
    ));
    crate::harness::assert_applied(&theme);
    let title = v.apply_one(&bundle(
        "title",
        json!([{ "op": "patch", "path": "quire.toml", "patch": [ { "op": "replace", "path": "/site/title", "value": "Ours" } ] }]),
    ));
    crate::harness::assert_applied(&title);
    assert!(v.read("quire.toml").contains("Ours"));

    for (name, changes, code) in [
        (
            "widen",
            json!([{ "op": "patch", "path": "quire.toml", "patch": [ { "op": "add", "path": "/contributions/allow/-", "value": "**" } ] }]),
            "protected_path",
        ),
        (
            "narrow",
            json!([{ "op": "patch", "path": "quire.toml", "patch": [ { "op": "replace", "path": "/contributions/allow", "value": [] } ] }]),
            "protected_path",
        ),
        (
            "remove",
            json!([{ "op": "delete", "path": "quire.toml" }]),
            "protected_path",
        ),
        (
            "invalid",
            json!([{ "op": "patch", "path": "quire.toml", "patch": [ { "op": "add", "path": "/publsh", "value": {} } ] }]),
            "patch_failed",
        ),
        // Opening quire.toml and themes does not open anything else.
        (
            "ignore",
            json!([{ "op": "delete", "path": ".gitignore" }]),
            "protected_path",
        ),
        (
            "logs",
            json!([{ "op": "create", "path": "07_LOGS/x.jsonl", "content": "{}\n" }]),
            "protected_path",
        ),
    ] {
        let b = bundle(name, changes);
        let r = refused(
            &v,
            &format!("{name}.json"),
            &serde_json::to_vec(&b).unwrap(),
            code,
        );
        assert_eq!(
            r.error
                .unwrap()
                .path
                .as_deref()
                .map(|p| p.ends_with(".toml") || p.starts_with('.') || p.starts_with("07")),
            Some(true)
        );
    }
}

#[test]
fn a_name_longer_than_file_systems_hold_is_refused_and_the_queue_moves_on() {
    let v = target_vault();
    let long = format!("03_NOTES/{}.md", "a".repeat(300));
    v.drop_json(
        "1-long.json",
        &bundle(
            "long",
            json!([{ "op": "create", "path": long, "content": "x\n" }]),
        ),
    );
    v.drop_json(
        "2-next.json",
        &bundle(
            "next",
            json!([{ "op": "create", "path": "03_NOTES/next.md", "content": "x\n" }]),
        ),
    );
    let (report, _) = v.apply();
    assert_rejected(&report.filed[0].receipt, "unsafe_path");
    let message = &report.filed[0].receipt.error.as_ref().unwrap().message;
    assert!(
        message.contains("303 bytes") && message.contains("255"),
        "{message}"
    );
    crate::harness::assert_applied(&report.filed[1].receipt);
    assert!(v.queue_names(Queue::Processing).is_empty());
    assert_eq!(v.status(), "");
}

#[test]
fn an_id_reused_for_other_content_is_refused_naming_the_first_commit() {
    let v = target_vault();
    let first = bundle(
        "once",
        json!([{ "op": "create", "path": "03_NOTES/once.md", "content": "first\n" }]),
    );
    let r = v.apply_one(&first);
    crate::harness::assert_applied(&r);
    let commit = r.commit.unwrap();

    let other = bundle(
        "once",
        json!([{ "op": "create", "path": "03_NOTES/other.md", "content": "second\n" }]),
    );
    let r = refused(
        &v,
        "again.json",
        &serde_json::to_vec(&other).unwrap(),
        "id_reused",
    );
    assert!(r.error.unwrap().message.contains(&commit));
    // The same bundle again is still only a duplicate.
    let r = v.apply_one(&first);
    assert_eq!(r.status, quire::contributions::Status::Duplicate);
    // Two bundles with one id in one run: the second is refused too.
    let a = bundle(
        "twice",
        json!([{ "op": "create", "path": "03_NOTES/t1.md", "content": "1\n" }]),
    );
    let b = bundle(
        "twice",
        json!([{ "op": "create", "path": "03_NOTES/t2.md", "content": "2\n" }]),
    );
    v.drop_json("t1.json", &a).drop_json("t2.json", &b);
    let (report, _) = v.apply();
    crate::harness::assert_applied(&report.filed[0].receipt);
    assert_rejected(&report.filed[1].receipt, "id_reused");
    assert!(!v.exists("03_NOTES/t2.md"));
}
