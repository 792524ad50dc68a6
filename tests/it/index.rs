//! The task index: what is indexed, the query commands and their JSON shapes, incremental updates,
//! a store that survives being old, new, corrupt or deleted, and two real vaults.

use std::path::Path;

use quire::index::{Index, StatusFilter, TaskFilter};
use quire::vault::Vault;
use serde_json::Value;

use crate::harness::{VaultTest, shared_dir_or_skip};

/// A vault with tasks in every place a task can be, and a few that are not tasks.
fn tasks_vault() -> VaultTest {
    let v = VaultTest::new();
    v.commit(
        &[
            (
                "02_PROJECTS/garden.md",
                "---\ntitle: Garden\ntags: [outdoors]\n---\n# Garden\n\n## Tasks\n- [ ] Order seeds 📅 2026-12-01 #garden\n- [x] Dig ✅ 2026-11-01 📅 2026-10-30\n- [/] Plan beds ⏫ 📅 2026-11-20 #garden/beds\n- [-] Greenhouse 📅 2026-11-15 ❌ 2026-11-02\n  - [ ] Nested 🔼 ⏳ 2026-11-21\n> - [ ] Quoted 📅 2026-11-22\n> [!todo]\n> - [ ] In a callout [due:: 2026-11-25] [priority:: low]\n\n```\n- [ ] not a task in code\n```\n",
            ),
            (
                "01_MISSIONS/m-1/mission.md",
                "---\nid: m-1\ntitle: First mission\nstatus: active\ndue: 2026-12-15\n---\n# First\n\n- [ ] Mission task 📅 2026-11-19\n- [x] Finished part ✅ 2026-11-10\n",
            ),
            ("01_MISSIONS/m-1/notes.md", "- [ ] Folder task 📅 2026-11-27\n"),
            ("03_NOTES/tagged.md", "---\nmission: m-2\n---\n- [ ] Front matter mission 🆔 abc ⛔ x,y 🔁 every week ^blk\n- [ ] Tag wins #mission/m-3\n"),
            ("03_NOTES/日本語 ノート.md", "\u{feff}---\r\ntitle: 日本語\r\n---\r\n- [ ] CRLF task 📅 2026-11-21\r\n"),
        ],
        "tasks",
    );
    v
}

fn json_of(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn texts(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn tasks_json_has_exactly_the_pinned_keys() {
    let v = tasks_vault();
    let all = json_of(&v.quire(&["tasks", "--status", "all", "--json"]));
    let tasks = all["tasks"].as_array().unwrap();
    // 13 here, and the template's Welcome note has one.
    assert_eq!(tasks.len(), 14, "{all:#}");
    for t in tasks {
        let keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "path",
                "line",
                "status",
                "text",
                "due",
                "scheduled",
                "start",
                "created",
                "done",
                "cancelled",
                "priority",
                "recurrence",
                "id",
                "depends_on",
                "tags",
                "mission",
                "heading",
                "block_id"
            ]
        );
    }
    let by_text = |s: &str| {
        tasks
            .iter()
            .find(|t| t["text"] == s)
            .unwrap_or_else(|| panic!("no task {s}"))
    };
    let t = by_text("Front matter mission");
    assert_eq!(t["id"], "abc");
    assert_eq!(t["depends_on"], serde_json::json!(["x", "y"]));
    assert_eq!(t["recurrence"], "every week");
    assert_eq!(t["block_id"], "blk");
    assert_eq!(t["mission"], "m-2");
    assert_eq!(t["due"], Value::Null);
    let t = by_text("Plan beds #garden/beds");
    assert_eq!(
        (t["status"].as_str(), t["priority"].as_str()),
        (Some("in_progress"), Some("high"))
    );
    assert_eq!(t["tags"], serde_json::json!(["garden/beds"]));
    assert_eq!(t["heading"], "Tasks");
    assert_eq!(t["line"], 10);
    assert_eq!(by_text("In a callout")["priority"], "low");
    assert_eq!(by_text("In a callout")["due"], "2026-11-25");
    assert_eq!(by_text("Nested")["scheduled"], "2026-11-21");
    assert_eq!(by_text("Greenhouse")["status"], "cancelled");
    assert_eq!(by_text("CRLF task")["path"], "03_NOTES/日本語 ノート.md");
    assert_eq!(by_text("CRLF task")["line"], 4);
    assert_eq!(by_text("Mission task")["mission"], "m-1");
    assert_eq!(by_text("Folder task")["mission"], "m-1");
    assert_eq!(by_text("Tag wins #mission/m-3")["mission"], "m-3");
    assert!(
        !texts(&all["tasks"])
            .iter()
            .any(|t| t.contains("not a task"))
    );
}

#[test]
fn every_filter_narrows() {
    let v = tasks_vault();
    let q = |args: &[&str]| {
        let mut all = vec!["tasks", "--json"];
        all.extend_from_slice(args);
        let mut t = texts(&json_of(&v.quire(&all))["tasks"]);
        t.sort();
        t
    };
    // Default: open (incl. in progress), ordered by due date, undated last.
    let open = texts(&json_of(&v.quire(&["tasks", "--json"]))["tasks"]);
    assert_eq!(open.first().map(String::as_str), Some("Mission task"));
    assert_eq!(open.len(), 11);
    assert!(
        open.iter()
            .rev()
            .take(3)
            .any(|t| t == "Front matter mission")
    );
    assert_eq!(q(&["--status", "done"]), ["Dig", "Finished part"]);
    assert_eq!(q(&["--status", "cancelled"]), ["Greenhouse"]);
    assert_eq!(q(&["--status", "in_progress"]), ["Plan beds #garden/beds"]);
    assert_eq!(
        q(&["--due-before", "2026-11-21"]),
        ["Mission task", "Plan beds #garden/beds"]
    );
    assert_eq!(
        q(&["--due-after", "2026-11-25"]),
        ["Folder task", "Order seeds #garden"]
    );
    assert_eq!(
        q(&["--tag", "garden"]),
        ["Order seeds #garden", "Plan beds #garden/beds"]
    );
    assert_eq!(q(&["--tag", "#GARDEN/beds"]), ["Plan beds #garden/beds"]);
    assert_eq!(q(&["--mission", "m-1"]), ["Folder task", "Mission task"]);
    assert_eq!(q(&["--path", "01_MISSIONS/**/notes.md"]), ["Folder task"]);
    assert_eq!(
        q(&["--path", "03_NOTES"]),
        ["CRLF task", "Front matter mission", "Tag wins #mission/m-3"]
    );
    assert_eq!(
        q(&[
            "--status",
            "all",
            "--mission",
            "m-1",
            "--due-before",
            "2026-11-20"
        ]),
        ["Mission task"]
    );
    // Bad input: a clear message, exit 2 for arguments.
    assert_eq!(
        v.quire(&["tasks", "--due-before", "next week"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        v.quire(&["tasks", "--status", "sleeping"]).status.code(),
        Some(2)
    );
    let out = v.quire(&["tasks", "--path", "[oops"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("glob"));
}

#[test]
fn human_output_is_an_aligned_table() {
    let v = tasks_vault();
    let out = v.quire(&["tasks"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("DUE") && lines[0].contains("TASK") && lines[0].contains("WHERE"));
    let col = lines[0].find("TASK").unwrap();
    assert!(
        lines[1..lines.len() - 1]
            .iter()
            .all(|l| l.chars().nth(col - 1) == Some(' '))
    );
    assert!(lines.last().unwrap().ends_with("11 tasks"));
}

#[test]
fn agenda_sorts_open_tasks_into_overdue_today_and_upcoming() {
    let v = tasks_vault();
    let a = json_of(&v.quire(&["agenda", "--today", "2026-11-21", "--json"]));
    assert_eq!(
        a.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["today", "days", "overdue", "today_tasks", "upcoming"]
    );
    assert_eq!(
        (a["today"].as_str(), a["days"].as_u64()),
        (Some("2026-11-21"), Some(7))
    );
    assert_eq!(
        texts(&a["overdue"]),
        ["Mission task", "Plan beds #garden/beds"]
    );
    assert_eq!(texts(&a["today_tasks"]), ["Nested", "CRLF task"]);
    assert_eq!(
        texts(&a["upcoming"]),
        ["Quoted", "In a callout", "Folder task"]
    );
    // Done and cancelled tasks never appear; --days widens the window.
    let a = json_of(&v.quire(&["agenda", "--today", "2026-11-21", "--days", "30", "--json"]));
    assert_eq!(
        texts(&a["upcoming"]).last().map(String::as_str),
        Some("Order seeds #garden")
    );
    let all: Vec<String> = ["overdue", "today_tasks", "upcoming"]
        .iter()
        .flat_map(|k| texts(&a[k]))
        .collect();
    assert!(!all.iter().any(|t| t == "Dig" || t == "Greenhouse"));
    let text = String::from_utf8(v.quire(&["agenda", "--today", "2026-11-21"]).stdout).unwrap();
    assert!(
        text.contains("Overdue (2)")
            && text.contains("Today, 2026-11-21 (2)")
            && text.contains("Upcoming, next 7 days (3)"),
        "{text}"
    );
}

#[test]
fn missions_count_their_tasks() {
    let v = tasks_vault();
    let m = json_of(&v.quire(&["missions", "--today", "2026-11-21", "--json"]));
    let list = m["missions"].as_array().unwrap();
    let ids: Vec<&str> = list.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["m-1", "m-2", "m-3"]);
    let m1 = &list[0];
    assert_eq!(m1["title"], "First mission");
    assert_eq!(m1["status"], "active");
    assert_eq!(m1["due"], "2026-12-15");
    assert_eq!(m1["path"], "01_MISSIONS/m-1/mission.md");
    assert_eq!(
        (
            m1["total"].as_u64(),
            m1["open"].as_u64(),
            m1["done"].as_u64()
        ),
        (Some(3), Some(2), Some(1))
    );
    assert_eq!(
        (m1["overdue"].as_u64(), m1["due_next_7_days"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(list[1]["path"], Value::Null);
    assert_eq!(list[1]["total"], 1);
}

#[test]
fn updates_are_incremental_and_follow_renames_and_deletes() {
    let v = tasks_vault();
    let vault = Vault::open(&v.root).unwrap();
    let mut index = Index::open(&vault).unwrap();
    let first = index.update(false).unwrap();
    assert_eq!((first.notes, first.parsed), (6, 6));
    // Nothing changed: nothing read.
    let again = index.update(false).unwrap();
    assert_eq!((again.parsed, again.touched, again.removed), (0, 0, 0));
    // Touched but the same bytes: only the stat data is updated.
    let p = v.path("02_PROJECTS/garden.md");
    let bytes = std::fs::read(&p).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&p, &bytes).unwrap();
    let touched = index.update(false).unwrap();
    assert_eq!((touched.parsed, touched.touched), (0, 1));
    // An edit: only that note is parsed, and the answer changes at once.
    std::fs::write(
        &p,
        String::from_utf8(bytes)
            .unwrap()
            .replace("Order seeds", "Order bulbs"),
    )
    .unwrap();
    let edited = index.update(false).unwrap();
    assert_eq!(edited.parsed, 1);
    let open = index.tasks(&TaskFilter::default()).unwrap();
    assert!(open.iter().any(|t| t.text == "Order bulbs #garden"));
    assert!(!open.iter().any(|t| t.text.starts_with("Order seeds")));
    // A rename: gone under the old path, present under the new one.
    std::fs::rename(
        v.path("01_MISSIONS/m-1/notes.md"),
        v.path("03_NOTES/moved.md"),
    )
    .unwrap();
    let renamed = index.update(false).unwrap();
    assert_eq!((renamed.parsed, renamed.removed), (1, 1));
    let folder = index
        .tasks(&TaskFilter {
            path: Some("03_NOTES/moved.md".into()),
            ..TaskFilter::default()
        })
        .unwrap();
    assert_eq!(folder.len(), 1);
    assert_eq!(
        folder[0].mission, None,
        "out of the mission folder, out of the mission"
    );
    // A delete.
    std::fs::remove_file(v.path("03_NOTES/moved.md")).unwrap();
    assert_eq!(index.update(false).unwrap().removed, 1);
    assert!(
        index
            .tasks(&TaskFilter {
                status: StatusFilter::All,
                ..TaskFilter::default()
            })
            .unwrap()
            .iter()
            .all(|t| t.text != "Folder task")
    );
    // --full re-reads everything and gives the same answers.
    let before = index
        .tasks_json(&TaskFilter {
            status: StatusFilter::All,
            ..TaskFilter::default()
        })
        .unwrap();
    assert_eq!(index.update(true).unwrap().parsed, 5);
    assert_eq!(
        index
            .tasks_json(&TaskFilter {
                status: StatusFilter::All,
                ..TaskFilter::default()
            })
            .unwrap(),
        before
    );
}

#[test]
fn queries_are_never_stale() {
    let v = tasks_vault();
    assert_eq!(
        json_of(&v.quire(&["tasks", "--json"]))["tasks"]
            .as_array()
            .unwrap()
            .len(),
        11
    );
    v.write("03_NOTES/new.md", "- [ ] Brand new 📅 2026-11-21\n");
    let tasks = json_of(&v.quire(&["tasks", "--json"]));
    assert!(texts(&tasks["tasks"]).contains(&"Brand new".to_owned()));
    let a = json_of(&v.quire(&["agenda", "--today", "2026-11-21", "--json"]));
    assert!(texts(&a["today_tasks"]).contains(&"Brand new".to_owned()));
}

#[test]
fn the_store_is_wal_and_rebuilt_when_deleted_old_newer_or_corrupt() {
    let v = tasks_vault();
    let expected = json_of(&v.quire(&["tasks", "--status", "all", "--json"]));
    let db = v.path(".quire/state.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert!(version >= 1);
    }
    // Deleted: rebuilt, same answers.
    std::fs::remove_dir_all(v.path(".quire")).unwrap();
    assert_eq!(
        json_of(&v.quire(&["tasks", "--status", "all", "--json"])),
        expected
    );
    // Written by a newer quire: set aside and rebuilt.
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("PRAGMA user_version = 999").unwrap();
    }
    assert_eq!(
        json_of(&v.quire(&["tasks", "--status", "all", "--json"])),
        expected
    );
    // Not a database at all.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::write(&db, b"this is not an SQLite file, just garbage to survive").unwrap();
    assert_eq!(
        json_of(&v.quire(&["tasks", "--status", "all", "--json"])),
        expected
    );
    let aside = std::fs::read_dir(v.path(".quire"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("unusable")
        })
        .count();
    assert!(
        aside >= 2,
        "unusable files are kept aside for a post mortem"
    );
    // An old schema version (0: an empty file someone created) is migrated.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE unrelated (x)")
        .unwrap();
    assert_eq!(
        json_of(&v.quire(&["tasks", "--status", "all", "--json"])),
        expected
    );
}

#[test]
fn bad_notes_are_reported_and_their_bodies_still_indexed() {
    let v = VaultTest::new();
    let mut bomb = String::from("---\nitems: &a [");
    bomb.push_str(&vec!["x"; 2000].join(","));
    bomb.push_str("]\nfan: [");
    bomb.push_str(&vec!["*a"; 2000].join(","));
    bomb.push_str("]\n---\n- [ ] Survives the bomb\n");
    v.write("03_NOTES/bomb.md", &bomb);
    v.write(
        "03_NOTES/broken-yaml.md",
        "---\ntitle: [unclosed\ntags: x\n---\n- [ ] Survives bad YAML 📅 2026-02-30\n",
    );
    v.write("03_NOTES/links.md", "[[Welcome]] [[welcome#Tasks]] [[Nowhere]] ![[missing.png]] [md](../00_INBOX/Welcome.md) [gone](gone.md)\n");
    v.write("03_NOTES/stranded.md", "- [ ] Pay rent 📅 soon\n");
    let tasks = json_of(&v.quire(&["tasks", "--json"]));
    let t = texts(&tasks["tasks"]);
    assert!(
        t.contains(&"Survives the bomb".to_owned()) && t.contains(&"Survives bad YAML".to_owned()),
        "{t:?}"
    );
    // The invalid date is kept as no date.
    let bad = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["text"] == "Survives bad YAML")
        .unwrap();
    assert_eq!(bad["due"], Value::Null);

    let out = v.quire(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = report["problems"].as_array().unwrap();
    let find = |code: &str, file: &str| {
        problems
            .iter()
            .filter(|p| p["code"] == code && p["file"] == file)
            .collect::<Vec<_>>()
    };
    let bomb_problem = find("bad_front_matter", "03_NOTES/bomb.md");
    assert_eq!(bomb_problem.len(), 1, "{problems:#?}");
    assert!(
        bomb_problem[0]["message"]
            .as_str()
            .unwrap()
            .contains("aliases")
    );
    let yaml = find("bad_front_matter", "03_NOTES/broken-yaml.md");
    assert_eq!(
        yaml[0]["line"], 2,
        "the line where the unclosed list begins: {:?}",
        yaml[0]
    );
    assert!(
        yaml[0]["message"]
            .as_str()
            .unwrap()
            .contains("line 2 column 8"),
        "{:?}",
        yaml[0]
    );
    let date = find("invalid_date", "03_NOTES/broken-yaml.md");
    assert_eq!(date[0]["line"], 5);
    assert!(date[0]["message"].as_str().unwrap().contains("2026-02-30"));
    let stranded = find("unparsed_field", "03_NOTES/stranded.md");
    assert_eq!(stranded[0]["line"], 1);
    assert!(
        stranded[0]["message"].as_str().unwrap().contains("📅 soon"),
        "{stranded:?}"
    );
    let broken: Vec<&str> = find("broken_link", "03_NOTES/links.md")
        .iter()
        .map(|p| p["message"].as_str().unwrap())
        .collect();
    assert_eq!(broken.len(), 3, "{broken:?}");
    assert!(
        broken[0].contains("Nowhere")
            && broken[1].contains("missing.png")
            && broken[2].contains("gone.md")
    );
    // Human output: file:line.
    let text = String::from_utf8(v.quire(&["check"]).stdout).unwrap();
    assert!(
        text.contains("03_NOTES/broken-yaml.md:5") && text.contains("invalid_date"),
        "{text}"
    );
}

#[test]
fn links_resolve_by_path_name_and_alias_case_insensitively() {
    let v = VaultTest::new();
    v.write(
        "02_PROJECTS/Alpha Plan.md",
        "---\naliases: [The Plan]\n---\n# Alpha\n",
    );
    v.write("03_NOTES/a/Same.md", "x\n");
    v.write("03_NOTES/b/Same.md", "x\n");
    v.write("05_RESOURCES/Diagram.PNG", "png\n");
    v.write(
        "03_NOTES/links.md",
        "[[alpha plan]] [[02_PROJECTS/Alpha Plan]] [[the plan]] [[Same]] [[b/same]] ![[diagram.png]] [r](../02_PROJECTS/Alpha%20Plan.md) [[#Local]]\n",
    );
    let out = v.quire(&["check", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["problems"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    assert!(out.status.success());

    // Backlinks: every link that resolves to the note, whatever way it was written.
    let vault = Vault::open(&v.root).unwrap();
    let (index, _) = Index::open_fresh(&vault).unwrap();
    assert_eq!(
        index.backlinks("02_PROJECTS/Alpha Plan.md").unwrap(),
        vec![("03_NOTES/links.md".to_owned(), 1); 4]
    );
    assert_eq!(index.backlinks("03_NOTES/b/Same.md").unwrap().len(), 1);
    assert_eq!(
        index.backlinks("05_RESOURCES/Diagram.PNG").unwrap().len(),
        1
    );
    assert!(
        index.backlinks("03_NOTES/links.md").unwrap().is_empty(),
        "links to its own headings are not backlinks"
    );
}

#[test]
fn index_command_reports_and_apply_keeps_the_index_current() {
    let v = tasks_vault();
    let r = json_of(&v.quire(&["index", "--json"]));
    assert_eq!(r["notes"], 6);
    assert_eq!(r["tasks"], 14);
    assert_eq!(
        json_of(&v.quire(&["index", "--json"]))["update"]["parsed"],
        0
    );
    assert_eq!(
        json_of(&v.quire(&["index", "--full", "--json"]))["update"]["parsed"],
        6
    );
    // A bundle that adds a task is visible in the index as soon as apply returns.
    let b = crate::harness::bundle(
        "add-task",
        serde_json::json!([{ "op": "patch", "path": "02_PROJECTS/garden.md", "body": [ { "append_under_heading": "Tasks", "content": "- [ ] From a bundle 📅 2026-11-23\n" } ] }]),
    );
    v.drop_json("b.json", &b);
    assert!(v.quire(&["apply"]).status.success());
    let vault = Vault::open(&v.root).unwrap();
    let index = Index::open(&vault).unwrap();
    assert!(
        index
            .tasks(&TaskFilter::default())
            .unwrap()
            .iter()
            .any(|t| t.text == "From a bundle")
    );
}

#[test]
fn calendar_parses_back_with_an_independent_icalendar_parser() {
    let v = tasks_vault();
    let out_path = v.tmp.path().join("tasks.ics");
    let out = v.quire(&["calendar", "--out", out_path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ics = std::fs::read_to_string(&out_path).unwrap();
    assert!(ics.contains("\r\n"), "RFC 5545 lines end in CRLF");
    let events = parse_ics(&ics, "VEVENT");
    // Every task with a due, scheduled or start date, open or closed.
    assert_eq!(events.len(), 10);
    let seeds = events
        .iter()
        .find(|e| e["SUMMARY"] == "Order seeds #garden")
        .unwrap();
    assert_eq!(seeds["DTSTART"], "20261201");
    assert_eq!(
        seeds["DTEND"], "20261202",
        "all-day events end the next day"
    );
    assert_eq!(seeds["CATEGORIES"], "garden");
    let uids: std::collections::HashSet<&String> = events.iter().map(|e| &e["UID"]).collect();
    assert_eq!(uids.len(), events.len(), "UIDs are unique");
    let greenhouse = events
        .iter()
        .find(|e| e["SUMMARY"] == "Greenhouse")
        .unwrap();
    assert_eq!(greenhouse["STATUS"], "CANCELLED");

    // Stable UIDs: reschedule, tick off and shift the task down; its UID does not change.
    let uid_before = seeds["UID"].clone();
    let p = v.path("02_PROJECTS/garden.md");
    let text = std::fs::read_to_string(&p).unwrap();
    let text = text
        .replace(
            "- [ ] Order seeds 📅 2026-12-01",
            "- [x] Order seeds 📅 2026-12-05 ✅ 2026-11-21",
        )
        .replacen("## Tasks\n", "## Tasks\nSome new prose above.\n\n", 1);
    std::fs::write(&p, text).unwrap();
    let ics = String::from_utf8(v.quire(&["calendar"]).stdout).unwrap();
    let events = parse_ics(&ics, "VEVENT");
    let seeds = events
        .iter()
        .find(|e| e["SUMMARY"] == "Order seeds #garden")
        .unwrap();
    assert_eq!(seeds["UID"], uid_before);
    assert_eq!(seeds["DTSTART"], "20261205");

    // The same input gives the same bytes.
    assert_eq!(v.quire(&["calendar"]).stdout, ics.as_bytes());

    // VTODO: statuses and completion.
    let ics = String::from_utf8(v.quire(&["calendar", "--kind", "todo"]).stdout).unwrap();
    let todos = parse_ics(&ics, "VTODO");
    let seeds = todos
        .iter()
        .find(|e| e["SUMMARY"] == "Order seeds #garden")
        .unwrap();
    assert_eq!(seeds["STATUS"], "COMPLETED");
    assert_eq!(seeds["DUE"], "20261205");
    assert_eq!(seeds["UID"], uid_before);
    let beds = todos
        .iter()
        .find(|e| e["SUMMARY"] == "Plan beds #garden/beds")
        .unwrap();
    assert_eq!(
        (beds["STATUS"].as_str(), beds["PRIORITY"].as_str()),
        ("IN-PROCESS", "3")
    );
}

#[test]
fn a_note_cannot_add_calendar_properties_with_control_characters() {
    let v = VaultTest::new();
    v.commit(
        &[(
            "03_NOTES/inject.md",
            "- [ ] a\rSUMMARY:INJECT\u{b}\u{1b}[2J 📅 2026-12-01\n- [ ] b\rBEGIN:VALARM 📅 2026-12-02\n",
        )],
        "a hostile note",
    );
    let ics = String::from_utf8(v.quire(&["calendar"]).stdout).unwrap();
    for (i, line) in ics.split("\r\n").enumerate() {
        assert!(
            !line.chars().any(|c| c.is_control() && c != '\t'),
            "line {i} holds a control character: {line:?}"
        );
        assert!(
            !line.starts_with("SUMMARY:INJECT") && !line.starts_with("BEGIN:VALARM"),
            "{line:?}"
        );
    }
    let events = parse_ics(&ics, "VEVENT");
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .any(|e| e["SUMMARY"].starts_with("a\\nSUMMARY:INJECT")),
        "{events:?}"
    );
}

/// Components of one kind, each as property name → value, read by the `ical` crate.
fn parse_ics(ics: &str, kind: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut reader = ical::IcalParser::new(std::io::BufReader::new(ics.as_bytes()));
    let cal = reader
        .next()
        .expect("one calendar")
        .expect("a valid calendar");
    assert!(reader.next().is_none());
    let props = |list: &[ical::property::Property]| {
        list.iter()
            .map(|p| (p.name.clone(), p.value.clone().unwrap_or_default()))
            .collect::<std::collections::HashMap<_, _>>()
    };
    match kind {
        "VEVENT" => cal.events.iter().map(|e| props(&e.properties)).collect(),
        _ => cal.todos.iter().map(|t| props(&t.properties)).collect(),
    }
}

/// Copies a folder into a new vault (the corpora are read-only and not vaults themselves).
fn vault_from(src: &Path) -> (tempfile::TempDir, Vault) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("v");
    copy_tree(src, &root);
    std::fs::write(root.join("quire.toml"), "").unwrap();
    let vault = Vault::open(&root).unwrap();
    (tmp, vault)
}

fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

#[test]
fn the_tasks_demo_vault_indexes_with_every_field_right() {
    let Some(shared) = shared_dir_or_skip("the_tasks_demo_vault_indexes_with_every_field_right")
    else {
        return;
    };
    let (_tmp, vault) =
        vault_from(&shared.join("corpora/obsidian-tasks/resources/sample_vaults/Tasks-Demo"));
    let mut index = Index::open(&vault).unwrap();
    let report = index.update(false).unwrap();
    assert!(report.notes >= 200, "{report:?}");
    let all = index
        .tasks(&TaskFilter {
            status: StatusFilter::All,
            ..TaskFilter::default()
        })
        .unwrap();
    assert!(all.len() > 900, "{}", all.len());
    let in_file = |file: &str| -> Vec<&quire::index::TaskView> {
        all.iter().filter(|t| t.path == file).collect()
    };

    // The emoji and Dataview samples of the same tasks read the same, field by field.
    let emoji = in_file("Formats/Tasks Format.md");
    let dataview = in_file("Formats/Dataview Format.md");
    assert!(emoji.len() >= 15);
    let strip = |t: &quire::index::TaskView| {
        let mut t = t.clone();
        t.path.clear();
        t.line = 0;
        t.heading = t.heading.map(|h| h.replace("Dataview", "Tasks"));
        t
    };
    for e in &emoji {
        let twin = dataview
            .iter()
            .find(|d| d.text == e.text)
            .unwrap_or_else(|| panic!("no Dataview twin for {:?}", e.text));
        assert_eq!(strip(twin), strip(e), "{}", e.text);
    }
    let by = |text: &str| {
        emoji
            .iter()
            .find(|t| t.text == text)
            .unwrap_or_else(|| panic!("{text}"))
    };
    assert_eq!(
        by("#task Has a due date").due.as_deref(),
        Some("2023-04-16")
    );
    assert_eq!(
        by("#task Has a done date").done.as_deref(),
        Some("2023-04-17")
    );
    assert_eq!(by("#task Has a cancelled date").status, "cancelled");
    assert_eq!(
        by("#task Highest priority").priority.as_deref(),
        Some("highest")
    );
    assert_eq!(
        by("#task Lowest priority").priority.as_deref(),
        Some("lowest")
    );
    assert_eq!(
        by("#task Is a recurring task").recurrence.as_deref(),
        Some("every day when done")
    );
    assert_eq!(by("#task do this first").id.as_deref(), Some("dcf64c"));
    assert_eq!(
        by("#task do this after first and some other task").depends_on,
        ["dcf64c", "0h17ye"]
    );

    // Somewhere in the vault: every field at once.
    let every = all
        .iter()
        .find(|t| t.text == "#task Task with every field set")
        .expect("the every-field sample");
    assert_eq!(every.status, "in_progress");
    assert_eq!(
        (every.id.as_deref(), every.priority.as_deref()),
        (Some("y3yryw"), Some("highest"))
    );
    assert_eq!(every.depends_on, ["c5mw2c", "2ypqea"]);
    assert_eq!(
        every.recurrence.as_deref(),
        Some("every April and December on the 1st and 24th")
    );
    assert_eq!(
        (
            every.created.as_deref(),
            every.start.as_deref(),
            every.scheduled.as_deref(),
            every.due.as_deref()
        ),
        (
            Some("2024-04-27"),
            Some("2024-04-28"),
            Some("2024-04-29"),
            Some("2024-04-30")
        )
    );
    // Task lines inside fenced code blocks (the Tasks query examples) are never tasks.
    assert!(
        all.iter()
            .all(|t| !t.text.starts_with("not done") && !t.text.contains("path includes"))
    );
}

#[test]
fn the_dataview_test_vault_indexes_with_its_fields() {
    let Some(shared) = shared_dir_or_skip("the_dataview_test_vault_indexes_with_its_fields") else {
        return;
    };
    let (_tmp, vault) = vault_from(&shared.join("corpora/obsidian-dataview/test-vault"));
    let mut index = Index::open(&vault).unwrap();
    index.update(false).unwrap();
    let all = index
        .tasks(&TaskFilter {
            status: StatusFilter::All,
            ..TaskFilter::default()
        })
        .unwrap();
    let by = |text: &str| {
        all.iter().find(|t| t.text == text).unwrap_or_else(|| {
            panic!(
                "no task {text:?} in {:#?}",
                all.iter().map(|t| &t.text).collect::<Vec<_>>()
            )
        })
    };
    let t = by("Completed task");
    assert_eq!(
        (t.status.as_str(), t.done.as_deref(), t.due.as_deref()),
        ("done", Some("2021-08-06"), Some("2021-08-07"))
    );
    let t = by("Normal task, tags inherited from page");
    assert_eq!(t.done.as_deref(), Some("2021-10-23"));
    // An unknown Dataview field stays in the text; a known one is read.
    let t = by("task with [annotation::arbitrary]");
    assert_eq!(t.done.as_deref(), Some("2021-10-23"));
    assert!(
        index
            .problems()
            .unwrap()
            .iter()
            .all(|p| p.code != "bad_front_matter"),
        "{:?}",
        index.problems().unwrap()
    );
}

#[test]
fn a_crash_during_a_full_rebuild_is_recovered() {
    let v = tasks_vault();
    let expected = json_of(&v.quire(&["tasks", "--status", "all", "--json"]));
    // Killed after writing a few notes of a journal-less full rebuild.
    let out = v.quire_env(&["index", "--full"], &[("QUIRE_CRASH_AT", "index_write:3")]);
    assert!(!out.status.success());
    // The half-written file is recognised and rebuilt; the answers are whole.
    assert_eq!(
        json_of(&v.quire(&["tasks", "--status", "all", "--json"])),
        expected
    );
    let conn = rusqlite::Connection::open(v.path(".quire/state.db")).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_full_rebuild_beside_another_reader_keeps_the_journal() {
    let v = tasks_vault();
    let expected = json_of(&v.quire(&["tasks", "--status", "all", "--json"]));
    // A reader (a daemon, say) holds the database open: the rebuild must not leave WAL mode.
    let reader = rusqlite::Connection::open(v.path(".quire/state.db")).unwrap();
    let before: i64 = reader
        .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .unwrap();
    let out = v.quire(&["index", "--full"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode: String = reader
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let after: i64 = reader
        .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(
        json_of(&v.quire(&["tasks", "--status", "all", "--json"])),
        expected
    );
}
