//! The site's pages and files: what each page shows (its template context: the theme contract of
//! `docs/contracts/theme-pack.md`), its key, and the site-wide files (search index, sitemap, feed).
//!
//! Every page is first described — template and context — and given a key: a hash of the context,
//! and for a note also of everything its Markdown output depends on (its text, what each of its
//! links resolves to, the notes it transcludes). A page whose key the live build already has is not
//! rendered again; since templates see nothing but their context, equal keys mean equal bytes.
//!
//! Every URL handed to a template is already relative to the page it is on, so templates print them
//! as they are, and `root` leads back to the site root (for theme assets). Every list is sorted, so
//! the same content renders to the same bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

use chrono::{Datelike, NaiveDate};
use rayon::prelude::*;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::catalog::{self, Catalog, Published};
use super::escape::escape;
use super::markdown::{Linker, MAX_EMBED_DEPTH, NoteHtml, TocEntry, render_note};
use super::publish::{Body, Manifest, NoteMemo, OutFile, PublishError, SEARCH_INDEX, Stage};
use super::task_item;
use super::theme::Theme;
use super::url::{self, SitePath};
use super::{Progress, RenderError, sanitize};
use crate::index::{CatalogNote, TaskView};
use crate::vault::Config;

/// How many notes the front page lists as recent, and the feed carries.
const RECENT: usize = 20;
const FEED_ENTRIES: usize = 30;
/// Run records listed on the front page.
const RUNS: usize = 10;
/// Where run records live (SPEC §2).
const RUNS_DIR: &str = crate::vault::RUNS_DIR;

#[derive(Serialize, Clone)]
pub(super) struct Link {
    pub(super) title: String,
    pub(super) url: String,
}

#[derive(Serialize)]
pub(super) struct SiteCtx<'a> {
    title: &'a str,
    base_url: &'a str,
    lang: &'a str,
    theme: &'a str,
    nav: Vec<Link>,
    search_index: String,
    feed: String,
    home: String,
}

#[derive(Serialize)]
struct PageCtx {
    kind: &'static str,
    title: String,
    /// The page's place in the site, from its root (`dir/my-note/`).
    url: String,
    /// The vault path it shows, for note and folder pages.
    path: Option<String>,
}

#[derive(Serialize, Clone)]
struct NoteRef<'a> {
    title: &'a str,
    url: String,
    path: &'a str,
    date: Option<&'a str>,
}

#[derive(Serialize, Clone)]
pub(super) struct TagRef {
    name: String,
    url: String,
    count: usize,
}

#[derive(Serialize, Clone)]
pub(super) struct TaskCtx<'a> {
    #[serde(flatten)]
    task: &'a TaskView,
    /// The task's note (at the task's block, when it has an id).
    url: String,
    note_title: &'a str,
    /// Due, else scheduled: the date the agenda and calendar file it under.
    date: Option<&'a str>,
}

/// Tasks as a page is given them.
pub(super) enum TaskList<'a> {
    /// As serde makes them.
    Own(Vec<TaskCtx<'a>>),
    /// Built by hand as template values, with a digest of the tasks' own digests and URLs that
    /// stands for them in the page's key (so that a key does not serialize every task again).
    Built {
        value: tera::Value,
        digest: [u8; 32],
    },
}

impl Serialize for TaskList<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TaskList::Own(list) => list.serialize(s),
            TaskList::Built { digest, .. } if erased::hashing() => s.serialize_bytes(digest),
            // Into a template context this is a reference to the value, not a copy.
            TaskList::Built { value, .. } => value.serialize(s),
        }
    }
}

/// A task's template value: what serde makes of a [`TaskCtx`] (a test holds them equal), from a
/// flat struct, which tera's serializer turns into a map in one go. (A hand-built map costs twice:
/// tera copies a `HashMap` into a map of its own; and `TaskCtx` flattens the task, which goes
/// through serde's map path with an allocated key per field.) A page may list 100,000 tasks.
fn task_value(task: &TaskView, url: &str, note: Option<&Published>) -> tera::Value {
    #[derive(Serialize)]
    struct Flat<'a> {
        path: &'a str,
        line: usize,
        status: &'a str,
        text: &'a str,
        due: &'a Option<String>,
        scheduled: &'a Option<String>,
        start: &'a Option<String>,
        created: &'a Option<String>,
        done: &'a Option<String>,
        cancelled: &'a Option<String>,
        priority: &'a Option<String>,
        recurrence: &'a Option<String>,
        id: &'a Option<String>,
        depends_on: &'a [String],
        tags: &'a [String],
        mission: &'a Option<String>,
        heading: &'a Option<String>,
        block_id: &'a Option<String>,
        url: &'a str,
        note_title: &'a str,
        date: Option<&'a str>,
    }
    // Every field of the task: the test against `TaskCtx`'s serialization fails if one is missed.
    let flat = Flat {
        path: &task.path,
        line: task.line,
        status: &task.status,
        text: &task.text,
        due: &task.due,
        scheduled: &task.scheduled,
        start: &task.start,
        created: &task.created,
        done: &task.done,
        cancelled: &task.cancelled,
        priority: &task.priority,
        recurrence: &task.recurrence,
        id: &task.id,
        depends_on: &task.depends_on,
        tags: &task.tags,
        mission: &task.mission,
        heading: &task.heading,
        block_id: &task.block_id,
        url,
        note_title: note.map_or("", |p| p.note.title.as_str()),
        date: agenda_date(task).map(String::as_str),
    };
    // Strings, numbers and lists of strings always serialize.
    tera::Value::try_from_serializable(&flat).unwrap_or_else(|_| tera::Value::none())
}

/// What one task contributes to the keys of the pages listing it: a digest of what it shows (all
/// of [`TaskCtx`] but the URL), made once per build; and its template value as the last long list
/// made it, with the URL it was made for. Pages at the same depth (a month's task list and its
/// calendar) give a task the same URL, and so share one value instead of each making 100,000.
#[derive(Default)]
struct TaskMemo {
    digest: OnceLock<[u8; 32]>,
    value: OnceLock<(String, tera::Value)>,
    /// Its `<li>` as [`made_item`] makes it, with the URL it was made for.
    item: OnceLock<(String, tera::Value)>,
}

impl TaskMemo {
    fn digest(&self, task: &TaskView, note: Option<&Published>) -> [u8; 32] {
        *self.digest.get_or_init(|| {
            let mut h = Sha256::new();
            feed_task(&mut h, task);
            // The rest of what a task shows (its URL is fed by the list).
            let title = note.map_or("", |p| p.note.title.as_str());
            h.update((title.len() as u64).to_le_bytes());
            h.update(title.as_bytes());
            h.finalize().into()
        })
    }

    /// The task's value with `url`: the kept one when it was made for the same URL.
    fn value(&self, task: &TaskView, url: &str, note: Option<&Published>) -> tera::Value {
        kept(&self.value, url, || task_value(task, url, note))
    }

    /// The task's rendered `<li>` with `url`: the kept one when it was made for the same URL.
    fn item(&self, task: &TaskView, url: &str, note: Option<&Published>) -> tera::Value {
        kept(&self.item, url, || made_item(task, url, note))
    }
}

/// What `cell` holds when it was made for `url`, else `make()` (kept in `cell` if it was empty:
/// another page may have set it meanwhile, and either is right for its own URL).
fn kept(
    cell: &OnceLock<(String, tera::Value)>,
    url: &str,
    make: impl FnOnce() -> tera::Value,
) -> tera::Value {
    match cell.get() {
        Some((made_for, value)) if made_for == url => value.clone(),
        Some(_) => make(),
        None => {
            let value = make();
            let _ = cell.set((url.to_owned(), value.clone()));
            value
        }
    }
}

/// What the built-in `task` component prints of `task`, shown with `url` from a page.
fn shown<'t>(
    task: &'t TaskView,
    url: &'t str,
    note: Option<&'t Published>,
) -> task_item::Shown<'t> {
    task_item::Shown {
        status: &task.status,
        text: &task.text,
        priority: task.priority.as_deref(),
        date: agenda_date(task).map(String::as_str),
        due: task.due.as_deref(),
        scheduled: task.scheduled.as_deref(),
        start: task.start.as_deref(),
        recurrence: task.recurrence.as_deref(),
        done: task.done.as_deref(),
        url: Some(url),
        note_title: Some(note.map_or("", |p| p.note.title.as_str())),
    }
}

/// The task's `<li>`, rendered as `task_list` calls the built-in `task` (its note shown); its
/// template value should the component decline it (it never does for a task of the catalog).
fn made_item(task: &TaskView, url: &str, note: Option<&Published>) -> tera::Value {
    task_item::made(&shown(task, url, note), true).unwrap_or_else(|| task_value(task, url, note))
}

/// A task in a calendar cell: just what the cell shows.
#[derive(Serialize)]
struct CellTask<'a> {
    text: &'a str,
    status: &'a str,
    url: String,
    note_title: &'a str,
}

#[derive(Serialize, Clone)]
struct MissionCtx {
    id: String,
    title: String,
    status: Option<String>,
    due: Option<String>,
    url: String,
    total: usize,
    open: usize,
    done: usize,
    cancelled: usize,
    /// Percent done of the tasks not cancelled.
    progress: usize,
    /// Due dates of its open tasks, so the page's script can count overdue and upcoming ones
    /// against the reader's today (a static page cannot know it).
    open_due: Vec<String>,
}

#[derive(Serialize)]
struct FolderCtx<'a> {
    title: &'a str,
    path: &'a str,
    breadcrumbs: Vec<Link>,
    folders: Vec<FolderEntry>,
    notes: Vec<NoteRef<'a>>,
}

#[derive(Serialize, Clone)]
struct FolderEntry {
    title: String,
    url: String,
    count: usize,
}

/// A note page's context without the note's HTML, which is keyed separately.
#[derive(Serialize)]
pub(super) struct NoteCtx<'a> {
    title: &'a str,
    path: &'a str,
    tags: Vec<TagRef>,
    backlinks: Vec<Link>,
    breadcrumbs: Vec<Link>,
    date: Option<&'a str>,
    tasks: TaskList<'a>,
    front_matter: &'a serde_json::Map<String, Value>,
    mission: Option<Link>,
    /// When a folder has the same URL as this note (`dir.md` beside `dir/`), the folder's listing.
    children: Option<FolderCtx<'a>>,
}

/// A note page's whole context.
#[derive(Serialize)]
struct NoteFull<'a> {
    #[serde(flatten)]
    ctx: &'a NoteCtx<'a>,
    /// The note as HTML.
    content: &'a str,
    /// Its headings.
    toc: &'a [TocEntry],
}

#[derive(Serialize)]
struct MonthCtx {
    key: String,
    title: String,
    url: String,
    /// Dated tasks in the month, and how many of them are open: on the overview pages only (see
    /// [`Shared::month_list`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    open: Option<usize>,
}

/// A tag page's context.
#[derive(Serialize)]
struct TagCtx<'a> {
    name: &'a str,
    notes: Vec<NoteRef<'a>>,
    children: Vec<TagRef>,
    parent: Option<Link>,
}

/// A month page's grid.
#[derive(Serialize)]
struct MonthFull<'a> {
    key: String,
    title: String,
    weeks: Vec<Vec<DayCtx<'a>>>,
    prev: Option<Link>,
    next: Option<Link>,
}

/// A day's tasks, listed.
#[derive(Serialize)]
struct DayList<'a> {
    date: String,
    tasks: TaskList<'a>,
}

#[derive(Serialize)]
struct DayCtx<'a> {
    day: u32,
    date: String,
    in_month: bool,
    /// The day's first [`CELL_TASKS`] tasks.
    tasks: Vec<CellTask<'a>>,
    /// How many more the day has (listed under the grid).
    more: usize,
}

/// How many tasks a day's cell in the month grid shows; the rest are counted, and listed day by
/// day under the grid. A cell shows about four lines, and a grid holding every task of a busy
/// month would be most of its page.
const CELL_TASKS: usize = 4;

/// A build: every file of the site, and its manifest.
pub(crate) struct Build {
    /// Every file, with its key and where its bytes come from (rendered pages are already staged).
    pub(crate) files: Vec<OutFile>,
    pub(crate) manifest: Manifest,
    pub(crate) pages: usize,
    pub(crate) rendered: usize,
    pub(crate) attachments: usize,
    pub(crate) broken_links: usize,
}

/// Up to this many open tasks, the task list's first page shows them all; beyond, it only links
/// the pages per due month (one edit then re-renders one month's page, not a list of thousands).
const TASKS_INLINE: usize = 500;

/// A page other than a note's: template, kind, title, place, vault path, and its variables.
type PageParts<'v> = (
    &'static str,
    &'static str,
    String,
    SitePath,
    Option<String>,
    Vec<(&'static str, Box<dyn erased::Var + 'v>)>,
);

/// What every page is made from, computed once per build.
struct Shared<'a> {
    catalog: &'a Catalog,
    theme: &'a Theme,
    config: &'a Config,
    folders: &'a BTreeMap<String, Folder>,
    missions: Vec<MissionCtx>,
    /// Tags by lowercased name: (name as first written, notes).
    by_tag: BTreeMap<String, (String, Vec<&'a Published>)>,
    /// Every task, in the catalog's order.
    tasks: Vec<Tv<'a>>,
    /// Open tasks, soonest due first.
    open: Vec<Tv<'a>>,
    /// Open tasks by due month (`2026-05`; `undated` last), soonest first.
    buckets: Vec<(String, Vec<Tv<'a>>)>,
    /// Dated tasks by day (due, else scheduled), open ones first.
    by_day: BTreeMap<NaiveDate, Vec<Tv<'a>>>,
    /// Months with a dated task.
    months: Vec<(i32, u32)>,
    /// Open tasks per date: `2026-05-01:3 2026-05-04:1 …`.
    agenda_days: String,
    /// A hash of what every page's frame shows (site title, language, navigation).
    site_hash: String,
    /// What the navigation links to.
    nav: Vec<(String, SitePath)>,
    /// The months and the due months, as the month and task pages list them.
    months_sig: String,
    buckets_sig: String,
    /// What each task contributes to page keys, and the value long lists kept, made on first use
    /// and shared by every page.
    task_memos: Vec<TaskMemo>,
}

/// What the keys of the pages listing many tasks or notes (a month, a due month's tasks, a tag, a
/// folder) and of the note pages were made from at the last build of one stamp from a catalog.
/// Building such a page's context only to find its key unchanged is most of a small build's time,
/// so when the objects a page lists are the very same (by address) and the few other things it
/// shows are equal, the key is taken from here instead.
#[derive(Default)]
pub(crate) struct PageMemos {
    /// Listing pages', by page.
    pages: HashMap<String, PageMemo>,
    /// Note pages', by position in that build's catalog (`None` for a note keyed afresh every
    /// time): after a small edit the notes are where they were.
    notes: Vec<Option<Arc<NoteKeyMemo>>>,
    /// What every note page's frame showed then (site title, language, navigation).
    note_site: String,
    /// Where each note's memo is in `notes`, by the note's address: made when a note came or
    /// went, and the others moved.
    by_note: OnceLock<HashMap<usize, usize>>,
    /// Every task and note of that build. Held so that an object made since cannot have the
    /// address of one a memo names: an address then stands for one object's content.
    alive: (Vec<Arc<TaskView>>, Vec<Arc<CatalogNote>>),
    /// The sitemap's inputs (a digest of the base URL and every page's place) and its key.
    sitemap: Option<(String, String)>,
}

/// A note page's inputs besides the note's own text, and the key they gave: what
/// [`Shared::note_key`] hashes, by address where it can.
pub(crate) struct NoteKeyMemo {
    /// The note's address, then its backlinks' (whose titles and places its page shows).
    refs: Vec<usize>,
    /// Its mission (id, title).
    mission: Option<(String, String)>,
    /// Where its links lead.
    links: Option<[u8; 32]>,
    key: String,
}

impl NoteKeyMemo {
    /// The memo of note `p`'s page inputs, which gave `key`.
    fn new(
        catalog: &Catalog,
        p: &Published,
        backlinks: &[u32],
        mission: Option<&MissionCtx>,
        links: Option<&[u8; 32]>,
        key: String,
    ) -> Self {
        let refs = std::iter::once(&p.note)
            .chain(
                backlinks
                    .iter()
                    .map(|&src| &catalog.notes[src as usize].note),
            )
            .map(|n| Arc::as_ptr(n) as usize)
            .collect();
        Self {
            refs,
            mission: mission.map(|m| (m.id.clone(), m.title.clone())),
            links: links.copied(),
            key,
        }
    }

    /// Whether the inputs are these still. A note read again is a new object, and so is a note
    /// whose title changed; the catalog keeps every other note as it was.
    fn matches(
        &self,
        catalog: &Catalog,
        backlinks: &[u32],
        mission: Option<&MissionCtx>,
        links: Option<&[u8; 32]>,
    ) -> bool {
        self.refs.len() == 1 + backlinks.len()
            && self.refs[1..]
                .iter()
                .zip(backlinks)
                .all(|(&r, &src)| r == Arc::as_ptr(&catalog.notes[src as usize].note) as usize)
            && self.links.as_ref() == links
            && same_mission(&self.mission, mission)
    }
}

/// Whether a kept (id, title) is the mission's.
fn same_mission(kept: &Option<(String, String)>, mission: Option<&MissionCtx>) -> bool {
    kept.as_ref()
        .map(|(id, title)| (id.as_str(), title.as_str()))
        == mission.map(|m| (m.id.as_str(), m.title.as_str()))
}

impl PageMemos {
    /// The memo of the note at position `i` of the catalog being built, if the last build had
    /// one for that very note object.
    fn note(&self, i: usize, note: &Arc<CatalogNote>) -> Option<&Arc<NoteKeyMemo>> {
        let at = Arc::as_ptr(note) as usize;
        if let Some(m) = self.notes.get(i).and_then(Option::as_ref)
            && m.refs[0] == at
        {
            return Some(m);
        }
        // The note there then was this one's path: it was read again, and no note moved.
        if self.alive.1.get(i).is_some_and(|n| n.path == note.path) {
            return None;
        }
        let by_note = self.by_note.get_or_init(|| {
            self.notes
                .iter()
                .enumerate()
                .filter_map(|(j, m)| Some((m.as_ref()?.refs[0], j)))
                .collect()
        });
        let j = *by_note.get(&at)?;
        self.notes[j].as_ref()
    }
}

/// A listing page's inputs and the key they gave.
struct PageMemo {
    /// What the page shows besides the listed objects: the site's frame, its neighbours.
    extra: String,
    /// The addresses of the listed tasks and notes, in order.
    refs: Vec<usize>,
    key: String,
}

/// Leaves the first `n` of `list` in `order`, sorted: the front page shows a few of thousands,
/// and sorting them all was a visible part of every build.
fn first_sorted<T>(list: &mut Vec<T>, n: usize, order: impl Fn(&T, &T) -> std::cmp::Ordering) {
    if n == 0 {
        list.clear();
        return;
    }
    if list.len() > n {
        list.select_nth_unstable_by(n - 1, &order);
        list.truncate(n);
    }
    list.sort_by(order);
}

/// How many tasks make a list long: made on all cores, its values kept for the next page.
const LONG_LIST: usize = 2048;

/// A task with its note, found once per build: pages list tasks by the thousand, and each task
/// shows its note's title and place.
#[derive(Clone, Copy)]
struct Tv<'a> {
    task: &'a TaskView,
    /// Its published note (always there in a consistent catalog).
    note: Option<&'a Published>,
    /// Its place in the catalog's tasks (and in [`Shared::task_memos`]).
    at: u32,
}

impl std::ops::Deref for Tv<'_> {
    type Target = TaskView;
    fn deref(&self) -> &TaskView {
        self.task
    }
}

/// A page other than a note's.
#[derive(Clone, Copy)]
enum Page<'a> {
    Folder(&'a Folder),
    Tag(&'a str),
    Tags,
    /// The task list's first page, or one due month's page (by position in `buckets`).
    Tasks(Option<usize>),
    Calendar,
    Month(usize),
    Agenda,
    Missions,
    Mission(&'a MissionCtx),
    Index,
    NotFound,
}

impl<'a> Shared<'a> {
    fn new(catalog: &'a Catalog, theme: &'a Theme, config: &'a Config) -> Self {
        // The notes' side and the tasks' side, made side by side.
        let ((folders, missions, by_tag), (tasks, open, by_day)) = rayon::join(
            || (catalog.folders(), missions(catalog), tags(catalog)),
            || Self::tasks_by_date(catalog),
        );
        let months = by_day
            .keys()
            .map(|d| (d.year(), d.month()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut buckets: Vec<(String, Vec<Tv<'_>>)> = Vec::new();
        for &t in &open {
            // `due` is a valid date or absent (the index keeps invalid dates out of it).
            let key = t
                .due
                .as_deref()
                .and_then(|d| d.get(..7))
                .unwrap_or(UNDATED)
                .to_owned();
            match buckets.last_mut() {
                Some((k, list)) if *k == key => list.push(t),
                _ => buckets.push((key, vec![t])),
            }
        }
        let mut per_day: BTreeMap<&str, usize> = BTreeMap::new();
        for t in &open {
            if let Some(d) = agenda_date(t) {
                *per_day.entry(d.as_str()).or_default() += 1;
            }
        }
        let agenda_days = per_day
            .iter()
            .map(|(d, n)| format!("{d}:{n}"))
            .collect::<Vec<_>>()
            .join(" ");
        let nav_targets = nav_targets(folders);
        let site_hash = key_of(&[
            &config.site.title,
            &config.site.lang,
            &config.site.base_url,
            &theme.name(),
            &nav(&nav_targets, &SitePath::root()),
        ]);
        let months_sig = format!("{site_hash} {months:?}");
        let buckets_sig = buckets.iter().fold(site_hash.clone(), |mut sig, (key, _)| {
            sig.push(' ');
            sig.push_str(key);
            sig
        });
        Self {
            months_sig,
            buckets_sig,
            catalog,
            theme,
            config,
            folders,
            missions,
            by_tag,
            tasks,
            open,
            buckets,
            by_day,
            months,
            agenda_days,
            site_hash,
            nav: nav_targets,
            task_memos: std::iter::repeat_with(TaskMemo::default)
                .take(catalog.tasks.len())
                .collect(),
        }
    }

    /// `tasks` as the page at `page` lists them, with a key made of each task's digest (computed
    /// once per build, however many pages list the task) and URL instead of its whole value. With
    /// `made`, each task is its `<li>` already rendered ([`task_item::made`]), for a page whose
    /// templates only hand the list to `task_list` (`Theme::prerendered`).
    fn task_list(&self, tasks: &[Tv<'a>], page: &SitePath, made: bool) -> TaskList<'a> {
        // A long list is made on all cores, and its values kept for the next page that lists
        // the same tasks from the same depth; most lists are a handful of tasks.
        let long = tasks.len() >= LONG_LIST;
        let one = |t: &Tv<'a>| {
            let url = task_url(t.task, t.note, page);
            let memo = &self.task_memos[t.at as usize];
            let digest = memo.digest(t.task, t.note);
            let value = match (made, long) {
                (true, true) => memo.item(t.task, &url, t.note),
                (true, false) => made_item(t.task, &url, t.note),
                (false, true) => memo.value(t.task, &url, t.note),
                (false, false) => task_value(t.task, &url, t.note),
            };
            (value, digest, url)
        };
        let made: Vec<(tera::Value, [u8; 32], String)> = if long {
            tasks.par_iter().with_min_len(512).map(one).collect()
        } else {
            tasks.iter().map(one).collect()
        };
        let mut h = Sha256::new();
        let mut values = Vec::with_capacity(made.len());
        for (value, digest, url) in made {
            h.update(digest);
            h.update(url.as_bytes());
            h.update([0]);
            values.push(value);
        }
        TaskList::Built {
            value: tera::Value::from(values),
            digest: h.finalize().into(),
        }
    }

    /// Every task with its note; the open tasks, soonest due first; and the dated tasks by day,
    /// open ones first.
    #[allow(clippy::type_complexity)]
    fn tasks_by_date(
        catalog: &'a Catalog,
    ) -> (Vec<Tv<'a>>, Vec<Tv<'a>>, BTreeMap<NaiveDate, Vec<Tv<'a>>>) {
        // The catalog's tasks are in path and line order, so grouping them by date, each group
        // keeping that order, gives (date, path, line) order without comparing paths.
        debug_assert!(
            catalog
                .tasks
                .windows(2)
                .all(|w| (&w[0].path, w[0].line) < (&w[1].path, w[1].line))
        );
        // The notes are in path order too: one walk over both finds every task's note.
        let mut notes = catalog.notes.iter().peekable();
        let tasks: Vec<Tv<'a>> = catalog
            .tasks
            .iter()
            .enumerate()
            .map(|(at, t)| {
                while notes.next_if(|p| p.note.path < t.path).is_some() {}
                let note = notes.peek().copied().filter(|p| p.note.path == t.path);
                Tv {
                    task: t,
                    note,
                    at: at as u32,
                }
            })
            .collect();
        // Grouped by due date, each group keeping that order; then the dates in order.
        let mut by_due: HashMap<Option<&str>, Vec<Tv<'_>>> = HashMap::new();
        for &t in tasks.iter().filter(|t| is_open(t)) {
            by_due.entry(t.task.due.as_deref()).or_default().push(t);
        }
        let mut groups: Vec<_> = by_due.into_iter().collect();
        groups.sort_unstable_by_key(|(due, _)| (due.is_none(), *due));
        let open: Vec<Tv<'_>> = groups.into_iter().flat_map(|(_, list)| list).collect();
        let mut by_day: BTreeMap<NaiveDate, Vec<Tv<'_>>> = BTreeMap::new();
        let mut last: Option<(&str, NaiveDate)> = None;
        for &t in &tasks {
            let Some(text) = agenda_date(t.task) else {
                continue;
            };
            // Neighbouring tasks often share a date; it is read once for them.
            let day = match last {
                Some((s, d)) if s == text.as_str() => Some(d),
                _ => catalog::ymd(text),
            };
            if let Some(d) = day {
                last = Some((text.as_str(), d));
                by_day.entry(d).or_default().push(t);
            }
        }
        for list in by_day.values_mut() {
            list.sort_by_key(|t| !is_open(t));
        }
        (tasks, open, by_day)
    }

    fn site(&self, page: &SitePath) -> SiteCtx<'a> {
        site_ctx(self.config, self.theme, &self.nav, page)
    }

    /// For a page whose key may come from a [`PageMemos`]: its place, what it shows besides the
    /// objects it lists, and their addresses (a task's together with its note's, whose title and
    /// place it shows: today a note read again brings new tasks too, but the memo does not rely on
    /// that). Everything else the page's context is made of follows from these.
    fn memo_inputs(&self, which: Page<'_>) -> Option<(SitePath, String, Vec<usize>)> {
        let tasks = |list: &mut dyn Iterator<Item = &Tv<'_>>| {
            list.flat_map(|t| {
                let note = t.note.map_or(0, |p| Arc::as_ptr(&p.note) as usize);
                [std::ptr::from_ref::<TaskView>(t.task) as usize, note]
            })
            .collect::<Vec<_>>()
        };
        match which {
            Page::Month(i) => {
                let (y, m) = self.months[i];
                let mut list = self.by_day.range(month_range(y, m)).flat_map(|(_, ts)| ts);
                let extra = format!("month {i} {}", self.months_sig);
                Some((month_page(y, m), extra, tasks(&mut list)))
            }
            Page::Tasks(Some(i)) => {
                let (key, list) = &self.buckets[i];
                let extra = format!("bucket {i} {} {}", key, self.buckets_sig);
                Some((bucket_page(key), extra, tasks(&mut list.iter())))
            }
            Page::Folder(f) => {
                // Its sub-folders' counts (their titles and places follow from their paths, as
                // its own and its breadcrumbs' do), and its notes.
                let mut extra = format!("folder {} {}", f.path, self.site_hash);
                for sub in f.folders.iter().filter_map(|p| self.folders.get(p)) {
                    extra.push_str(&format!(" {}:{}", sub.path, sub.count));
                }
                let refs = f
                    .notes
                    .iter()
                    .map(|n| {
                        self.catalog
                            .note(n)
                            .map_or(0, |p| Arc::as_ptr(&p.note) as usize)
                    })
                    .collect();
                Some((url::folder_page(&f.path), extra, refs))
            }
            Page::Tag(key) => {
                let (name, list) = &self.by_tag[key];
                // Its sub-tags, with their counts, and the tag's own spelling.
                let mut extra = format!("tag {name} {}", self.site_hash);
                for (n, l) in self.child_tags(key) {
                    extra.push_str(&format!(" {n}:{}", l.len()));
                }
                let refs = list.iter().map(|p| Arc::as_ptr(&p.note) as usize).collect();
                Some((tag_page(name), extra, refs))
            }
            _ => None,
        }
    }

    /// The mission a note belongs to, if it is one of the site's missions.
    fn mission_of(&self, p: &Published) -> Option<&MissionCtx> {
        let id = p.note.mission.as_ref()?;
        self.missions.iter().find(|m| &m.id == id)
    }

    /// The tags directly below the tag `key` (lowercased), with their notes.
    fn child_tags<'s>(
        &'s self,
        key: &str,
    ) -> impl Iterator<Item = &'s (String, Vec<&'a Published>)> + 's {
        let below = format!("{key}/");
        let depth = below.len();
        self.by_tag
            .range(below.clone()..)
            .take_while(move |(k, _)| k.starts_with(&below))
            .filter(move |(k, _)| !k[depth..].contains('/'))
            .map(|(_, v)| v)
    }

    /// Every page but the notes'.
    fn pages(&self) -> Vec<Page<'_>> {
        let mut out = Vec::new();
        let note_pages: BTreeSet<&SitePath> = self.catalog.notes.iter().map(|p| &p.page).collect();
        for f in self.folders.values().filter(|f| !f.path.is_empty()) {
            let page = url::folder_page(&f.path);
            if !note_pages.contains(&page) && !catalog::reserved(&page) {
                out.push(Page::Folder(f));
            }
        }
        out.extend(self.by_tag.keys().map(|k| Page::Tag(k.as_str())));
        out.push(Page::Tags);
        out.push(Page::Tasks(None));
        out.extend((0..self.buckets.len()).map(|i| Page::Tasks(Some(i))));
        out.push(Page::Calendar);
        out.extend((0..self.months.len()).map(Page::Month));
        out.push(Page::Agenda);
        out.push(Page::Missions);
        out.extend(self.missions.iter().map(Page::Mission));
        out.push(Page::Index);
        out.push(Page::NotFound);
        out
    }

    /// The key of a note's page: everything its context and HTML are made from. The note's text
    /// gives its title, tags, front matter, date and tasks; the rest is what other notes and the
    /// site contribute.
    fn note_key(&self, p: &Published) -> String {
        let catalog = self.catalog;
        let mut h = Sha256::new();
        h.update(b"note.html\0");
        h.update(self.site_hash.as_bytes());
        markdown_signature(catalog, &p.note.path, 0, &mut Vec::new(), &mut h);
        h.update([0xfd]);
        for &src in catalog.backlinks_of(&p.note.path) {
            let s = &catalog.notes[src as usize];
            {
                h.update(s.note.path.as_bytes());
                h.update([0]);
                h.update(s.note.title.as_bytes());
                h.update([0]);
            }
        }
        h.update([0xfd]);
        if let Some(m) = self.mission_of(p) {
            h.update(m.id.as_bytes());
            h.update([0]);
            h.update(m.title.as_bytes());
        }
        h.update([0xfd]);
        if let Some(f) = self.children(p) {
            erased::Hashable::feed(&folder_ctx(f, catalog, self.folders, &p.page), &mut h);
        }
        hex(&h.finalize()[..16])
    }

    /// The folder whose URL a note's page takes (`dir.md` beside `dir/`), if any.
    fn children(&self, p: &Published) -> Option<&Folder> {
        self.folders
            .get(strip_note_ext(&p.note.path))
            .filter(|f| url::folder_page(&f.path) == p.page)
    }

    /// A note page's context (without its HTML).
    fn note_ctx<'s>(&'s self, p: &'s Published) -> NoteCtx<'s> {
        let catalog = self.catalog;
        let at = &p.page;
        NoteCtx {
            title: &p.note.title,
            path: &p.note.path,
            tags: p
                .note
                .tags
                .iter()
                .map(|t| TagRef {
                    name: t.clone(),
                    url: tag_page(t).relative_from(at),
                    count: 0,
                })
                .collect(),
            backlinks: catalog
                .backlinks_of(&p.note.path)
                .iter()
                .map(|&src| &catalog.notes[src as usize])
                .map(|s| Link {
                    title: s.note.title.clone(),
                    url: s.page.relative_from(at),
                })
                .collect(),
            breadcrumbs: breadcrumbs(parent(&p.note.path), at, self.folders),
            date: p.date.as_deref(),
            // Thousands of tasks are thousands of template values: made only for a theme
            // that may show them (the note's own HTML lists them already).
            tasks: if self.theme.note_tasks_read {
                self.task_list(&self.tasks[catalog.task_range(&p.note.path)], at, false)
            } else {
                TaskList::Own(Vec::new())
            },
            front_matter: &p.note.front_matter,
            mission: self.mission_of(p).map(|m| Link {
                title: m.title.clone(),
                url: mission_page(&m.id).relative_from(at),
            }),
            children: self
                .children(p)
                .map(|f| folder_ctx(f, catalog, self.folders, at)),
        }
    }

    /// A page's template, kind, title, place, vault path and variables.
    fn page<'s>(&'s self, which: Page<'s>) -> PageParts<'s> {
        let catalog = self.catalog;
        match which {
            Page::Folder(f) => {
                let page = url::folder_page(&f.path);
                let ctx = folder_ctx(f, catalog, self.folders, &page);
                (
                    "folder.html",
                    "folder",
                    ctx.title.to_owned(),
                    page,
                    Some(f.path.clone()),
                    vec![("folder", var(ctx))],
                )
            }
            Page::Tag(key) => {
                let (name, list) = &self.by_tag[key];
                let page = tag_page(name);
                let children: Vec<TagRef> = self
                    .child_tags(key)
                    .map(|(n, l)| TagRef {
                        name: n.clone(),
                        url: tag_page(n).relative_from(&page),
                        count: l.len(),
                    })
                    .collect();
                let notes: Vec<NoteRef<'_>> = list.iter().map(|p| note_ref(p, &page)).collect();
                let parent = name.rsplit_once('/').map(|(up, _)| Link {
                    title: format!("#{up}"),
                    url: tag_page(up).relative_from(&page),
                });
                let vars = vec![(
                    "tag",
                    var(TagCtx {
                        name,
                        notes,
                        children,
                        parent,
                    }),
                )];
                ("tag.html", "tag", format!("#{name}"), page, None, vars)
            }
            Page::Tags => {
                let page = SitePath::page("tags");
                let all: Vec<Value> = self
                    .by_tag
                    .values()
                    .map(|(n, l)| json!({ "name": n, "url": tag_page(n).relative_from(&page), "count": l.len(), "depth": n.matches('/').count() }))
                    .collect();
                (
                    "tags.html",
                    "tags",
                    "Tags".into(),
                    page,
                    None,
                    vec![("tags", var(all))],
                )
            }
            Page::Tasks(bucket) => {
                let page = match bucket {
                    None => SitePath::page("tasks"),
                    Some(i) => bucket_page(&self.buckets[i].0),
                };
                let list: &[Tv<'_>] = match bucket {
                    Some(i) => &self.buckets[i].1,
                    None if self.open.len() <= TASKS_INLINE => &self.open,
                    None => &[],
                };
                let tasks = self.task_list(list, &page, self.theme.prerendered.tasks);
                // Counts only on the overview: on a month's page they would make one task's edit
                // re-render every month's page, not just its own and the overview.
                let buckets: Vec<Value> = self
                    .buckets
                    .iter()
                    .enumerate()
                    .map(|(i, (key, list))| {
                        let mut b = json!({
                            "key": key,
                            "title": bucket_title(key),
                            "url": bucket_page(key).relative_from(&page),
                            "current": Some(i) == bucket,
                        });
                        if bucket.is_none() {
                            b["open"] = json!(list.len());
                        }
                        b
                    })
                    .collect();
                let neighbour = |j: Option<usize>| {
                    j.and_then(|j| self.buckets.get(j)).map(|(k, _)| Link {
                        title: bucket_title(k),
                        url: bucket_page(k).relative_from(&page),
                    })
                };
                let current = bucket.map(|i| {
                    json!({
                        "key": self.buckets[i].0,
                        "title": bucket_title(&self.buckets[i].0),
                        "prev": neighbour(i.checked_sub(1)),
                        "next": neighbour(Some(i + 1)),
                    })
                });
                let title = match bucket {
                    None => "Tasks".to_owned(),
                    Some(i) => format!("Tasks · {}", bucket_title(&self.buckets[i].0)),
                };
                let mut vars = vec![
                    ("tasks", var(tasks)),
                    ("buckets", var(buckets)),
                    ("bucket", var(current)),
                ];
                if bucket.is_none() {
                    vars.push(("open_count", var(self.open.len())));
                    vars.push(("closed_count", var(catalog.tasks.len() - self.open.len())));
                }
                ("tasks.html", "tasks", title, page, None, vars)
            }
            Page::Calendar => {
                let page = SitePath::page("calendar");
                let vars = vec![
                    ("months", var(self.month_list(&page, true))),
                    ("month", var(Value::Null)),
                    ("days", var(Vec::<Value>::new())),
                ];
                (
                    "calendar.html",
                    "calendar",
                    "Calendar".into(),
                    page,
                    None,
                    vars,
                )
            }
            Page::Month(i) => {
                let (y, m) = self.months[i];
                let page = month_page(y, m);
                let weeks = month_grid(y, m, &self.by_day, &page);
                let days: Vec<DayList<'_>> = self
                    .by_day
                    .range(month_range(y, m))
                    .map(|(d, ts)| DayList {
                        date: d.format("%Y-%m-%d").to_string(),
                        tasks: self.task_list(ts, &page, self.theme.prerendered.calendar),
                    })
                    .collect();
                let neighbour = |j: Option<usize>| {
                    j.and_then(|j| self.months.get(j)).map(|&(y, m)| Link {
                        title: month_title(y, m),
                        url: month_page(y, m).relative_from(&page),
                    })
                };
                let month = MonthFull {
                    key: format!("{y}-{m:02}"),
                    title: month_title(y, m),
                    weeks,
                    prev: neighbour(i.checked_sub(1)),
                    next: neighbour(Some(i + 1)),
                };
                let vars = vec![
                    ("months", var(self.month_list(&page, false))),
                    ("month", var(month)),
                    ("days", var(days)),
                ];
                (
                    "calendar.html",
                    "calendar",
                    month_title(y, m),
                    page,
                    None,
                    vars,
                )
            }
            Page::Agenda => {
                // The agenda depends on the reader's today, which a static page cannot know: it
                // carries the open tasks' dates with counts, and its script takes the tasks
                // themselves from the month pages around today.
                let page = SitePath::page("agenda");
                let vars = vec![
                    ("agenda_days", var(self.agenda_days.as_str())),
                    ("months", var(self.month_list(&page, true))),
                    ("window", var(7)),
                ];
                ("agenda.html", "agenda", "Agenda".into(), page, None, vars)
            }
            Page::Missions => {
                let page = SitePath::page("missions");
                let list: Vec<MissionCtx> = self
                    .missions
                    .iter()
                    .map(|m| relative_mission(m, &page))
                    .collect();
                (
                    "missions.html",
                    "missions",
                    "Missions".into(),
                    page,
                    None,
                    vec![("missions", var(list))],
                )
            }
            Page::Mission(m) => {
                let page = mission_page(&m.id);
                let mut tasks: Vec<Tv<'_>> = self
                    .tasks
                    .iter()
                    .filter(|t| t.mission.as_deref() == Some(m.id.as_str()))
                    .copied()
                    .collect();
                tasks.sort_by(|a, b| {
                    (!is_open(a), a.due.is_none(), &a.due, &a.path, a.line).cmp(&(
                        !is_open(b),
                        b.due.is_none(),
                        &b.due,
                        &b.path,
                        b.line,
                    ))
                });
                let tasks: Vec<TaskCtx<'_>> = tasks
                    .iter()
                    .map(|t| task_ctx(t.task, t.note, &page))
                    .collect();
                let notes: Vec<NoteRef<'_>> = catalog
                    .notes
                    .iter()
                    .filter(|p| p.note.mission.as_deref() == Some(m.id.as_str()))
                    .map(|p| note_ref(p, &page))
                    .collect();
                let vars = vec![
                    ("mission", var(relative_mission(m, &page))),
                    ("tasks", var(tasks)),
                    ("notes", var(notes)),
                ];
                ("mission.html", "mission", m.title.clone(), page, None, vars)
            }
            Page::Index => {
                let page = SitePath::root();
                let mut recent: Vec<&Published> = catalog
                    .notes
                    .iter()
                    .filter(|p| p.date.is_some() && !is_run(p))
                    .collect();
                first_sorted(&mut recent, RECENT, |a, b| {
                    (&b.date, &a.note.path).cmp(&(&a.date, &b.note.path))
                });
                let recent: Vec<NoteRef<'_>> = recent.iter().map(|p| note_ref(p, &page)).collect();
                let top: Vec<FolderEntry> = self
                    .folders
                    .get("")
                    .map(|root| {
                        root.folders
                            .iter()
                            .filter_map(|f| self.folders.get(f.as_str()))
                            .filter(|f| !catalog::reserved(&url::folder_page(&f.path)))
                            .map(|f| folder_entry(f, &page))
                            .collect()
                    })
                    .unwrap_or_default();
                let mut top_tags: Vec<TagRef> = self
                    .by_tag
                    .values()
                    .filter(|(n, _)| !n.contains('/'))
                    .map(|(n, l)| TagRef {
                        name: n.clone(),
                        url: tag_page(n).relative_from(&page),
                        count: l.len(),
                    })
                    .collect();
                top_tags.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
                top_tags.truncate(24);
                let root_notes: Vec<NoteRef<'_>> = self
                    .folders
                    .get("")
                    .map(|r| {
                        r.notes
                            .iter()
                            .filter_map(|n| catalog.note(n))
                            .map(|p| note_ref(p, &page))
                            .collect()
                    })
                    .unwrap_or_default();
                let mut runs: Vec<&Published> =
                    catalog.notes.iter().filter(|p| is_run(p)).collect();
                first_sorted(&mut runs, RUNS, |a, b| {
                    (run_time(b), &b.note.path).cmp(&(run_time(a), &a.note.path))
                });
                let runs: Vec<Value> = runs
                    .iter()
                    .map(|p| {
                        let fm = &p.note.front_matter;
                        json!({
                            "title": p.note.title,
                            "url": p.page.relative_from(&page),
                            "kind": fm.get("kind"),
                            "status": fm.get("status"),
                            "started": run_time(p),
                            "summary": fm.get("summary"),
                        })
                    })
                    .collect();
                let counts = json!({
                    "notes": catalog.notes.len(),
                    "tasks": catalog.tasks.len(),
                    "tasks_open": self.open.len(),
                    "missions": self.missions.len(),
                    "tags": self.by_tag.len(),
                });
                let vars = vec![
                    ("recent", var(recent)),
                    ("folders", var(top)),
                    ("notes", var(root_notes)),
                    ("tags", var(top_tags)),
                    (
                        "missions",
                        var(self
                            .missions
                            .iter()
                            .map(|m| relative_mission(m, &page))
                            .collect::<Vec<_>>()),
                    ),
                    ("runs", var(runs)),
                    ("agenda_days", var(self.agenda_days.as_str())),
                    ("counts", var(counts)),
                ];
                (
                    "index.html",
                    "index",
                    self.config.site.title.clone(),
                    page,
                    None,
                    vars,
                )
            }
            Page::NotFound => {
                // Served for any missing path at any depth: `root` is the base URL, not relative.
                let base = absolute_root(&self.config.site.base_url);
                (
                    "404.html",
                    "404",
                    "Not found".into(),
                    SitePath::file("404.html"),
                    None,
                    vec![("root", var(base))],
                )
            }
        }
    }

    /// Every month with dated tasks, linked from `from`; with their counts only on an overview
    /// page (`counted`): a month's own page leaves them out, so that a task's edit re-renders its
    /// month and the overviews, not every month.
    fn month_list(&self, from: &SitePath, counted: bool) -> Vec<MonthCtx> {
        self.months
            .iter()
            .map(|&(y, m)| {
                let (count, open) = if counted {
                    let days = self.by_day.range(month_range(y, m));
                    let (c, o) = days.fold((0, 0), |(c, o), (_, ts)| {
                        (c + ts.len(), o + ts.iter().filter(|t| is_open(t)).count())
                    });
                    (Some(c), Some(o))
                } else {
                    (None, None)
                };
                MonthCtx {
                    key: format!("{y}-{m:02}"),
                    title: month_title(y, m),
                    url: month_page(y, m).relative_from(from),
                    count,
                    open,
                }
            })
            .collect()
    }

    /// The site frame of the 404 page: links from the base URL, since it is served at any depth.
    fn absolute_site(&self) -> SiteCtx<'a> {
        let mut site = self.site(&SitePath::root());
        let base = absolute_root(&self.config.site.base_url);
        for l in &mut site.nav {
            l.url = format!("{base}{}", l.url.trim_start_matches("./"));
        }
        site.search_index = format!("{base}search.json");
        site.feed = format!("{base}feed.xml");
        site.home = base;
        site
    }
}

/// A note page's context from the note's own data and what the caller knows of its neighbours
/// (for a render that does not read the whole vault; no same-URL folder listing).
pub(super) fn note_ctx_of<'c>(
    note: &'c CatalogNote,
    page: &SitePath,
    date: Option<&'c str>,
    tasks: &'c [TaskView],
    backlinks: Vec<Link>,
    mission: Option<Link>,
    folders: &BTreeMap<String, Folder>,
) -> NoteCtx<'c> {
    NoteCtx {
        title: &note.title,
        path: &note.path,
        tags: note
            .tags
            .iter()
            .map(|t| TagRef {
                name: t.clone(),
                url: tag_page(t).relative_from(page),
                count: 0,
            })
            .collect(),
        backlinks,
        breadcrumbs: breadcrumbs(parent(&note.path), page, folders),
        date,
        tasks: TaskList::Own(
            tasks
                .iter()
                .map(|t| TaskCtx {
                    task: t,
                    url: at_block(page.relative_from(page), t),
                    note_title: &note.title,
                    date: agenda_date(t).map(String::as_str),
                })
                .collect(),
        ),
        front_matter: &note.front_matter,
        mission,
        children: None,
    }
}

/// The frame every page shows: site settings and navigation.
pub(super) fn site_ctx<'c>(
    config: &'c Config,
    theme: &'c Theme,
    nav_targets: &[(String, SitePath)],
    page: &SitePath,
) -> SiteCtx<'c> {
    SiteCtx {
        title: config.site.title.as_str(),
        base_url: config.site.base_url.as_str(),
        lang: config.site.lang.as_str(),
        theme: theme.name(),
        nav: nav(nav_targets, page),
        search_index: SitePath::file("search.json").relative_from(page),
        feed: SitePath::file("feed.xml").relative_from(page),
        home: SitePath::root().relative_from(page),
    }
}

/// Renders the catalog's site in `theme` into `stage`: every page whose key the live build does
/// not already have is rendered and written as soon as it is done, so memory holds a few pages at
/// a time, not the site; the rest are kept.
pub(crate) fn build(
    catalog: &Catalog,
    theme: &Theme,
    config: &Config,
    stamp: &str,
    stage: &Stage<'_>,
    progress: &dyn Progress,
) -> Result<Build, PublishError> {
    let t0 = std::time::Instant::now();
    let mut shared = Shared::new(catalog, theme, config);
    let others = shared.pages();
    let pages = catalog.notes.len() + others.len();
    tracing::debug!(
        pages,
        elapsed_ms = t0.elapsed().as_millis() as u64,
        "pages listed"
    );
    progress.start(theme.name(), pages);

    let load = |p: &str| catalog.texts.text(p);
    let page_of = |p: &str| catalog.note(p).map(|n| n.page.clone());
    let linker = Linker {
        resolver: &catalog.resolver,
        load: &load,
        page_of: &page_of,
    };

    // What the last build from this catalog keyed pages from.
    let memos = catalog
        .page_memos
        .lock()
        .ok()
        .and_then(|mut m| m.remove(stamp))
        .unwrap_or_default();
    let same_frame = memos.note_site == shared.site_hash;

    // Note pages: keyed, and rendered and written only when the live build lacks the key. Most
    // notes are unchanged after a small edit; for them this is a few comparisons and shared
    // copies, no lookup by path and no copy of their memo or search entry.
    let live_notes = stage.live_notes(catalog.notes.iter().map(|p| p.note.path.as_str()));
    // The last field: whether the note's search entry is the live build's, byte for byte.
    type NoteOut = (
        OutFile,
        Arc<NoteMemo>,
        Arc<RawValue>,
        bool,
        Option<Arc<NoteKeyMemo>>,
        bool,
    );
    // Note pages and the other pages side by side: one long note or one month of many tasks is
    // a page of its own, and should not wait for the rest.
    let notes_side = || -> Result<Vec<NoteOut>, PublishError> {
        catalog
            .notes
            .par_iter()
            .zip(&live_notes)
            .enumerate()
            .map(|(i, (p, live))| {
                let out = p.page.output_file();
                let backlinks = catalog.backlinks_of(&p.note.path);
                let children = shared.children(p).is_some();
                let mission = shared.mission_of(p);
                // Notes that transclude others, and notes that are a folder's page, are keyed afresh
                // every time.
                let memoable = !children && !catalog.embeds.contains_key(&p.note.path);
                let links = catalog.link_digests.get(&p.note.path);
                let known = memos.note(i, &p.note).filter(|m| {
                    memoable && same_frame && m.matches(catalog, backlinks, mission, links)
                });
                let key_memo = match known {
                    Some(m) => {
                        catalog
                            .note_key_hits
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        Some(m.clone())
                    }
                    None => memoable.then(|| {
                        let key = shared.note_key(p);
                        Arc::new(NoteKeyMemo::new(catalog, p, backlinks, mission, links, key))
                    }),
                };
                let key = match &key_memo {
                    Some(m) => m.key.clone(),
                    None => shared.note_key(p),
                };
                let face = catalog.face_at(i);
                let live = live.filter(|_| stage.live_key(&out) == Some(key.as_str()));
                let result = match live {
                    Some((live, entry)) => {
                        // The live memo, shared, when what it says of the note still holds.
                        let memo = if live.same_facts(p, face, backlinks, mission, children) {
                            live.clone()
                        } else {
                            let mut memo = note_memo(p, face, backlinks, mission, children);
                            memo.take_rendered(live);
                            Arc::new(memo)
                        };
                        Ok((
                            OutFile {
                                path: out,
                                key,
                                body: Body::Kept,
                            },
                            memo,
                            entry.clone(),
                            false,
                            key_memo,
                            true,
                        ))
                    }
                    None => render_note_page(&shared, p, &linker)
                        .map_err(PublishError::from)
                        .and_then(|(bytes, html)| {
                            stage.put(&out, &key, &Body::Bytes(bytes))?;
                            let mut memo = note_memo(p, face, backlinks, mission, children);
                            memo.set_rendered(&html, &|a| catalog.attachment_allowed(a));
                            let entry: Arc<RawValue> =
                                search_entry(&p.note, &p.page, &html.excerpt).into();
                            let same = live.is_some_and(|(_, live)| live.get() == entry.get());
                            Ok((
                                OutFile {
                                    path: out,
                                    key,
                                    body: Body::Staged,
                                },
                                Arc::new(memo),
                                entry,
                                true,
                                key_memo,
                                same,
                            ))
                        }),
                };
                progress.advance(1);
                result
            })
            .collect::<Result<_, PublishError>>()
    };
    // Every other page: its context is built to key it, and rendered only when the key is new.
    type OtherOut = (OutFile, bool, Option<(String, PageMemo)>);
    let others_side = || -> Result<Vec<OtherOut>, PublishError> {
        others
            .into_par_iter()
            // Each page a job of its own, so that a long one never holds up the rest of its chunk.
            .with_max_len(1)
            .map(|which| {
                let inputs = shared.memo_inputs(which);
                let known = inputs.as_ref().and_then(|(page, extra, refs)| {
                    let memo = memos.pages.get(page.as_str())?;
                    (memo.extra == *extra
                        && memo.refs == *refs
                        && stage.live_key(&page.output_file()) == Some(memo.key.as_str()))
                    .then(|| memo.key.clone())
                });
                if let Some(key) = known
                    && let Some((page, extra, refs)) = inputs
                {
                    catalog
                        .page_memo_hits
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    progress.advance(1);
                    let file = OutFile {
                        path: page.output_file(),
                        key: key.clone(),
                        body: Body::Kept,
                    };
                    let memo = PageMemo { extra, refs, key };
                    return Ok((file, false, Some((page.as_str().to_owned(), memo))));
                }
                let (template, kind, title, page, path, vars) = shared.page(which);
                let pc = PageCtx {
                    kind,
                    title,
                    url: page.as_str().to_owned(),
                    path,
                };
                let site = if matches!(which, Page::NotFound) {
                    shared.absolute_site()
                } else {
                    shared.site(&page)
                };
                let key = {
                    let mut h = Sha256::new();
                    for part in [&template as &dyn erased::Hashable, &site, &pc] {
                        part.feed(&mut h);
                        h.update([0xff]);
                    }
                    for (name, value) in &vars {
                        h.update(name.as_bytes());
                        h.update([0]);
                        value.feed(&mut h);
                        h.update([0xff]);
                    }
                    hex(&h.finalize()[..16])
                };
                let memo = inputs.map(|(at, extra, refs)| {
                    let key = key.clone();
                    (at.as_str().to_owned(), PageMemo { extra, refs, key })
                });
                let out = page.output_file();
                let result = if stage.live_key(&out) == Some(key.as_str()) {
                    Ok((
                        OutFile {
                            path: out,
                            key,
                            body: Body::Kept,
                        },
                        false,
                        memo,
                    ))
                } else {
                    let started = std::time::Instant::now();
                    let mut context = base_context(&site, &pc, &page);
                    for (name, value) in &vars {
                        value.insert_into(&mut context, name);
                    }
                    render(theme, template, &context)
                        .map_err(PublishError::from)
                        .and_then(|bytes| {
                            slow_page(page.as_str(), started, bytes.len());
                            stage.put(&out, &key, &Body::Bytes(bytes))?;
                            Ok((
                                OutFile {
                                    path: out,
                                    key,
                                    body: Body::Staged,
                                },
                                true,
                                memo,
                            ))
                        })
                };
                progress.advance(1);
                result
            })
            .collect::<Result<_, PublishError>>()
    };
    let (note_files, other_files) = rayon::join(notes_side, others_side);
    // The task values long lists kept: freed while the rest of the build goes on.
    super::drop_later(std::mem::take(&mut shared.task_memos));
    let (note_files, other_files) = (note_files?, other_files?);
    progress.finish();
    let last_sitemap = memos.sitemap.clone();
    super::drop_later(memos);

    let mut manifest = Manifest::new(stamp.to_owned());
    let mut files: Vec<OutFile> = Vec::with_capacity(pages + 64);
    let mut rendered = 0;
    let notes = &catalog.notes;
    let mut entries = Vec::with_capacity(notes.len());
    let mut note_memos = Vec::with_capacity(notes.len());
    let mut memos_by_path = Vec::with_capacity(notes.len());
    // The search index is the live one when every entry is, in the same order: each note has
    // the live entry it had, and no note came or went.
    let mut same_entries = stage.live_note_count() == Some(notes.len());
    for ((file, memo, entry, fresh, key_memo, same), p) in note_files.into_iter().zip(notes) {
        rendered += usize::from(fresh);
        same_entries &= same;
        note_memos.push(key_memo);
        memos_by_path.push((p.note.path.clone(), memo));
        entries.push(entry);
        files.push(file);
    }
    // In path order already: the map is built in one go.
    manifest.notes = memos_by_path.into_iter().collect();
    let mut memos = PageMemos {
        pages: HashMap::new(),
        notes: note_memos,
        note_site: shared.site_hash.clone(),
        by_note: OnceLock::new(),
        alive: (
            catalog.tasks.clone(),
            catalog.notes.iter().map(|p| p.note.clone()).collect(),
        ),
        sitemap: None,
    };
    for (file, fresh, memo) in other_files {
        rendered += usize::from(fresh);
        files.push(file);
        if let Some((page, memo)) = memo {
            memos.pages.insert(page, memo);
        }
    }
    if let Ok(mut m) = catalog.page_memos.lock() {
        m.insert(stamp.to_owned(), memos);
    }
    tracing::debug!(
        rendered,
        elapsed_ms = t0.elapsed().as_millis() as u64,
        "pages rendered"
    );

    // Attachments the published notes use, and the site-wide files.
    let mut attachments: BTreeSet<&str> = BTreeSet::new();
    let mut broken_links = 0;
    for memo in manifest.notes.values() {
        broken_links += memo.broken;
        attachments.extend(memo.attachments.iter().map(String::as_str));
    }
    let mut attachment_count = 0;
    for path in attachments {
        let Some(key) = catalog.texts.attachment_key(path) else {
            continue;
        };
        attachment_count += 1;
        let body = if stage.live_key(path) == Some(key.as_str()) {
            Body::Kept
        } else {
            Body::Attachment(path.to_owned())
        };
        files.push(OutFile {
            path: path.to_owned(),
            key,
            body,
        });
    }
    let mut page_paths: Vec<&str> = files
        .iter()
        .filter(|f| f.path.ends_with("index.html"))
        .map(|f| f.path.as_str())
        .collect();
    page_paths.sort_unstable();
    // The site-wide files, made side by side. The search index and the sitemap are most of it,
    // and a small edit seldom changes either: the search index is the live one when every entry
    // is, and the sitemap when the pages are the same as last time.
    let sitemap_inputs = {
        let mut h = Sha256::new();
        h.update(config.site.base_url.as_bytes());
        for p in &page_paths {
            h.update([0]);
            h.update(p.as_bytes());
        }
        hex(&h.finalize()[..16])
    };
    let search_key = stage
        .live_key(SEARCH_INDEX)
        .filter(|_| same_entries)
        .map(str::to_owned);
    let sitemap_key = last_sitemap
        .filter(|(inputs, key)| {
            *inputs == sitemap_inputs && stage.live_key(SITEMAP_FILE) == Some(key.as_str())
        })
        .map(|(_, key)| key);
    let made = |bytes: Vec<u8>| (hex(&Sha256::digest(&bytes)[..16]), Some(bytes));
    let ((search, sitemap_file), feed_file) = rayon::join(
        || {
            rayon::join(
                || search_key.map_or_else(|| made(search_index(&entries)), |k| (k, None)),
                || {
                    sitemap_key.map_or_else(
                        || made(sitemap(&config.site.base_url, &page_paths)),
                        |k| (k, None),
                    )
                },
            )
        },
        || made(feed(&manifest.notes, &entries, config)),
    );
    if let Ok(mut m) = catalog.page_memos.lock()
        && let Some(memos) = m.get_mut(stamp)
    {
        memos.sitemap = Some((sitemap_inputs, sitemap_file.0.clone()));
    }
    let mut generated = vec![
        (SEARCH_INDEX.to_owned(), search),
        (SITEMAP_FILE.to_owned(), sitemap_file),
        ("feed.xml".to_owned(), feed_file),
        (
            "static/tokens.css".to_owned(),
            made(theme.tokens_css.as_bytes().to_vec()),
        ),
    ];
    for (rel, bytes) in &theme.statics {
        generated.push((format!("static/{rel}"), made(bytes.clone())));
    }
    // The manifest holds the entries the live build's search index is made of.
    manifest.entries = entries;
    for (path, (key, bytes)) in generated {
        let body = match bytes {
            Some(bytes) if stage.live_key(&path) != Some(key.as_str()) => Body::Bytes(bytes),
            _ => Body::Kept,
        };
        files.push(OutFile { path, key, body });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    // From sorted pairs a map is built in one go, not by a search per file.
    manifest.files = files
        .iter()
        .map(|f| (f.path.clone(), f.key.clone()))
        .collect();
    Ok(Build {
        files,
        manifest,
        pages,
        rendered,
        attachments: attachment_count,
        broken_links,
    })
}

/// Renders a note's page: its Markdown, then the theme's `note.html`.
fn render_note_page(
    shared: &Shared<'_>,
    p: &Published,
    linker: &Linker<'_>,
) -> Result<(Vec<u8>, NoteHtml), RenderError> {
    let started = std::time::Instant::now();
    let text = shared.catalog.texts.text(&p.note.path).unwrap_or_default();
    let html = note_html(linker, &p.page, &p.note.path, &text, &p.note.title);
    let markdown_ms = started.elapsed().as_millis() as u64;
    let ctx = shared.note_ctx(p);
    let site = shared.site(&p.page);
    let bytes = note_page_bytes(shared.theme, &site, &p.page, &p.note, &ctx, &html)?;
    if markdown_ms >= 100 {
        tracing::debug!(note = %p.note.path, markdown_ms, "a slow note");
    }
    slow_page(&p.note.path, started, bytes.len());
    Ok((bytes, html))
}

/// A note's Markdown as HTML, sanitized when it holds raw HTML.
pub(crate) fn note_html(
    linker: &Linker<'_>,
    page: &SitePath,
    path: &str,
    text: &str,
    title: &str,
) -> NoteHtml {
    let mut html = render_note(linker, page, path, text, title);
    if html.raw_html {
        html.html = sanitize(&html.html);
    }
    html
}

/// A note's page through the theme's `note.html`.
pub(super) fn note_page_bytes(
    theme: &Theme,
    site: &SiteCtx<'_>,
    page: &SitePath,
    note: &CatalogNote,
    ctx: &NoteCtx<'_>,
    html: &NoteHtml,
) -> Result<Vec<u8>, RenderError> {
    let pc = PageCtx {
        kind: "note",
        title: note.title.clone(),
        url: page.as_str().to_owned(),
        path: Some(note.path.clone()),
    };
    let mut context = base_context(site, &pc, page);
    // The note's HTML: built by quire's own writer, which escapes all text, or — when the note
    // holds raw HTML — sanitized by ammonia. Themes print it with `| safe`.
    context.insert(
        "note",
        &NoteFull {
            ctx,
            content: &html.html,
            toc: &html.toc,
        },
    );
    render(theme, "note.html", &context)
}

impl NoteMemo {
    /// Takes what rendering the note gave: its attachments (those that may be published),
    /// broken links and transcluded notes.
    pub(crate) fn set_rendered(&mut self, html: &NoteHtml, allowed: &dyn Fn(&str) -> bool) {
        self.attachments = html
            .attachments
            .iter()
            .filter(|a| allowed(a))
            .cloned()
            .collect();
        self.broken = html.broken;
        self.embeds = html.embeds.iter().cloned().collect();
    }

    /// Takes what an earlier rendering of the same page gave.
    pub(crate) fn take_rendered(&mut self, live: &NoteMemo) {
        self.attachments = live.attachments.clone();
        self.broken = live.broken;
        self.embeds = live.embeds.clone();
    }
}

/// A digest of what other pages show of a note: its title, tags, aliases, front matter (date,
/// publishing flags, a run's or mission's fields), mission, tasks, and where its links lead.
pub(crate) fn face(
    note: &CatalogNote,
    tasks: &[&TaskView],
    link_digest: Option<&[u8; 32]>,
) -> String {
    let mut h = Sha256::new();
    for part in [
        &note.title as &dyn erased::Hashable,
        &note.tags,
        &note.aliases,
        &note.front_matter,
        &note.mission,
    ] {
        part.feed(&mut h);
        h.update([0xff]);
    }
    // Field by field rather than through serde: a note may hold 100,000 tasks.
    for t in tasks {
        feed_task(&mut h, t);
    }
    h.update([0xff]);
    if let Some(d) = link_digest {
        h.update(d);
    }
    hex(&h.finalize()[..16])
}

/// Every field of `t` into `h`, each one delimited (a length before each string, a mark for an
/// absent one), so that two different tasks never feed the same bytes.
fn feed_task(h: &mut Sha256, t: &TaskView) {
    fn text(h: &mut Sha256, s: &str) {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    }
    fn opt(h: &mut Sha256, s: &Option<String>) {
        match s {
            Some(s) => {
                h.update([1]);
                text(h, s);
            }
            None => h.update([0]),
        }
    }
    fn list(h: &mut Sha256, l: &[String]) {
        h.update((l.len() as u64).to_le_bytes());
        for s in l {
            text(h, s);
        }
    }
    let TaskView {
        path,
        line,
        status,
        text: description,
        due,
        scheduled,
        start,
        created,
        done,
        cancelled,
        priority,
        recurrence,
        id,
        depends_on,
        tags,
        mission,
        heading,
        block_id,
    } = t;
    text(h, path);
    h.update((*line as u64).to_le_bytes());
    text(h, status);
    text(h, description);
    for o in [
        due, scheduled, start, created, done, cancelled, priority, recurrence, id,
    ] {
        opt(h, o);
    }
    list(h, depends_on);
    list(h, tags);
    for o in [mission, heading, block_id] {
        opt(h, o);
    }
}

/// A published note's memo facts (see [`memo_of`]).
fn note_memo(
    p: &Published,
    face: &str,
    backlinks: &[u32],
    mission: Option<&MissionCtx>,
    children: bool,
) -> NoteMemo {
    memo_of(
        &p.note,
        p.date.as_deref(),
        face.to_owned(),
        backlinks.to_vec(),
        mission.map(|m| (m.id.clone(), m.title.clone())),
        children,
    )
}

impl NoteMemo {
    /// Whether the facts [`note_memo`] would give are the ones this memo holds.
    fn same_facts(
        &self,
        p: &Published,
        face: &str,
        backlinks: &[u32],
        mission: Option<&MissionCtx>,
        children: bool,
    ) -> bool {
        self.title == p.note.title
            && self.date == p.date
            && self.feed == in_feed(&p.note.path, p.date.as_deref())
            && self.face == face
            && self.backlinks == backlinks
            && same_mission(&self.mission, mission)
            && self.children == children
    }
}

/// Whether a note goes into the feed: dated, and not a run record.
fn in_feed(path: &str, date: Option<&str>) -> bool {
    date.is_some() && !is_run_path(path)
}

/// The memo facts that come from a note's own data, not from rendering it.
pub(crate) fn memo_of(
    note: &CatalogNote,
    date: Option<&str>,
    face: String,
    backlinks: Vec<u32>,
    mission: Option<(String, String)>,
    children: bool,
) -> NoteMemo {
    NoteMemo {
        title: note.title.clone(),
        date: date.map(str::to_owned),
        feed: in_feed(&note.path, date),
        face,
        backlinks,
        mission,
        children,
        ..NoteMemo::default()
    }
}

/// The task bucket of open tasks without a due date.
const UNDATED: &str = "undated";

fn bucket_page(key: &str) -> SitePath {
    SitePath::page(&format!("tasks/{key}"))
}

fn bucket_title(key: &str) -> String {
    match key
        .split_once('-')
        .and_then(|(y, m)| Some((y.parse().ok()?, m.parse().ok()?)))
    {
        Some((y, m)) => format!("Due {}", month_title(y, m)),
        None => "No due date".to_owned(),
    }
}

/// A template variable: hashed straight from its typed value for the page's key, and handed to
/// tera only when the page is rendered (no JSON text or `Value` tree in between).
fn var<'v, T: Serialize + Send + 'v>(v: T) -> Box<dyn erased::Var + 'v> {
    Box::new(v)
}

/// The key of a page: a hash of the JSON of its parts.
fn key_of(parts: &[&dyn erased::Hashable]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        p.feed(&mut h);
        h.update([0xff]);
    }
    hex(&h.finalize()[..16])
}

/// Serializable values fed to a hash (serde's `Serialize` is not object-safe).
mod erased {
    use sha2::Digest;

    pub(super) trait Hashable {
        fn feed(&self, h: &mut sha2::Sha256);
    }

    /// A template variable of any serializable type.
    pub(super) trait Var: Hashable + Send {
        fn insert_into(&self, context: &mut tera::Context, name: &str);
    }

    impl<T: serde::Serialize + Send> Var for T {
        fn insert_into(&self, context: &mut tera::Context, name: &str) {
            context.insert(name.to_owned(), self);
        }
    }

    thread_local! {
        /// Set while a value is serialized into a page key rather than a template context.
        static HASHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Whether the value being serialized goes into a page key (see [`super::TaskList`]).
    pub(super) fn hashing() -> bool {
        HASHING.with(std::cell::Cell::get)
    }

    impl<T: serde::Serialize> Hashable for T {
        fn feed(&self, h: &mut sha2::Sha256) {
            struct W<'a>(&'a mut sha2::Sha256);
            impl std::io::Write for W<'_> {
                fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                    self.0.update(buf);
                    Ok(buf.len())
                }
                fn flush(&mut self) -> std::io::Result<()> {
                    Ok(())
                }
            }
            // Serializing plain data to a writer that cannot fail does not fail.
            let was = HASHING.with(|f| f.replace(true));
            let _ = serde_json::to_writer(W(h), self);
            HASHING.with(|f| f.set(was));
        }
    }
}

/// Feeds everything the Markdown output of the note at `path` depends on into `h`: its text, where
/// each of its links leads now (and whether that note is published), and — for notes it transcludes,
/// as deep as rendering goes — the same of theirs.
fn markdown_signature<'c>(
    catalog: &'c Catalog,
    path: &'c str,
    depth: u8,
    chain: &mut Vec<&'c str>,
    h: &mut Sha256,
) {
    h.update(path.as_bytes());
    h.update([0]);
    if let Some(hash) = catalog.hashes.get(path) {
        h.update(hash);
    }
    if let Some(links) = catalog.link_digests.get(path) {
        h.update(links);
    }
    chain.push(path);
    for embedded in catalog
        .embeds
        .get(path)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        if depth < MAX_EMBED_DEPTH && !chain.contains(&embedded.as_str()) {
            markdown_signature(catalog, embedded, depth + 1, chain, h);
        }
    }
    chain.pop();
    h.update([0xfe]);
}

pub(super) use crate::hex;

fn render(theme: &Theme, template: &str, context: &tera::Context) -> Result<Vec<u8>, RenderError> {
    theme
        .render(template, context)
        .map(String::into_bytes)
        .map_err(RenderError::Theme)
}

/// Says at debug level which pages dominate a build, so an operator can see what a slow build
/// spends its time on (a calendar month holding thousands of tasks, a very long note).
fn slow_page(what: &str, started: std::time::Instant, bytes: usize) {
    let ms = started.elapsed().as_millis() as u64;
    if ms >= 100 {
        tracing::debug!(page = what, ms, bytes, "a slow page");
    }
}

fn base_context(site: &SiteCtx<'_>, page: &PageCtx, at: &SitePath) -> tera::Context {
    let mut c = tera::Context::new();
    c.insert("site", site);
    c.insert("page", page);
    c.insert("root", &at.root_prefix());
    c
}

fn absolute_root(base_url: &str) -> String {
    let b = base_url.trim();
    if b.ends_with('/') {
        b.to_owned()
    } else {
        format!("{b}/")
    }
}

/// The page of a tag (`#a/B` → `tags/a/b/`).
pub(crate) fn tag_page(tag: &str) -> SitePath {
    SitePath::page(&format!("tags/{}", url::slug_path(tag)))
}

pub(super) fn mission_page(id: &str) -> SitePath {
    SitePath::page(&format!("missions/{}", url::slug_segment(id)))
}

fn month_page(y: i32, m: u32) -> SitePath {
    SitePath::page(&format!("calendar/{y}-{m:02}"))
}

fn month_title(y: i32, m: u32) -> String {
    NaiveDate::from_ymd_opt(y, m, 1)
        .map_or_else(|| format!("{y}-{m:02}"), |d| d.format("%B %Y").to_string())
}

fn month_range(y: i32, m: u32) -> std::ops::Range<NaiveDate> {
    let first = NaiveDate::from_ymd_opt(y, m, 1).unwrap_or_default();
    let next = if m == 12 {
        NaiveDate::from_ymd_opt(y + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(y, m + 1, 1)
    };
    first..next.unwrap_or(NaiveDate::MAX)
}

fn is_open(t: &TaskView) -> bool {
    t.status != "done" && t.status != "cancelled"
}

fn agenda_date(t: &TaskView) -> Option<&String> {
    t.due.as_ref().or(t.scheduled.as_ref())
}

fn is_run_path(path: &str) -> bool {
    path.starts_with(RUNS_DIR) && path[RUNS_DIR.len()..].starts_with('/')
}

fn is_run(p: &Published) -> bool {
    is_run_path(&p.note.path)
}

/// When a run started: front matter `started`, else `date`.
fn run_time(p: &Published) -> Option<&str> {
    ["started", "date"]
        .iter()
        .find_map(|k| p.note.front_matter.get(*k).and_then(Value::as_str))
}

/// The URL of a task's note from `from` (at the task's block, when it has an id).
fn task_url(t: &TaskView, note: Option<&Published>, from: &SitePath) -> String {
    note.map_or_else(String::new, |p| at_block(p.page.relative_from(from), t))
}

/// `note_url` (the task's note, as a page sees it) at the task's block, when it has an id.
fn at_block(mut note_url: String, t: &TaskView) -> String {
    if let Some(id) = &t.block_id {
        note_url.push_str("#%5E");
        note_url.push_str(&url::encode(id));
    }
    note_url
}

/// A task as a page lists it; `note` is its note, if published.
fn task_ctx<'c>(t: &'c TaskView, note: Option<&'c Published>, from: &SitePath) -> TaskCtx<'c> {
    let url = task_url(t, note, from);
    TaskCtx {
        task: t,
        url,
        note_title: note.map_or("", |p| p.note.title.as_str()),
        date: agenda_date(t).map(String::as_str),
    }
}

fn note_ref<'c>(p: &'c Published, from: &SitePath) -> NoteRef<'c> {
    NoteRef {
        title: &p.note.title,
        url: p.page.relative_from(from),
        path: &p.note.path,
        date: p.date.as_deref(),
    }
}

/// A folder of published notes (vault path `""` is the root).
pub(super) struct Folder {
    path: String,
    title: String,
    folders: BTreeSet<String>,
    notes: BTreeSet<String>,
    /// Published notes in it and below.
    count: usize,
}

pub(super) fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

fn strip_note_ext(path: &str) -> &str {
    path.strip_suffix(".md")
        .or_else(|| path.strip_suffix(".markdown"))
        .unwrap_or(path)
}

/// The folders of the notes at `paths`.
pub(super) fn folder_tree_of<'p>(paths: impl Iterator<Item = &'p str>) -> BTreeMap<String, Folder> {
    let mut folders: BTreeMap<String, Folder> = BTreeMap::new();
    let ensure = |path: &str, folders: &mut BTreeMap<String, Folder>| {
        if !folders.contains_key(path) {
            folders.insert(
                path.to_owned(),
                Folder {
                    path: path.to_owned(),
                    title: folder_title(path.rsplit('/').next().unwrap_or(path)),
                    folders: BTreeSet::new(),
                    notes: BTreeSet::new(),
                    count: 0,
                },
            );
        }
    };
    ensure("", &mut folders);
    // In path order the notes of a folder mostly come together: each run of them is counted up
    // the ancestors once, not note by note.
    let mut paths = paths.peekable();
    while let Some(first) = paths.next() {
        let dir = parent(first);
        let mut run = vec![first.to_owned()];
        while let Some(next) = paths.next_if(|p| parent(p) == dir) {
            run.push(next.to_owned());
        }
        let n = run.len();
        ensure(dir, &mut folders);
        if let Some(f) = folders.get_mut(dir) {
            f.notes.extend(run);
        }
        // The folder and every ancestor count the notes; each ancestor lists the folder below it.
        let mut d = dir;
        loop {
            if let Some(f) = folders.get_mut(d) {
                f.count += n;
            }
            if d.is_empty() {
                break;
            }
            let up = parent(d);
            ensure(up, &mut folders);
            if let Some(f) = folders.get_mut(up)
                && !f.folders.contains(d)
            {
                f.folders.insert(d.to_owned());
            }
            d = up;
        }
    }
    folders
}

/// How a folder is called on pages: without a sorting prefix (`01_`), underscores as spaces, and
/// an all-capitals name in ordinary case (`01_MISSIONS` → `Missions`, `projects` stays).
fn folder_title(name: &str) -> String {
    let rest = name.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = if rest.len() < name.len() {
        rest.trim_start_matches(['_', '-', ' ', '.'])
    } else {
        name
    };
    let rest = if rest.is_empty() { name } else { rest };
    let spaced = rest.replace('_', " ");
    if spaced.chars().any(char::is_alphabetic) && !spaced.chars().any(char::is_lowercase) {
        let lower = spaced.to_lowercase();
        let mut chars = lower.chars();
        chars
            .next()
            .map(|c| c.to_uppercase().chain(chars).collect())
            .unwrap_or_default()
    } else {
        spaced
    }
}

fn folder_entry(f: &Folder, from: &SitePath) -> FolderEntry {
    FolderEntry {
        title: f.title.clone(),
        url: url::folder_page(&f.path).relative_from(from),
        count: f.count,
    }
}

fn folder_ctx<'c>(
    f: &'c Folder,
    catalog: &'c Catalog,
    folders: &BTreeMap<String, Folder>,
    at: &SitePath,
) -> FolderCtx<'c> {
    FolderCtx {
        title: &f.title,
        path: &f.path,
        breadcrumbs: breadcrumbs(parent(&f.path), at, folders),
        folders: f
            .folders
            .iter()
            .filter_map(|p| folders.get(p))
            .filter(|sub| !catalog::reserved(&url::folder_page(&sub.path)))
            .map(|sub| folder_entry(sub, at))
            .collect(),
        notes: f
            .notes
            .iter()
            .filter_map(|n| catalog.note(n))
            .map(|p| note_ref(p, at))
            .collect(),
    }
}

/// Links from the front page down to `folder` (inclusive), for a page at `at`.
pub(super) fn breadcrumbs(
    folder: &str,
    at: &SitePath,
    folders: &BTreeMap<String, Folder>,
) -> Vec<Link> {
    let mut out = vec![Link {
        title: "Home".into(),
        url: SitePath::root().relative_from(at),
    }];
    if folder.is_empty() {
        return out;
    }
    let mut acc = String::new();
    for part in folder.split('/') {
        if !acc.is_empty() {
            acc.push('/');
        }
        acc.push_str(part);
        let page = url::folder_page(&acc);
        if catalog::reserved(&page) {
            continue;
        }
        let title = folders
            .get(acc.as_str())
            .map_or(part.to_owned(), |f| f.title.clone());
        out.push(Link {
            title,
            url: page.relative_from(at),
        });
    }
    out
}

/// Top-level folders, then quire's own pages.
/// What the navigation links to: the top-level folders (the missions folder is what the Missions
/// page shows), then quire's own pages.
pub(super) fn nav_targets(folders: &BTreeMap<String, Folder>) -> Vec<(String, SitePath)> {
    let mut out: Vec<(String, SitePath)> = folders
        .get("")
        .map(|root| {
            root.folders
                .iter()
                .map(|f| (f, url::folder_page(f)))
                .filter(|(f, page)| {
                    !catalog::reserved(page) && f.as_str() != crate::index::MISSIONS_DIR
                })
                .map(|(f, page)| {
                    (
                        folders
                            .get(f.as_str())
                            .map_or(f.clone(), |x| x.title.clone()),
                        page,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    for (title, p) in [
        ("Tasks", "tasks"),
        ("Agenda", "agenda"),
        ("Calendar", "calendar"),
        ("Missions", "missions"),
        ("Tags", "tags"),
    ] {
        out.push((title.to_owned(), SitePath::page(p)));
    }
    out
}

/// The navigation as seen from the page at `at`.
fn nav(targets: &[(String, SitePath)], at: &SitePath) -> Vec<Link> {
    targets
        .iter()
        .map(|(title, page)| Link {
            title: title.clone(),
            url: page.relative_from(at),
        })
        .collect()
}

/// Tags of published notes, nested ones also counting towards their parents (`#a/b` is under
/// `#a`), by lowercased name: (name as first written, notes).
fn tags(catalog: &Catalog) -> BTreeMap<String, (String, Vec<&Published>)> {
    // Tags by lowercased name, as (lowercased name, name as first written, notes), in the order
    // first met; and where each is.
    let mut found: Vec<(String, String, Vec<&Published>)> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    // A vault has far fewer distinct tags than tagged notes: each tag's prefixes are worked out
    // once.
    let mut prefixes: HashMap<&str, Vec<usize>> = HashMap::new();
    for p in catalog.notes.iter() {
        for t in &p.note.tags {
            let ids = prefixes.entry(t.as_str()).or_insert_with(|| {
                let mut prefix = String::new();
                let mut ids = Vec::new();
                for part in t.split('/') {
                    if !prefix.is_empty() {
                        prefix.push('/');
                    }
                    prefix.push_str(part);
                    let key = prefix.to_lowercase();
                    let id = *at.entry(key.clone()).or_insert_with(|| {
                        found.push((key, prefix.clone(), Vec::new()));
                        found.len() - 1
                    });
                    ids.push(id);
                }
                ids
            });
            for &id in ids.iter() {
                let list = &mut found[id].2;
                // A note tagged twice under one prefix (`a/b` and `a/c`) is listed once.
                if list.last().is_none_or(|last| !std::ptr::eq(*last, p)) {
                    list.push(p);
                }
            }
        }
    }
    found
        .into_iter()
        .map(|(key, name, notes)| (key, (name, notes)))
        .collect()
}

/// Missions of published notes and tasks, with counts, by id.
fn missions(catalog: &Catalog) -> Vec<MissionCtx> {
    let blank = |id: &str| MissionCtx {
        id: id.to_owned(),
        title: id.to_owned(),
        status: None,
        due: None,
        url: mission_page(id).as_str().to_owned(),
        total: 0,
        open: 0,
        done: 0,
        cancelled: 0,
        progress: 0,
        open_due: Vec::new(),
    };
    let mut by_id: BTreeMap<String, MissionCtx> = BTreeMap::new();
    let prefix = format!("{}/", crate::index::MISSIONS_DIR);
    for p in catalog.notes.iter() {
        let is_mission_note =
            p.note.path.starts_with(&prefix) && p.note.path.ends_with("/mission.md");
        if let (true, Some(id)) = (is_mission_note, &p.note.mission) {
            let text = |k: &str| match p.note.front_matter.get(k) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Null) | None => None,
                Some(other) => Some(other.to_string()),
            };
            let mut m = blank(id);
            m.title = text("title").unwrap_or_else(|| p.note.title.clone());
            m.status = text("status");
            m.due = text("due");
            by_id.insert(id.clone(), m);
        }
    }
    for t in &catalog.tasks {
        let Some(id) = &t.mission else { continue };
        let m = by_id.entry(id.clone()).or_insert_with(|| blank(id));
        m.total += 1;
        match t.status.as_str() {
            "done" => m.done += 1,
            "cancelled" => m.cancelled += 1,
            _ => {
                m.open += 1;
                if let Some(d) = &t.due {
                    m.open_due.push(d.clone());
                }
            }
        }
    }
    for m in by_id.values_mut() {
        let counted = m.total - m.cancelled;
        m.progress = (m.done * 100).checked_div(counted).unwrap_or(0);
        m.open_due.sort();
    }
    by_id.into_values().collect()
}

/// A mission with its URL made relative to the page at `from` (stored relative to the root).
fn relative_mission(m: &MissionCtx, from: &SitePath) -> MissionCtx {
    let mut m = m.clone();
    m.url = SitePath::page(&m.url).relative_from(from);
    m
}

/// The weeks (Monday first) of month `m` of year `y`, with the tasks filed under each day.
fn month_grid<'c>(
    y: i32,
    m: u32,
    by_day: &BTreeMap<NaiveDate, Vec<Tv<'c>>>,
    page: &SitePath,
) -> Vec<Vec<DayCtx<'c>>> {
    let Some(first) = NaiveDate::from_ymd_opt(y, m, 1) else {
        return Vec::new();
    };
    let mut day = first - chrono::Duration::days(i64::from(first.weekday().num_days_from_monday()));
    let mut weeks = Vec::new();
    loop {
        let mut week = Vec::with_capacity(7);
        for _ in 0..7 {
            let in_month = day.month() == m && day.year() == y;
            let tasks: &[Tv<'c>] = match by_day.get(&day) {
                Some(ts) if in_month => ts,
                _ => &[],
            };
            week.push(DayCtx {
                day: day.day(),
                date: day.format("%Y-%m-%d").to_string(),
                in_month,
                tasks: tasks
                    .iter()
                    .take(CELL_TASKS)
                    .map(|t| cell_task(t, page))
                    .collect(),
                more: tasks.len().saturating_sub(CELL_TASKS),
            });
            match day.succ_opt() {
                Some(next) => day = next,
                None => return weeks,
            }
        }
        weeks.push(week);
        if day.month() != m || day.year() != y {
            return weeks;
        }
    }
}

fn cell_task<'c>(t: &Tv<'c>, from: &SitePath) -> CellTask<'c> {
    CellTask {
        text: &t.task.text,
        status: &t.task.status,
        url: task_url(t.task, t.note, from),
        note_title: t.note.map_or("", |p| p.note.title.as_str()),
    }
}

/// A note's entry in `search.json`: its title, URL (from the site root), tags, first headings and
/// the start of its text. The theme's script searches them in the browser.
#[derive(Serialize)]
struct SearchEntry<'a> {
    t: &'a str,
    u: String,
    g: &'a [String],
    h: Vec<&'a str>,
    x: &'a str,
}

/// The search index entry of a note whose text starts with `excerpt`.
pub(crate) fn search_entry(note: &CatalogNote, page: &SitePath, excerpt: &str) -> Box<RawValue> {
    let entry = SearchEntry {
        t: &note.title,
        u: url::encode(page.as_str()),
        g: &note.tags,
        h: note
            .headings
            .iter()
            .take(12)
            .map(|(_, _, h)| h.as_str())
            .collect(),
        x: excerpt,
    };
    serde_json::value::to_raw_value(&entry)
        .unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap_or_default())
}

/// `search.json`: the notes' entries, in path order.
pub(crate) fn search_index(entries: &[Arc<RawValue>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.get().len() + 1).sum::<usize>() + 2);
    out.push(b'[');
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(e.get().as_bytes());
    }
    out.push(b']');
    out
}

/// Where the sitemap goes.
const SITEMAP_FILE: &str = "sitemap.xml";

/// The sitemap of the pages at `pages` (sorted).
fn sitemap(base_url: &str, pages: &[&str]) -> Vec<u8> {
    let base = absolute_root(base_url);
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
    );
    for p in pages {
        out.push_str("  <url><loc>");
        out.push_str(&escape(&format!(
            "{base}{}",
            url::encode(p.trim_end_matches("index.html"))
        )));
        out.push_str("</loc></url>\n");
    }
    out.push_str("</urlset>\n");
    out.into_bytes()
}

/// An Atom feed of the most recently dated notes. Dates come from front matter, not the clock or
/// file times, so the same content gives the same feed whenever and wherever it is rendered.
pub(crate) fn feed(
    memos: &BTreeMap<String, Arc<NoteMemo>>,
    entries: &[Arc<RawValue>],
    config: &Config,
) -> Vec<u8> {
    #[derive(serde::Deserialize)]
    struct Excerpt<'a> {
        #[serde(borrow)]
        x: std::borrow::Cow<'a, str>,
    }
    let base = absolute_root(&config.site.base_url);
    let mut dated: Vec<(&String, &NoteMemo, usize)> = memos
        .iter()
        .enumerate()
        .filter(|(_, (_, m))| m.feed)
        .map(|(i, (p, m))| (p, &**m, i))
        .collect();
    dated.sort_by(|(pa, a, _), (pb, b, _)| (&b.date, pa).cmp(&(&a.date, pb)));
    dated.truncate(FEED_ENTRIES);
    let updated = dated
        .first()
        .and_then(|(_, m, _)| m.date.clone())
        .unwrap_or_else(|| "1970-01-01".into());
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n",
    );
    out.push_str(&format!(
        "  <title>{}</title>\n",
        escape(&config.site.title)
    ));
    out.push_str(&format!("  <id>{}</id>\n", escape(&base)));
    out.push_str(&format!("  <link href=\"{}\"/>\n", escape(&base)));
    out.push_str(&format!(
        "  <link rel=\"self\" href=\"{}feed.xml\"/>\n",
        escape(&base)
    ));
    out.push_str(&format!("  <updated>{updated}T00:00:00Z</updated>\n"));
    out.push_str("  <generator>quire</generator>\n");
    for (path, m, i) in dated {
        let link = format!("{base}{}", url::encode(url::note_page(path).as_str()));
        out.push_str("  <entry>\n");
        out.push_str(&format!("    <title>{}</title>\n", escape(&m.title)));
        out.push_str(&format!("    <link href=\"{}\"/>\n", escape(&link)));
        out.push_str(&format!("    <id>{}</id>\n", escape(&link)));
        out.push_str(&format!(
            "    <updated>{}T00:00:00Z</updated>\n",
            m.date.as_deref().unwrap_or("1970-01-01")
        ));
        let excerpt = entries
            .get(i)
            .and_then(|e| serde_json::from_str::<Excerpt<'_>>(e.get()).ok());
        if let Some(x) = excerpt.filter(|e| !e.x.is_empty()) {
            out.push_str(&format!("    <summary>{}</summary>\n", escape(&x.x)));
        }
        out.push_str("  </entry>\n");
    }
    out.push_str("</feed>\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::folder_title;

    #[test]
    fn a_task_value_built_by_hand_is_what_serde_makes() {
        let mut task = crate::index::TaskView {
            path: "a/b.md".into(),
            line: 7,
            status: "open".into(),
            text: "write <it> #x".into(),
            due: Some("2026-05-01".into()),
            scheduled: None,
            start: Some("2026-04-01".into()),
            created: None,
            done: None,
            cancelled: None,
            priority: Some("high".into()),
            recurrence: Some("every week".into()),
            id: Some("t1".into()),
            depends_on: vec!["t0".into(), "t2".into()],
            tags: vec!["x".into()],
            mission: None,
            heading: Some("Plan".into()),
            block_id: Some("b1".into()),
        };
        for _ in 0..2 {
            let by_hand = super::task_value(&task, "../b/#%5Eb1", None);
            let by_serde = tera::Value::from_serializable(&super::TaskCtx {
                task: &task,
                url: "../b/#%5Eb1".into(),
                note_title: "",
                date: super::agenda_date(&task).map(String::as_str),
            });
            assert_eq!(by_hand, by_serde);
            // And the built-in `task` component renders it in Rust.
            assert!(crate::render::task_item::item(&by_hand, true).is_some());
            // And with every optional field empty.
            task = crate::index::TaskView {
                path: "c.md".into(),
                line: 1,
                status: "done".into(),
                text: String::new(),
                due: None,
                scheduled: Some("2026-01-02".into()),
                start: None,
                created: None,
                done: None,
                cancelled: None,
                priority: None,
                recurrence: None,
                id: None,
                depends_on: Vec::new(),
                tags: Vec::new(),
                mission: Some("m".into()),
                heading: None,
                block_id: None,
            };
        }
    }
    mod made {
        use proptest::prelude::*;

        fn field() -> impl Strategy<Value = Option<String>> {
            proptest::option::of("[a-z_ <>&\"'#é📅-]{0,10}")
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(
                std::env::var("QUIRE_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(64)
            ))]
            /// A task's `<li>` made in Rust for a page that lists rendered items is what
            /// `task_list` prints for the task's template value, so a page's HTML never depends on
            /// which the page was given.
            #[test]
            fn fuzz_a_made_item_is_what_the_list_prints_for_the_value(
                dates in proptest::collection::vec(field(), 6),
                priority in field(),
                recurrence in field(),
                block_id in field(),
                status in prop_oneof![Just("open".to_owned()), Just("done".to_owned()), "[a-z_ <&]{0,8}"],
                text in "[a-z <>&\"#]{0,12}",
                url in "[a-z./#%<&]{0,10}",
            ) {
                let [due, scheduled, start, created, done, cancelled]: [Option<String>; 6] =
                    dates.try_into().unwrap();
                let task = crate::index::TaskView {
                    path: "a/b.md".into(), line: 3, status, text, due, scheduled, start, created,
                    done, cancelled, priority, recurrence, id: None, depends_on: Vec::new(),
                    tags: vec!["x".into()], mission: None, heading: None, block_id,
                };
                let value = super::super::task_value(&task, &url, None);
                let made = super::super::made_item(&task, &url, None);
                prop_assert!(made.as_bytes().is_some(), "a catalog task is always made");
                let list = |v: tera::Value| {
                    crate::render::task_item::list(&tera::Value::from(vec![v]), true, None)
                };
                prop_assert_eq!(list(made.clone()), list(value));
                // Made for a list that shows the note; a call asking otherwise is declined.
                prop_assert!(crate::render::task_item::list(&tera::Value::from(vec![made]), false, None).is_none());
            }
        }
    }

    use super::folder_tree_of;

    #[test]
    fn the_folder_tree_counts_every_note_up_its_ancestors() {
        // A folder's notes interrupted by a sub-folder's, as path order has them.
        let paths = [
            "a/b.md",
            "a/b/c.md",
            "a/b/cc.md",
            "a/b/d/e.md",
            "a/c.md",
            "f.md",
            "g/h.md",
        ];
        let tree = folder_tree_of(paths.into_iter());
        let show = |p: &str| {
            let f = &tree[p];
            (
                f.count,
                f.folders.iter().cloned().collect::<Vec<_>>(),
                f.notes.iter().cloned().collect::<Vec<_>>(),
            )
        };
        let v = |xs: &[&str]| xs.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(show(""), (7, v(&["a", "g"]), v(&["f.md"])));
        assert_eq!(show("a"), (5, v(&["a/b"]), v(&["a/b.md", "a/c.md"])));
        assert_eq!(
            show("a/b"),
            (3, v(&["a/b/d"]), v(&["a/b/c.md", "a/b/cc.md"]))
        );
        assert_eq!(show("a/b/d"), (1, v(&[]), v(&["a/b/d/e.md"])));
        assert_eq!(show("g"), (1, v(&[]), v(&["g/h.md"])));
        assert_eq!(tree.len(), 5);
        assert_eq!(tree["a/b/d"].title, "d");
    }

    #[test]
    fn folder_titles_drop_sorting_prefixes() {
        assert_eq!(folder_title("01_MISSIONS"), "Missions");
        assert_eq!(folder_title("05_RESOURCES"), "Resources");
        assert_eq!(folder_title("projects"), "projects");
        assert_eq!(folder_title("2024"), "2024");
        assert_eq!(folder_title("My_Notes"), "My Notes");
        assert_eq!(folder_title("00 Inbox"), "Inbox");
    }
}
