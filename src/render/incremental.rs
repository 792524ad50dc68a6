//! The quick way after an edit: re-render only the edited notes' pages (and the pages that
//! transclude them), without reading the rest of the vault.
//!
//! It applies when the last build was made from this same index, nothing that links resolve to
//! changed since (no note or attachment came or went, no aliases changed: the index's `structure`
//! generation says so), and every note written since still shows the rest of the site the same
//! face — title, tags, aliases, front matter, mission, tasks and where its links lead, compared by
//! digest with the build's memo. Then every other page, and every other note's page, is as it was:
//! the build's memos give the neighbours' titles and backlinks, and the search index and feed are
//! rebuilt from the memos. Otherwise the caller does a full render, which decides page by page.
//!
//! Pages rendered here get a key derived from their bytes (prefixed so it can never equal a full
//! render's key): the next full render renders them once more, and then they are keyed as usual.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::RenderReport;
use super::catalog::{self, Texts};
use super::markdown::Linker;
use super::pages::{self, Link};
use super::publish::{Body, Manifest, NoteMemo, OutFile, PublishError, SiteDir};
use super::theme::Theme;
use super::url;
use crate::index::{Index, IndexState, TaskView};
use crate::vault::{Config, Vault};

/// Renders after an edit without reading the whole vault, if it can; `None` when a full render is
/// needed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn try_render(
    vault: &Vault,
    state: &IndexState,
    config: &Config,
    theme: &Theme,
    site: &SiteDir,
    stamp: &str,
    previous: &mut Option<Manifest>,
    source_id: &str,
    resolver: Option<std::sync::Arc<crate::index::Resolver>>,
    started: std::time::Instant,
) -> Result<Option<RenderReport>, PublishError> {
    let Some(prev) = previous.as_ref() else {
        return Ok(None);
    };
    let Some(before) = &prev.index else {
        return Ok(None);
    };
    if before.id != state.id
        || state.structure > before.generation
        || state.generation < before.generation
    {
        return Ok(None);
    }
    let index = Index::open(vault)?;
    let changed = index.changed_since(before.generation)?;
    let published = |p: &str| prev.notes.contains_key(p);
    let excluded = catalog::exclusions(&config.publish.exclude)?;

    // Every changed note must be published, stay published, and show the same face.
    let resolver = match resolver {
        Some(r) => r,
        None => std::sync::Arc::new(index.resolver()?),
    };
    let mut edited: BTreeMap<String, (crate::index::CatalogNote, Vec<TaskView>)> = BTreeMap::new();
    for path in &changed {
        let Some(memo) = prev.notes.get(path) else {
            return Ok(None);
        };
        let Some(note) = index.catalog_note(path)? else {
            return Ok(None);
        };
        if memo.children || catalog::withheld(&excluded, &note).is_some() {
            return Ok(None);
        }
        let tasks = index.tasks_of(path)?;
        let links = index.links_of(path, &resolver)?;
        let digest = catalog::link_digest(
            links
                .iter()
                .map(|l| (l.kind, l.target.as_str(), l.resolved.as_deref())),
            &published,
        );
        let task_refs: Vec<&TaskView> = tasks.iter().collect();
        // A note without links has no digest in a full render either.
        let digest = (!links.is_empty()).then_some(digest);
        if pages::face(&note, &task_refs, digest.as_ref()) != memo.face {
            return Ok(None);
        }
        edited.insert(path.clone(), (note, tasks));
    }
    // Pages that transclude an edited note show its text too.
    let changed_set: BTreeSet<&str> = changed.iter().map(String::as_str).collect();
    for (path, memo) in &prev.notes {
        if !edited.contains_key(path)
            && memo.embeds.iter().any(|e| changed_set.contains(e.as_str()))
        {
            let Some(note) = index.catalog_note(path)? else {
                return Ok(None);
            };
            if memo.children {
                return Ok(None);
            }
            let tasks = index.tasks_of(path)?;
            edited.insert(path.clone(), (note, tasks));
        }
    }

    // Render the edited pages while the live manifest says who their neighbours are.
    let root = vault.root().to_path_buf();
    let texts = Texts::WorkTree(root.clone());
    let folders = pages::folder_tree_of(prev.notes.keys().map(String::as_str));
    let nav_targets = pages::nav_targets(&folders);
    let order: Vec<&String> = prev.notes.keys().collect();
    let load = |p: &str| texts.text(p);
    let page_of = |p: &str| published(p).then(|| url::note_page(p));
    let linker = Linker {
        resolver: &resolver,
        load: &load,
        page_of: &page_of,
    };
    let allowed = |a: &str| index.has_attachment(a).unwrap_or(false) && !excluded.is_match(a);
    let positions: std::collections::HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i))
        .collect();
    type Done = (
        String,
        String,
        Vec<u8>,
        String,
        NoteMemo,
        usize,
        Box<serde_json::value::RawValue>,
    );
    let mut pages_done: Vec<Done> = Vec::new();
    for (path, (note, tasks)) in &edited {
        let memo_before = &prev.notes[path];
        let page = url::note_page(path);
        let text = texts.text(path).unwrap_or_default();
        let html = pages::note_html(&linker, &page, path, &text, &note.title);
        let backlinks: Vec<Link> = memo_before
            .backlinks
            .iter()
            .filter_map(|&i| order.get(i as usize))
            .map(|src| Link {
                title: prev.notes[*src].title.clone(),
                url: url::note_page(src).relative_from(&page),
            })
            .collect();
        let mission = memo_before.mission.as_ref().map(|(id, title)| Link {
            title: title.clone(),
            url: pages::mission_page(id).relative_from(&page),
        });
        let date = catalog::note_date(&note.front_matter);
        let ctx = pages::note_ctx_of(
            note,
            &page,
            date.as_deref(),
            tasks,
            backlinks,
            mission,
            &folders,
        );
        let site_ctx = pages::site_ctx(config, theme, &nav_targets, &page);
        let bytes = pages::note_page_bytes(theme, &site_ctx, &page, note, &ctx, &html)?;
        let key = format!("q{}", pages::hex(&Sha256::digest(&bytes)[..16]));
        let mut memo = pages::memo_of(
            note,
            date.as_deref(),
            memo_before.face.clone(),
            memo_before.backlinks.clone(),
            memo_before.mission.clone(),
            false,
        );
        memo.set_rendered(&html, &allowed);
        let entry = pages::search_entry(note, &page, &html.excerpt);
        let position = positions.get(path.as_str()).copied().unwrap_or(usize::MAX);
        pages_done.push((
            page.output_file(),
            key,
            bytes,
            path.clone(),
            memo,
            position,
            entry,
        ));
    }

    // From here on the live manifest becomes the new one: a failure below leaves the caller with
    // none, and so a render from scratch.
    let Some(mut manifest) = previous.take() else {
        return Ok(None);
    };
    manifest.source = source_id.to_owned();
    manifest.index = Some(state.clone());
    let stage = site.stage(stamp, None, &texts);
    let mut files: BTreeMap<String, (String, Body)> = manifest
        .files
        .iter()
        .map(|(p, k)| (p.clone(), (k.clone(), Body::Kept)))
        .collect();
    let rendered = pages_done.len();
    for (out, key, bytes, path, memo, position, entry) in pages_done {
        stage.put(&out, &key, &Body::Bytes(bytes))?;
        files.insert(out, (key, Body::Staged));
        manifest.notes.insert(path, Arc::new(memo));
        if let Some(slot) = manifest.entries.get_mut(position) {
            *slot = entry.into();
        }
    }

    // Attachments, the search index and the feed follow the memos.
    let attachments: BTreeSet<&str> = manifest
        .notes
        .values()
        .flat_map(|m| m.attachments.iter().map(String::as_str))
        .collect();
    files.retain(|path, (key, _)| !key.starts_with("file:") || attachments.contains(path.as_str()));
    for a in &attachments {
        if let Some(key) = texts.attachment_key(a)
            && manifest.files.get(*a) != Some(&key)
        {
            files.insert((*a).to_owned(), (key, Body::Attachment((*a).to_owned())));
        }
    }
    let generated = [
        ("search.json", pages::search_index(&manifest.entries)),
        (
            "feed.xml",
            pages::feed(&manifest.notes, &manifest.entries, config),
        ),
    ];
    for (path, bytes) in generated {
        let key = pages::hex(&Sha256::digest(&bytes)[..16]);
        if manifest.files.get(path) != Some(&key) {
            files.insert(path.to_owned(), (key, Body::Bytes(bytes)));
        }
    }
    manifest.files = files
        .iter()
        .map(|(p, (k, _))| (p.clone(), k.clone()))
        .collect();
    manifest.summary.broken_links = manifest.notes.values().map(|m| m.broken).sum();
    manifest.summary.attachments = attachments.len();
    let out_files: Vec<OutFile> = files
        .into_iter()
        .map(|(path, (key, body))| OutFile { path, key, body })
        .collect();
    let outcome = stage.finish(&out_files, &mut manifest)?;
    let s = manifest.summary.clone();
    site.keep(manifest);
    Ok(Some(RenderReport {
        theme: theme.name().to_owned(),
        dir: site.live_dir().to_path_buf(),
        pages: s.pages,
        rendered,
        written: outcome.written,
        removed: outcome.removed,
        files: outcome.files,
        attachments: s.attachments,
        broken_links: s.broken_links,
        published: s.published,
        unpublished: s.unpublished,
        changed: outcome.changed,
        quick: true,
        elapsed: started.elapsed(),
    }))
}
