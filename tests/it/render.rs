//! Rendering: every kind of page, the publishing rules and the sanitizer, link integrity over whole
//! sites, determinism, incremental and atomic publishing, themes (broken, vault-local), and
//! rendering a commit from Git objects.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use quire::render::{self, Content, Quiet, RenderReport};

use crate::harness::VaultTest;

/// A vault with something of everything a site shows.
pub(crate) fn rich_vault() -> VaultTest {
    let t = VaultTest::new();
    t.write(
        "02_PROJECTS/Garden Plan.md",
        "---\ntitle: Garden plan\ntags: [garden, planning/spring]\ndate: 2026-03-01\naliases: [Beds]\n---\n\
         # Garden plan\n\nSee [[Seed List]] and [[Seed List#Tomatoes|the tomatoes]], a [[Nowhere]] link, \
         and [the area](../04_AREAS/Home.md).\n\n> [!tip] Water early\n> Mornings are cooler.\n\n\
         ![[photo.png]]\n\n![[Seed List#Tomatoes]]\n\n```rust\nfn main() { let x = 1; }\n```\n\n\
         - [ ] Dig the beds 📅 2026-04-02 #garden\n- [x] Order seeds ✅ 2026-02-01\n- [/] Build the fence\n\n\
         | a | b |\n|---|---|\n| 1 | 2 |\n\n## Notes\n\nA footnote.[^1]\n\n[^1]: The note.\n\n## Later\n\n~~old~~ text #idea ^later-block\n",
    );
    t.write(
        "02_PROJECTS/Seed List.md",
        "# Seed List\n\n## Tomatoes\n\nRoma and cherry.\n\n- [ ] Buy tomatoes 📅 2026-03-20\n",
    );
    t.write("04_AREAS/Home.md", "# Home\n\nBack to [[Beds]].\n");
    t.write("02_PROJECTS/photo.png", "\u{89}PNG fake image bytes");
    t.write("02_PROJECTS/unused.pdf", "never linked");
    t.write(
        "01_MISSIONS/m-1/mission.md",
        "---\nid: m-1\ntitle: Launch\nstatus: active\ndue: 2026-05-01\n---\n# Launch\n\n- [ ] Ship it 📅 2026-04-30\n- [x] Plan it\n",
    );
    t.write(
        "03_NOTES/Draft.md",
        "---\ndraft: true\n---\n# Draft\n\nsecret draft text\n",
    );
    t.write(
        "03_NOTES/Hidden.md",
        "---\npublish: false\n---\n# Hidden\n\nsecret hidden text\n",
    );
    t.write("00_INBOX/Capture.md", "# Capture\n\nsecret inbox text\n");
    t.write(
        "03_NOTES/private/Diary.md",
        "# Diary\n\nsecret diary text\n",
    );
    t.write(
        "03_NOTES/Raw.md",
        "# Raw\n\n<div onclick=\"steal()\">hi <b>bold</b></div>\n\n<script>alert('x')</script>\n\n\
         [bad](javascript:alert(1)) <a href=\"javascript:alert(2)\">a</a> <iframe src=\"https://e.org\"></iframe>\n\n\
         <details><summary>More</summary>kept</details>\n",
    );
    t.write(
        "tags.md",
        "# Tags\n\nthis note's URL is taken by the tags index\n",
    );
    t.write(".env", "QUIRE_TOKEN=supersecret\n");
    t.write(
        "03_NOTES/.hidden-note.md",
        "# Dotfile\n\nsecret dotfile text\n",
    );
    t
}

pub(crate) fn render_theme(t: &VaultTest, theme: &str) -> RenderReport {
    render_into(t, theme, &t.path("_site"))
}

fn render_into(t: &VaultTest, theme: &str, out: &Path) -> RenderReport {
    let content = Content::work_tree(&t.vault()).unwrap();
    let mut reports = render::render(&content, &[theme.to_owned()], out, &Quiet).unwrap();
    reports.remove(0)
}

/// Every file of a site, relative path → bytes (the build manifest left out).
fn site_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(dir) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel != ".quire-build.json" {
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

fn text(files: &BTreeMap<String, Vec<u8>>, path: &str) -> String {
    String::from_utf8(
        files
            .get(path)
            .unwrap_or_else(|| panic!("no {path} in the site"))
            .clone(),
    )
    .unwrap()
}

#[test]
fn renders_every_kind_of_page() {
    let t = rich_vault();
    let report = render_theme(&t, "paper");
    assert!(report.changed);
    let site = site_files(&t.path("_site/paper"));
    for page in [
        "index.html",
        "404.html",
        "02_projects/garden-plan/index.html",
        "02_projects/seed-list/index.html",
        "02_projects/index.html",
        "04_areas/home/index.html",
        "01_missions/m-1/mission/index.html",
        "tags/index.html",
        "tags/garden/index.html",
        "tags/planning/index.html",
        "tags/planning/spring/index.html",
        "tags/idea/index.html",
        "tasks/index.html",
        "tasks/2026-04/index.html",
        "tasks/undated/index.html",
        "agenda/index.html",
        "calendar/index.html",
        "calendar/2026-04/index.html",
        "missions/index.html",
        "missions/m-1/index.html",
        "search.json",
        "sitemap.xml",
        "feed.xml",
        "static/tokens.css",
        "static/quire.css",
        "static/quire.js",
        "static/theme.css",
        "02_PROJECTS/photo.png",
    ] {
        assert!(
            site.contains_key(page),
            "{page} missing; the site has {:?}",
            site.keys().collect::<Vec<_>>()
        );
    }

    let garden = text(&site, "02_projects/garden-plan/index.html");
    assert!(garden.contains("<html lang=\"en\">"), "lang");
    assert!(garden.contains("<main id=\"main\""), "main landmark");
    assert!(
        garden.contains("href=\"../seed-list/\">Seed List</a>"),
        "wikilink: {garden}"
    );
    assert!(
        garden.contains("href=\"../seed-list/#tomatoes\">the tomatoes</a>"),
        "heading link"
    );
    assert!(
        garden.contains("class=\"wikilink broken\""),
        "broken link marked"
    );
    assert!(
        garden.contains("href=\"../../04_areas/home/\""),
        "Markdown link to a note"
    );
    assert!(garden.contains("data-callout=\"tip\""), "callout");
    assert!(
        garden.contains("<img src=\"../../02_PROJECTS/photo.png\""),
        "image embed"
    );
    assert!(
        garden.contains("<div class=\"embed\">") && garden.contains("Roma and cherry"),
        "note transcluded"
    );
    assert!(
        garden.contains("<span class=\"hl-kw\">fn</span>"),
        "highlighted code"
    );
    assert!(
        garden.contains("<table>") && garden.contains("footnote"),
        "tables and footnotes"
    );
    assert!(garden.contains("<del>old</del>"), "strikethrough");
    assert!(garden.contains("id=\"later\""), "heading anchor");
    assert!(garden.contains("id=\"^later-block\""), "block id anchor");
    assert!(garden.contains("class=\"toc\""), "table of contents");
    assert!(
        garden.contains("data-task=\"/\""),
        "in-progress task status"
    );
    assert!(
        !garden.contains("<h1 id=\"garden-plan\""),
        "the note's own `# Garden plan` is not shown twice"
    );
    assert!(
        !garden.contains("<p><div"),
        "a transcluded note is a block of its own"
    );
    let home = text(&site, "04_areas/home/index.html");
    assert!(
        home.contains("href=\"../../02_projects/garden-plan/\">Beds</a>"),
        "alias resolved"
    );
    let seeds = text(&site, "02_projects/seed-list/index.html");
    assert!(
        seeds.contains("Linked from") && seeds.contains("Garden plan</a>"),
        "backlinks"
    );
    let mission = text(&site, "missions/m-1/index.html");
    assert!(
        mission.contains("Launch") && mission.contains("Ship it"),
        "mission page with its tasks"
    );
    assert!(
        text(&site, "tags/planning/index.html").contains("#planning/spring"),
        "nested tags listed"
    );
    assert!(
        text(&site, "calendar/2026-04/index.html").contains("Dig the beds"),
        "calendar month"
    );
    assert!(
        text(&site, "tasks/2026-04/index.html").contains("Dig the beds"),
        "tasks by due month"
    );
    assert_eq!(report.broken_links, 1);
}

#[test]
fn publishing_rules_keep_private_notes_and_secrets_out() {
    let t = rich_vault();
    let report = render_theme(&t, "paper");
    let site = site_files(&t.path("_site/paper"));
    for (path, bytes) in &site {
        let s = String::from_utf8_lossy(bytes);
        for secret in [
            "secret draft",
            "secret hidden",
            "secret inbox",
            "secret diary",
            "secret dotfile",
            "supersecret",
        ] {
            assert!(!s.contains(secret), "{secret} leaked into {path}");
        }
        assert!(
            !path.contains(".env") && !path.contains("unused.pdf"),
            "{path} should not be in the site"
        );
    }
    // Links to notes that are not published are not links.
    assert!(report.unpublished.contains_key("03_NOTES/Draft.md"));
    assert!(report.unpublished.contains_key("03_NOTES/Hidden.md"));
    assert!(report.unpublished.contains_key("00_INBOX/Capture.md"));
    assert!(
        report.unpublished["tags.md"].contains("built-in `tags/` page"),
        "{:?}",
        report.unpublished
    );
    // The URL clash is reported by the CLI, on stderr.
    let out = t.quire(&["render"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tags.md is not published"));
}

#[test]
fn raw_html_is_sanitized() {
    let t = rich_vault();
    render_theme(&t, "paper");
    let raw = std::fs::read_to_string(t.path("_site/paper/03_notes/raw/index.html")).unwrap();
    let body = raw.split("<div class=\"note-content\">").nth(1).unwrap();
    for bad in ["onclick", "<script", "alert(", "javascript:", "<iframe"] {
        assert!(!body.contains(bad), "{bad} survived: {body}");
    }
    assert!(
        body.contains("<b>bold</b>") && body.contains("<details>"),
        "harmless HTML kept: {body}"
    );
}

/// Every `href` and `src` of every page leads to a file of the site, and every `#fragment` to an
/// element with that id.
fn assert_links_resolve(dir: &Path) -> usize {
    let attr = regex::Regex::new(r#"(?:href|src)="([^"]*)""#).unwrap();
    let ids = regex::Regex::new(r#"id="([^"]*)""#).unwrap();
    let mut checked = 0;
    let site = site_files(dir);
    let ids_of = |path: &str| -> Vec<String> {
        let html = String::from_utf8_lossy(&site[path]).into_owned();
        ids.captures_iter(&html).map(|c| unescape(&c[1])).collect()
    };
    for (path, bytes) in site.iter().filter(|(p, _)| p.ends_with(".html")) {
        let html = String::from_utf8_lossy(bytes);
        for cap in attr.captures_iter(&html) {
            let link = unescape(&cap[1]);
            if link.contains("://") || link.starts_with("mailto:") || link.starts_with("tel:") {
                continue;
            }
            let (target, fragment) = match link.split_once('#') {
                Some((t, f)) => (t.to_owned(), Some(f.to_owned())),
                None => (link.clone(), None),
            };
            // The 404 page is served at any depth; its links start at the base URL (`/`).
            let base: PathBuf = if target.starts_with('/') {
                PathBuf::new()
            } else {
                Path::new(path).parent().unwrap().to_path_buf()
            };
            let resolved = if target.is_empty() {
                path.clone()
            } else {
                let joined = normalize(&base.join(target.trim_start_matches('/')));
                let decoded = percent_encoding::percent_decode_str(&joined)
                    .decode_utf8()
                    .unwrap()
                    .into_owned();
                if decoded.is_empty() || decoded.ends_with('/') {
                    format!("{decoded}index.html")
                } else {
                    decoded
                }
            };
            assert!(
                site.contains_key(&resolved),
                "{path}: `{link}` leads to {resolved}, which is not in the site"
            );
            if let Some(f) = fragment.filter(|f| !f.is_empty()) {
                let f = percent_encoding::percent_decode_str(&f)
                    .decode_utf8()
                    .unwrap()
                    .into_owned();
                if resolved.ends_with(".html") {
                    assert!(
                        ids_of(&resolved).contains(&f),
                        "{path}: `{link}`: {resolved} has no id `{f}`"
                    );
                }
            }
            checked += 1;
        }
    }
    checked
}

fn unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

/// `a/b/../c` → `a/c` (without touching the file system).
fn normalize(p: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                assert!(
                    parts.pop().is_some(),
                    "{} climbs out of the site",
                    p.display()
                );
            }
            std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    let mut out = parts.join("/");
    if p.to_string_lossy().ends_with('/') && !out.is_empty() {
        out.push('/');
    }
    out
}

#[test]
fn every_internal_link_resolves_in_every_theme() {
    let t = rich_vault();
    for theme in ["paper", "desk", "base"] {
        render_theme(&t, theme);
        let checked = assert_links_resolve(&t.path(&format!("_site/{theme}")));
        assert!(checked > 200, "{theme}: only {checked} links checked");
    }
}

#[test]
fn the_demo_vault_renders_with_intact_links() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("demo");
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
    quire::workflow::demo(&root, today, &mut Vec::new(), &mut ()).unwrap();
    let vault = quire::vault::Vault::open(&root).unwrap();
    let content = Content::work_tree(&vault).unwrap();
    let out = root.join("_site");
    render::render(&content, &["paper".into(), "desk".into()], &out, &Quiet).unwrap();
    assert!(assert_links_resolve(&out.join("paper")) > 50);
    assert!(assert_links_resolve(&out.join("desk")) > 50);
}

#[test]
fn the_same_content_renders_byte_identical_sites() {
    let t = rich_vault();
    let a = t.tmp.path().join("a");
    let b = t.tmp.path().join("b");
    render_into(&t, "paper", &a);
    // A rebuilt index (new id, other insertion order) must not change a byte.
    std::fs::remove_dir_all(t.path(".quire")).unwrap();
    render_into(&t, "paper", &b);
    let (sa, sb) = (site_files(&a.join("paper")), site_files(&b.join("paper")));
    assert_eq!(sa.keys().collect::<Vec<_>>(), sb.keys().collect::<Vec<_>>());
    for (path, bytes) in &sa {
        assert!(
            bytes == &sb[path],
            "{path} differs between two renders of the same content"
        );
    }
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

#[test]
fn unchanged_content_writes_nothing_and_one_edit_rerenders_its_dependents() {
    let t = rich_vault();
    let first = render_theme(&t, "paper");
    let site = t.path("_site/paper");
    let seeds = site.join("02_projects/seed-list/index.html");
    let home = site.join("04_areas/home/index.html");
    let (seeds_ino, home_ino) = (inode(&seeds), inode(&home));

    let again = render_theme(&t, "paper");
    assert!(!again.changed, "{again:?}");
    assert_eq!((again.rendered, again.written), (0, 0));
    assert_eq!(
        (inode(&seeds), inode(&home)),
        (seeds_ino, home_ino),
        "nothing was replaced"
    );

    // A change to one note's text: its page, and the page that transcludes it.
    let body = t.read("02_PROJECTS/Seed List.md");
    t.write(
        "02_PROJECTS/Seed List.md",
        &body.replace("Roma and cherry.", "Roma, cherry and San Marzano."),
    );
    let edit = render_theme(&t, "paper");
    assert!(edit.changed);
    assert!(
        edit.rendered <= 3,
        "only the note and the note embedding it: {edit:?}"
    );
    assert!(
        std::fs::read_to_string(&seeds)
            .unwrap()
            .contains("San Marzano")
    );
    assert!(
        std::fs::read_to_string(site.join("02_projects/garden-plan/index.html"))
            .unwrap()
            .contains("San Marzano")
    );
    assert_eq!(
        inode(&home),
        home_ino,
        "an unrelated page is the same file, not a copy"
    );
    assert!(edit.rendered < first.rendered);

    // A new title shows on the pages that link back to it.
    let body = t.read("04_AREAS/Home.md");
    t.write(
        "04_AREAS/Home.md",
        &format!("---\ntitle: Our home\n---\n{body}"),
    );
    render_theme(&t, "paper");
    let garden = std::fs::read_to_string(site.join("02_projects/garden-plan/index.html")).unwrap();
    assert!(garden.contains("Our home"), "backlinks show the new title");
}

#[test]
fn a_removed_note_disappears_from_the_site() {
    let t = rich_vault();
    render_theme(&t, "paper");
    render_theme(&t, "paper");
    std::fs::remove_file(t.path("04_AREAS/Home.md")).unwrap();
    let report = render_theme(&t, "paper");
    let site = site_files(&t.path("_site/paper"));
    assert!(!site.contains_key("04_areas/home/index.html"));
    assert!(!text(&site, "search.json").contains("04_areas/home/"));
    assert!(!text(&site, "sitemap.xml").contains("04_areas/home/"));
    assert!(report.removed >= 1 || report.written > 0);
    assert_links_resolve(&t.path("_site/paper"));
}

#[test]
fn a_crash_while_publishing_leaves_the_previous_site_whole() {
    let t = rich_vault();
    assert!(t.quire(&["render"]).status.success());
    let before = site_files(&t.path("_site/paper"));
    t.write("04_AREAS/Home.md", "# Home\n\nRewritten.\n");
    for point in ["render_file:1", "render_swap"] {
        let out = t.quire_env(&["render"], &[("QUIRE_CRASH_AT", point)]);
        assert!(
            !out.status.success(),
            "{point}: the crash point was not reached"
        );
        assert_eq!(
            site_files(&t.path("_site/paper")),
            before,
            "{point}: the live site changed"
        );
    }
    let out = t.quire(&["render"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = std::fs::read_to_string(t.path("_site/paper/04_areas/home/index.html")).unwrap();
    assert!(after.contains("Rewritten."));
    assert_links_resolve(&t.path("_site/paper"));
}

#[test]
fn a_broken_theme_fails_with_file_and_line_before_anything_is_written() {
    let t = rich_vault();
    t.write(
        "themes/broken/theme.toml",
        "name = \"broken\"\nextends = \"paper\"\n",
    );
    t.write(
        "themes/broken/templates/note.html",
        "{% extends \"base.html\" %}\n{% block main %}\n{{ note.title \n{% endblock main %}\n",
    );
    let out = t.quire(&["render", "--theme", "broken"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("themes/broken/templates/note.html:4"), "{err}");
    assert!(!t.exists("_site/broken"), "nothing written");

    t.write("themes/tokens/theme.toml", "name = \"tokens\"\n");
    t.write(
        "themes/tokens/tokens.json",
        "{\n  \"color\": {\n    \"bg\": \"#fff\",\n  }\n}\n",
    );
    let err =
        String::from_utf8_lossy(&t.quire(&["render", "--theme", "tokens"]).stderr).into_owned();
    assert!(
        err.contains("themes/tokens/tokens.json") && err.contains(":4"),
        "{err}"
    );

    t.write(
        "themes/orphan/theme.toml",
        "name = \"orphan\"\nextends = \"nonesuch\"\n",
    );
    let err =
        String::from_utf8_lossy(&t.quire(&["render", "--theme", "orphan"]).stderr).into_owned();
    assert!(err.contains("no theme `nonesuch`"), "{err}");

    // All themes are checked before any is rendered.
    let out = t.quire(&["render", "--all"]);
    assert!(out.status.success(), "paper alone is configured");
    t.write("quire.toml", "[site]\nthemes = [\"paper\", \"broken\"]\n");
    std::fs::remove_dir_all(t.path("_site")).unwrap();
    assert_eq!(t.quire(&["render", "--all"]).status.code(), Some(1));
    assert!(!t.exists("_site/paper"), "paper was not rendered either");

    let err = String::from_utf8_lossy(&t.quire(&["render", "--theme", "nope"]).stderr).into_owned();
    assert!(
        err.contains("there is no theme `nope`") && err.contains("paper"),
        "{err}"
    );
}

#[test]
fn a_vault_theme_overrides_the_built_in_one_of_its_name() {
    let t = rich_vault();
    t.write(
        "themes/paper/theme.toml",
        "name = \"paper\"\nversion = \"9.0.0\"\nextends = \"paper\"\n",
    );
    t.write(
        "themes/paper/templates/note.html",
        "{% extends \"base.html\" %}{% block main %}<p class=\"mine\">{{ note.title }}</p>{{ note.content | safe }}{% endblock main %}",
    );
    t.write(
        "themes/paper/tokens.json",
        "{\"color\": {\"accent\": \"#123456\"}}",
    );
    let out = t.quire(&["themes", "--json"]);
    let themes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let paper = themes["themes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "paper")
        .unwrap();
    assert_eq!(paper["origin"], "vault");
    assert_eq!(paper["version"], "9.0.0");
    assert_eq!(paper["overrides_builtin"], true);

    render_theme(&t, "paper");
    let page = std::fs::read_to_string(t.path("_site/paper/04_areas/home/index.html")).unwrap();
    assert!(page.contains("<p class=\"mine\">Home</p>"), "{page}");
    let tokens = std::fs::read_to_string(t.path("_site/paper/static/tokens.css")).unwrap();
    assert!(
        tokens.contains("--color-accent: #123456;"),
        "vault token wins"
    );
    assert!(
        tokens.contains("--color-bg: #fbf8f2;"),
        "the built-in paper's other tokens stay"
    );
    assert!(tokens.contains("@media (prefers-color-scheme: dark)"));
}

#[test]
fn render_ref_reads_a_commit_without_touching_the_work_tree() {
    let t = rich_vault();
    t.commit(&[], "content");
    t.write(
        "04_AREAS/Home.md",
        "# Home\n\nAn edit that is not committed.\n",
    );
    let status = t.status();
    let out_dir = t.tmp.path().join("from-git");
    let out = t.quire(&[
        "render",
        "--ref",
        "HEAD",
        "--out",
        out_dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        json["source"].as_str().unwrap().starts_with("commit "),
        "{json}"
    );
    let home = std::fs::read_to_string(out_dir.join("paper/04_areas/home/index.html")).unwrap();
    assert!(home.contains("Back to") && !home.contains("not committed"));
    assert_eq!(t.status(), status, "the work tree is as it was");
    assert!(!t.exists("_site"), "nothing rendered into the vault");
    let site = site_files(&out_dir.join("paper"));
    assert!(
        !site.keys().any(|k| k.contains("draft")),
        "publishing rules apply to commits too"
    );
    assert_links_resolve(&out_dir.join("paper"));

    let bad = t.quire(&["render", "--ref", "no-such-branch"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("names no commit"));
}

#[test]
fn render_json_reports_each_theme() {
    let t = rich_vault();
    t.write(
        "quire.toml",
        "[site]\ntitle = \"Ours\"\nthemes = [\"paper\", \"desk\"]\n",
    );
    let out = t.quire(&["render", "--all", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let themes = json["themes"].as_array().unwrap();
    assert_eq!(
        themes
            .iter()
            .map(|t| t["theme"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["paper", "desk"]
    );
    for theme in themes {
        assert!(theme["pages"].as_u64().unwrap() > 20);
        assert_eq!(theme["changed"], true);
    }
    let index = std::fs::read_to_string(t.path("_site/desk/index.html")).unwrap();
    assert!(
        index.contains("<title>Ours · Mission control</title>"),
        "site title from quire.toml"
    );
}

/// Whatever way a render takes after a change — the quick one for edits that change only notes'
/// own pages, or page-by-page keys — the site is byte for byte the one a render from scratch
/// makes of the same content.
#[test]
fn incremental_renders_equal_renders_from_scratch() {
    let t = rich_vault();
    render_theme(&t, "paper");
    render_theme(&t, "paper");
    // (what, the edit, whether only the edited notes need reading)
    type Edit = (&'static str, Box<dyn Fn(&VaultTest)>, bool);
    let edits: Vec<Edit> = vec![
        (
            "a body edit",
            Box::new(|t| {
                let body = t.read("04_AREAS/Home.md");
                t.write(
                    "04_AREAS/Home.md",
                    &format!("{body}\nA new paragraph, *emphasised*.\n"),
                );
            }),
            true,
        ),
        (
            "a new link",
            Box::new(|t| {
                let body = t.read("04_AREAS/Home.md");
                t.write(
                    "04_AREAS/Home.md",
                    &format!("{body}\nAnd [[Seed List]] again.\n"),
                );
            }),
            false,
        ),
        (
            "a transcluded note's edit",
            Box::new(|t| {
                let body = t.read("02_PROJECTS/Seed List.md");
                t.write(
                    "02_PROJECTS/Seed List.md",
                    &body.replace("Roma and cherry.", "Roma, cherry and plum."),
                );
            }),
            true,
        ),
        (
            "a new heading",
            Box::new(|t| {
                let body = t.read("03_NOTES/Raw.md");
                t.write(
                    "03_NOTES/Raw.md",
                    &format!("{body}\n## Added\n\nMore words.\n"),
                );
            }),
            true,
        ),
        (
            "a new image",
            Box::new(|t| {
                let body = t.read("03_NOTES/Raw.md");
                t.write("03_NOTES/Raw.md", &format!("{body}\n![[photo.png]]\n"));
            }),
            false,
        ),
        (
            "a task edit",
            Box::new(|t| {
                let body = t.read("02_PROJECTS/Seed List.md");
                t.write(
                    "02_PROJECTS/Seed List.md",
                    &body.replace("📅 2026-03-20", "📅 2026-03-27"),
                );
            }),
            false,
        ),
        (
            "a title edit",
            Box::new(|t| {
                t.write(
                    "04_AREAS/Home.md",
                    "---\ntitle: The house\n---\n# Home\n\nBack to [[Beds]].\n",
                );
            }),
            false,
        ),
        (
            "a new note",
            Box::new(|t| {
                t.write(
                    "04_AREAS/Shed.md",
                    "# Shed\n\nSee [[Nowhere]] — now [[Garden plan]].\n",
                );
            }),
            false,
        ),
        (
            "a note that now fixes a broken link",
            Box::new(|t| {
                t.write("Nowhere.md", "# Nowhere\n\nFound.\n");
            }),
            false,
        ),
        (
            "a removed note",
            Box::new(|t| std::fs::remove_file(t.path("04_AREAS/Shed.md")).unwrap()),
            false,
        ),
        (
            "a draft",
            Box::new(|t| {
                let body = t.read("02_PROJECTS/Seed List.md");
                t.write(
                    "02_PROJECTS/Seed List.md",
                    &format!("---\ndraft: true\n---\n{body}"),
                );
            }),
            false,
        ),
        (
            "a body edit after all that",
            Box::new(|t| {
                let body = t.read("04_AREAS/Home.md");
                t.write("04_AREAS/Home.md", &body.replace("emphasised", "stressed"));
            }),
            true,
        ),
    ];
    for (what, edit, quick) in edits {
        edit(&t);
        let report = render_theme(&t, "paper");
        assert_eq!(report.quick, quick, "after {what}: {report:?}");
        let fresh = t
            .tmp
            .path()
            .join(format!("fresh-{}", what.replace(' ', "-")));
        render_into(&t, "paper", &fresh);
        let (incremental, scratch) = (
            site_files(&t.path("_site/paper")),
            site_files(&fresh.join("paper")),
        );
        assert_eq!(
            incremental.keys().collect::<Vec<_>>(),
            scratch.keys().collect::<Vec<_>>(),
            "after {what}: the same files"
        );
        for (path, bytes) in &incremental {
            assert!(
                bytes == &scratch[path],
                "after {what}: {path} differs from a render from scratch ({report:?})"
            );
        }
    }
}

/// The daemon keeps what it read of the index between renders and catches up with only what
/// changed. Whatever changed — text, tasks, a note added or removed, an alias that makes a broken
/// link resolve — the site it renders must be the one a fresh read gives, byte for byte.
#[test]
fn a_warm_render_equals_a_fresh_one_after_every_kind_of_change() {
    let t = rich_vault();
    let warm = std::sync::Arc::new(std::sync::Mutex::new(render::WarmCatalog::default()));
    let warm_out = t.path("_site");
    // Outside the vault: a site inside it would be attachments, and so a change of structure
    // at every step, which would keep the warm copy from ever taking its quick catch-up.
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh_out = fresh_dir.path().join("site");
    let render_warm = |what: &str| {
        let vault = t.vault();
        quire::index::Index::open(&vault)
            .unwrap()
            .update(false)
            .unwrap();
        let content = Content::work_tree_warm(&vault, warm.clone()).unwrap();
        render::render(&content, &["paper".into()], &warm_out, &Quiet).unwrap();
        // Between builds, as the daemon does after one that wrote most of the site.
        render::mirror_live_site(&warm_out, "paper").unwrap();
        render_into(&t, "paper", &fresh_out);
        let (w, f) = (
            site_files(&warm_out.join("paper")),
            site_files(&fresh_out.join("paper")),
        );
        assert_eq!(
            w.keys().collect::<Vec<_>>(),
            f.keys().collect::<Vec<_>>(),
            "{what}: the warm site has other files"
        );
        for (path, bytes) in &w {
            assert!(
                bytes == &f[path],
                "{what}: {path} differs from a fresh render"
            );
        }
    };
    render_warm("first render");
    t.write(
        "02_PROJECTS/Seed List.md",
        "# Seed List\n\n## Tomatoes\n\nRoma only.\n\n- [x] Buy tomatoes 📅 2026-03-20\n- [ ] Sow 📅 2026-06-02 #garden\n",
    );
    render_warm("text and tasks edited");
    // Edits the month, due-month and tag pages must notice although they list the same notes:
    // their keys are reused while the listed objects are the same.
    t.write(
        "02_PROJECTS/Seed List.md",
        "# Seed Catalogue\n\n## Tomatoes\n\nRoma only.\n\n- [x] Buy tomatoes 📅 2026-03-20\n- [ ] Sow 📅 2026-06-02 #garden\n",
    );
    render_warm("the note of listed tasks retitled");
    t.write(
        "02_PROJECTS/Garden Plan.md",
        "---\ntitle: Garden plans\ntags: [garden, planning/spring]\ndate: 2026-03-01\naliases: [Beds]\n---\n\
         # Garden plan\n\nSee [[Seed List]] and ![[Seed List#Tomatoes]]\n\n- [ ] Dig the beds 📅 2026-04-02 #garden\n",
    );
    render_warm("a note linking to others retitled (their backlinks show it)");
    t.write(
        "02_PROJECTS/Seed List.md",
        "# Seed Catalogue\n\n## Tomatoes\n\nRoma only.\n\n- [x] Buy tomatoes 📅 2026-07-20\n- [ ] Sow 📅 2026-06-02 #garden\n",
    );
    render_warm("a task moved to another month");
    t.write(
        "04_AREAS/Home.md",
        "---\ntags: [garden, planning/summer]\n---\n# Home\n\nBack to [[Beds]].\n",
    );
    render_warm("tags given to a note");
    // As an idle daemon does: the kept catalog released and made again, its memos carried over.
    {
        let mut w = warm.lock().unwrap();
        w.release();
        w.remake(&t.vault()).unwrap();
    }
    t.write(
        "04_AREAS/Home.md",
        "---\ntags: [planning/summer]\ndate: 2026-01-02\n---\n# Home page\n\nBack to [[Beds]].\n",
    );
    render_warm("a tagged note retitled, dated, and a tag dropped");
    t.write(
        "03_NOTES/Nowhere.md",
        "# Nowhere\n\nNow somewhere, see [[Home]].\n",
    );
    render_warm("a note added that a broken link now reaches");
    std::fs::remove_file(t.path("04_AREAS/Home.md")).unwrap();
    render_warm("a note removed");
    t.write(
        "03_NOTES/Other.md",
        "---\naliases: [Home]\ntags: [garden]\n---\n# Other\n\ntakes the name, and follows [[Garden Plan]]\n",
    );
    // Settled in the past, so that no later index update reads it again: below, its page must
    // change only because the note its link leads to is no longer published.
    std::fs::File::options()
        .write(true)
        .open(t.path("03_NOTES/Other.md"))
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .unwrap();
    render_warm("an alias that takes a removed note's name");
    t.write(
        "02_PROJECTS/Garden Plan.md",
        "---\ntitle: Garden plan\naliases: [Beds]\ndraft: true\n---\n# Garden plan\n\nwithdrawn\n",
    );
    render_warm("a note made a draft");
    t.write(
        "03_NOTES/Mission Work.md",
        "---\nmission: m-1\n---\n# Mission work\n\nfor the launch\n",
    );
    render_warm("a note of a mission added");
    t.write(
        "01_MISSIONS/m-1/mission.md",
        "---\nid: m-1\ntitle: Launch day\nstatus: active\ndue: 2026-05-01\n---\n# Launch\n\n- [ ] Ship it 📅 2026-04-30\n- [x] Plan it\n",
    );
    render_warm("a mission retitled (its notes' pages name it)");
}

/// A task added in one month re-renders that month's pages and the overviews that count tasks,
/// not the pages of the other months (which show no counts for that reason).
#[test]
fn a_task_added_in_one_month_leaves_the_other_months_pages_alone() {
    let t = rich_vault();
    render_theme(&t, "paper");
    let site = t.path("_site/paper");
    let april = ["calendar/2026-04/index.html", "tasks/2026-04/index.html"];
    let before: Vec<u64> = april.iter().map(|p| inode(&site.join(p))).collect();
    let march = site.join("calendar/2026-03/index.html");
    let march_ino = inode(&march);

    t.write(
        "04_AREAS/Home.md",
        "# Home\n\nBack to [[Beds]].\n\n- [ ] Thin the seedlings 📅 2026-03-25\n",
    );
    let edit = render_theme(&t, "paper");
    assert!(edit.changed);
    let after: Vec<u64> = april.iter().map(|p| inode(&site.join(p))).collect();
    assert_eq!(after, before, "April's pages were rendered again");
    assert_ne!(inode(&march), march_ino, "March's page shows the new task");
    for page in ["calendar/2026-03/index.html", "tasks/2026-03/index.html"] {
        let html = std::fs::read_to_string(site.join(page)).unwrap();
        assert!(html.contains("Thin the seedlings"), "{page} lists it");
    }
    // The overviews count it.
    let calendar = std::fs::read_to_string(site.join("calendar/index.html")).unwrap();
    assert!(calendar.contains("2 tasks, 2 open"), "{calendar}");
}

/// Mirroring a live site that lost a file by hand is refused, and leaves the spare folder without
/// a manifest: the next render builds it afresh instead of trusting it.
#[test]
fn mirroring_a_damaged_live_site_fails_and_the_next_render_is_whole() {
    let t = rich_vault();
    render_theme(&t, "paper");
    let out = t.path("_site");
    let page = out.join("paper/04_areas/home/index.html");
    std::fs::remove_file(&page).unwrap();
    assert!(render::mirror_live_site(&out, "paper").is_err());
    assert!(!out.join(".paper.next/.quire-build.json").exists());
    t.write("04_AREAS/Home.md", "# Home\n\nBack again to [[Beds]].\n");
    render_theme(&t, "paper");
    assert!(
        std::fs::read_to_string(&page)
            .unwrap()
            .contains("Back again")
    );
    let fresh = t.path("fresh");
    render_into(&t, "paper", &fresh);
    assert_eq!(
        site_files(&out.join("paper")).keys().collect::<Vec<_>>(),
        site_files(&fresh.join("paper")).keys().collect::<Vec<_>>()
    );
}

#[test]
fn a_busy_day_shows_four_tasks_in_its_cell_and_links_to_all_of_them() {
    let t = VaultTest::new();
    let mut note = String::from("# Busy\n\n");
    for i in 1..=7 {
        note.push_str(&format!("- [ ] Errand {i} 📅 2026-05-04\n"));
    }
    note.push_str("- [ ] Quiet one 📅 2026-05-05\n");
    t.write("03_NOTES/Busy.md", &note);
    render_theme(&t, "paper");
    let page = std::fs::read_to_string(t.path("_site/paper/calendar/2026-05/index.html")).unwrap();
    let cell = |date: &str| {
        let start = page
            .find(&format!("<td data-date=\"{date}\""))
            .unwrap_or_else(|| panic!("no cell for {date}"));
        let end = start + page[start..].find("</td>").unwrap();
        page[start..end].to_owned()
    };
    let busy = cell("2026-05-04");
    assert_eq!(busy.matches("<li").count(), 4, "{busy}");
    assert!(
        busy.contains("<a class=\"calendar-more\" href=\"#day-2026-05-04\">+3 more</a>"),
        "{busy}"
    );
    let quiet = cell("2026-05-05");
    assert_eq!(quiet.matches("<li").count(), 1, "{quiet}");
    assert!(!quiet.contains("calendar-more"), "{quiet}");
    // Under the grid, the day lists every task, at the anchor the cell links to.
    let day_start = page
        .find("id=\"day-2026-05-04\"")
        .expect("the day's section");
    let day = &page[day_start..day_start + page[day_start..].find("</section>").unwrap()];
    for i in 1..=7 {
        assert!(day.contains(&format!("Errand {i}")), "{day}");
    }
}
