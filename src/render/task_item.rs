//! The built-in `task` and `task_list` components, written in Rust.
//!
//! A page listing 100,000 tasks spends most of its time in the template engine running the
//! `task` component's body: a dozen field lookups, tests and escapes per task, and a component
//! call per task from `task_list`. When a theme keeps the built-in components (the
//! `components/task.html` and `components/task_list.html` of `base`, byte for byte), quire runs
//! their bodies here instead, with the same output (tests and a fuzz target hold the two equal).
//! The components stay components — any theme template still calls them — and a value this code
//! does not expect (a theme's own map, a number where a date goes) is rendered by the original
//! body, so the output never depends on which path ran.

use tera::{Kwargs, State, Value};

use super::escape::escape_into;

/// The function the fast `task` body calls.
pub(super) const TASK: &str = "quire_task_item";

/// The function the fast `task_list` body calls.
pub(super) const TASK_LIST: &str = "quire_task_list";

/// The source of the built-in component `name` with its body behind a call of `call`: the
/// original body renders only what the call declines (an empty string). `None` when the source
/// is not shaped as expected (then the theme keeps the source as it is).
pub(super) fn fast_source(original: &str, name: &str, call: &str) -> Option<String> {
    const OPEN_END: &str = "-%}";
    let close = format!("{{%- endcomponent {name} %}}");
    let open = original.find(&format!("{{% component {name}("))?;
    let body_start = open + original[open..].find(OPEN_END)? + OPEN_END.len();
    let body_end = original.rfind(&close)?;
    let body = original.get(body_start..body_end)?;
    Some(format!(
        "{}{{%- set quire_html = {call} -%}}\
         {{%- if quire_html -%}}{{{{ quire_html }}}}{{%- else -%}}{body}{{%- endif -%}}{}",
        &original[..body_start],
        &original[body_end..],
    ))
}

/// The fast `task` source, from the built-in one.
pub(super) fn fast_task(original: &str) -> Option<String> {
    fast_source(
        original,
        "task",
        &format!("{TASK}(task=task, show_note=show_note)"),
    )
}

/// The fast `task_list` source, from the built-in one.
pub(super) fn fast_task_list(original: &str) -> Option<String> {
    fast_source(
        original,
        "task_list",
        &format!("{TASK_LIST}(tasks=tasks, show_note=show_note, empty=empty)"),
    )
}

/// `task`'s function: the task's `<li>` as a safe string, or an empty string for a task the
/// original body must render.
pub(super) fn task_function(kwargs: Kwargs, _: &State<'_>) -> Value {
    let html = match (arg(&kwargs, "task"), flag(&kwargs, "show_note")) {
        (Some(task), Some(show_note)) => item(&task, show_note),
        _ => None,
    };
    safe_or_declined(html)
}

/// `task_list`'s function: the whole `<ul>`, or an empty string when any of it is the
/// template's to render.
pub(super) fn task_list_function(kwargs: Kwargs, _: &State<'_>) -> Value {
    let html = match (arg(&kwargs, "tasks"), flag(&kwargs, "show_note")) {
        (Some(tasks), Some(show_note)) => list(&tasks, show_note, arg(&kwargs, "empty").as_ref()),
        _ => None,
    };
    safe_or_declined(html)
}

fn arg(kwargs: &Kwargs, name: &str) -> Option<Value> {
    kwargs.get::<Value>(name).ok().flatten()
}

/// A boolean argument; `None` for anything else.
fn flag(kwargs: &Kwargs, name: &str) -> Option<bool> {
    arg(kwargs, name).as_ref().and_then(Value::as_bool)
}

fn safe_or_declined(html: Option<String>) -> Value {
    html.map_or_else(|| Value::normal_string(""), |h| Value::safe_string(&h))
}

/// The `<ul>` the built-in `task_list` makes of `tasks`, or `None` when it holds anything
/// [`item`] declines, or is not a list.
pub(super) fn list(tasks: &Value, show_note: bool, empty: Option<&Value>) -> Option<String> {
    let tasks = tasks.as_array()?;
    let mut out = String::with_capacity(32 + tasks.len() * 400);
    out.push_str("<ul class=\"task-list\">");
    if tasks.is_empty() {
        out.push_str("\n<li class=\"empty\">");
        escape_into(empty?.as_str()?, &mut out);
        out.push_str("</li>");
    }
    for t in tasks {
        out.push('\n');
        match t.as_bytes() {
            Some(made) => out.push_str(made_item(made, show_note)?),
            None => item_into(t, show_note, &mut out)?,
        }
    }
    out.push_str("\n</ul>");
    Some(out)
}

/// Where `key` goes among the fields the component reads.
fn slot(key: &str) -> Option<usize> {
    Some(match key {
        "status" => 0,
        "text" => 1,
        "priority" => 2,
        "date" => 3,
        "due" => 4,
        "scheduled" => 5,
        "start" => 6,
        "recurrence" => 7,
        "done" => 8,
        "url" => 9,
        "note_title" => 10,
        _ => return None,
    })
}

/// The `<li>` the built-in `task` component makes of `task`, or `None` when the value is not a
/// task as quire builds them.
pub(super) fn item(task: &Value, show_note: bool) -> Option<String> {
    if let Some(made) = task.as_bytes() {
        return made_item(made, show_note).map(str::to_owned);
    }
    let mut out = String::with_capacity(400);
    item_into(task, show_note, &mut out)?;
    Some(out)
}

/// [`item`], appended to `out` (a list writes every item into one buffer). On `None`, `out`
/// holds part of an item: the caller drops it.
fn item_into(task: &Value, show_note: bool, out: &mut String) -> Option<()> {
    let map = task.as_map()?;
    // Each field the component prints: a string, or nothing (`None` inside). Anything else
    // (missing, a number, a list) the template would print or test its own way.
    //
    // One pass over the map rather than a lookup per field: a page's task values are far too
    // many to stay in cache, and a walk through one map's memory costs less than eleven probes.
    let mut found: [Option<Option<&str>>; 11] = [None; 11];
    for (k, v) in map {
        let Some(at) = k.as_str().and_then(slot) else {
            continue;
        };
        found[at] = if v.is_none() {
            Some(None)
        } else {
            Some(Some(v.as_str()?))
        };
    }
    let [
        status,
        text,
        priority,
        date,
        due,
        scheduled,
        start,
        recurrence,
        done,
        url,
        note_title,
    ] = found;
    let shown = Shown {
        status: status??,
        text: text??,
        priority: priority?,
        date: date?,
        due: due?,
        scheduled: scheduled?,
        start: start?,
        recurrence: recurrence?,
        done: done?,
        url: url?,
        note_title: note_title?,
    };
    write(&shown, show_note, out)
}

/// A task's `<li>`, made here, to stand in a list in place of the task's template value on a page
/// whose templates only hand the list to `task_list` (see `Theme::prerendered`): pages at the same
/// depth share it, and nobody builds a template value of the task. It is a bytes value, which no
/// template can make, so nothing else passes for one; its first byte says whether it shows the
/// note's link, which the list's call must ask for too.
pub(super) fn made(shown: &Shown<'_>, show_note: bool) -> Option<Value> {
    let mut out = String::with_capacity(400);
    out.push(if show_note { '1' } else { '0' });
    write(shown, show_note, &mut out)?;
    Some(Value::bytes(out.into_bytes()))
}

/// The `<li>` in a [`made`] item, if it was made for `show_note`.
fn made_item(made: &[u8], show_note: bool) -> Option<&str> {
    let (&flag, html) = made.split_first()?;
    (flag == if show_note { b'1' } else { b'0' })
        .then(|| std::str::from_utf8(html).ok())
        .flatten()
}

/// What the component prints of a task: each field a string, or nothing.
pub(super) struct Shown<'a> {
    pub(super) status: &'a str,
    pub(super) text: &'a str,
    pub(super) priority: Option<&'a str>,
    /// The date the task is filed under (due, else scheduled).
    pub(super) date: Option<&'a str>,
    pub(super) due: Option<&'a str>,
    pub(super) scheduled: Option<&'a str>,
    pub(super) start: Option<&'a str>,
    pub(super) recurrence: Option<&'a str>,
    pub(super) done: Option<&'a str>,
    /// The link to the task in its note.
    pub(super) url: Option<&'a str>,
    pub(super) note_title: Option<&'a str>,
}

/// The `<li>` of `shown`, appended to `out`; `None` (with part of an item in `out`) when the
/// template would print it its own way.
pub(super) fn write(shown: &Shown<'_>, show_note: bool, out: &mut String) -> Option<()> {
    let (status, text) = (shown.status, shown.text);
    let (priority, date, due, scheduled, start, recurrence, done, url) = (
        truthy(shown.priority),
        truthy(shown.date),
        truthy(shown.due),
        truthy(shown.scheduled),
        truthy(shown.start),
        truthy(shown.recurrence),
        truthy(shown.done),
        truthy(shown.url),
    );
    let note_title = shown.note_title;

    let esc = |out: &mut String, s: &str| escape_into(s, out);
    out.push_str("<li class=\"task task-");
    esc(out, status);
    if let Some(p) = priority {
        out.push_str(" priority-");
        esc(out, p);
    }
    out.push('"');
    if let Some(d) = date {
        out.push_str(" data-date=\"");
        esc(out, d);
        out.push('"');
    }
    out.push_str(" data-status=\"");
    esc(out, status);
    out.push_str("\">\n  <input type=\"checkbox\" disabled");
    if status == "done" {
        out.push_str(" checked");
    }
    out.push_str(" aria-label=\"");
    esc(out, &status.replace('_', " "));
    out.push_str("\">\n  <span class=\"task-text\">");
    esc(out, text);
    out.push_str("</span>");
    if let Some(p) = priority {
        out.push_str(" <span class=\"task-priority\" title=\"Priority: ");
        esc(out, p);
        out.push_str("\">");
        esc(out, p);
        out.push_str("</span>");
    }
    for (value, class, title, mark) in [
        (due, "task-due", "Due", "📅"),
        (scheduled, "task-scheduled", "Scheduled", "⏳"),
        (start, "task-start", "Starts", "🛫"),
    ] {
        if let Some(v) = value {
            time(out, class, v, title, mark);
        }
    }
    if let Some(r) = recurrence {
        out.push_str(" <span class=\"task-recurrence\" title=\"Repeats\">🔁 ");
        esc(out, r);
        out.push_str("</span>");
    }
    if let Some(d) = done {
        time(out, "task-done-date", d, "Done", "✅");
    }
    if show_note && let Some(u) = url {
        // The template would print a missing title its own way: it renders this task.
        let title = note_title?;
        out.push_str(" <a class=\"task-note\" href=\"");
        esc(out, u);
        out.push_str("\">");
        esc(out, title);
        out.push_str("</a>");
    }
    out.push_str("\n</li>");
    Some(())
}

/// ` <time class="…" datetime="…" title="…">MARK …</time>`.
fn time(out: &mut String, class: &str, value: &str, title: &str, mark: &str) {
    out.push_str(" <time class=\"");
    out.push_str(class);
    out.push_str("\" datetime=\"");
    escape_into(value, out);
    out.push_str("\" title=\"");
    out.push_str(title);
    out.push_str("\">");
    out.push_str(mark);
    out.push(' ');
    escape_into(value, out);
    out.push_str("</time>");
}

/// Truthy as the template sees a string: there, and not empty.
fn truthy(f: Option<&str>) -> Option<&str> {
    f.filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value as Json, json};

    /// A built-in component's source, as the binary carries it.
    fn builtin(name: &str) -> &'static str {
        crate::render::theme::builtin_source(&format!("components/{name}.html"))
    }

    /// A Tera holding the two components as quire's themes do (autoescape, quire's escaper, the
    /// functions), and a page listing `tasks` through each.
    fn tera_with(task: &str, task_list: &str) -> tera::Tera {
        let mut t = tera::Tera::default();
        t.register_function(super::TASK, super::task_function);
        t.register_function(super::TASK_LIST, super::task_list_function);
        t.autoescape_on([".html"]);
        t.set_escape_fn(crate::render::escape::escape_to);
        t.add_raw_templates([
            ("components/task.html", task),
            ("components/task_list.html", task_list),
            (
                "page.html",
                "{% for t in tasks %}[{{ <task task={t} show_note={show_note} /> }}]{% endfor %}\
                 {{ <task_list tasks={tasks} show_note={show_note} empty={empty} /> }}",
            ),
        ])
        .unwrap();
        t
    }

    fn render(t: &tera::Tera, tasks: &[Json], show_note: &Json, empty: &str) -> String {
        let mut c = tera::Context::new();
        c.insert("tasks", &tasks);
        c.insert("show_note", show_note);
        c.insert("empty", empty);
        t.render("page.html", &c).unwrap()
    }

    /// The same page from the original bodies and from the Rust ones, and how many tasks the
    /// Rust `task` rendered itself.
    fn both(tasks: &[Json], show_note: &Json) -> (String, String, usize) {
        let (task, list) = (builtin("task"), builtin("task_list"));
        let slow = tera_with(task, list);
        let fast = tera_with(
            &super::fast_task(task).expect("the built-in task body is found"),
            &super::fast_task_list(list).expect("the built-in task_list body is found"),
        );
        let taken = tasks
            .iter()
            .filter(|t| {
                show_note
                    .as_bool()
                    .is_some_and(|s| super::item(&tera::Value::from_serializable(t), s).is_some())
            })
            .count();
        let empty = "Nothing <here> & \"now\"";
        (
            render(&slow, tasks, show_note, empty),
            render(&fast, tasks, show_note, empty),
            taken,
        )
    }

    #[test]
    fn an_empty_list_is_rendered_alike() {
        let (slow, fast, _) = both(&[], &json!(true));
        assert_eq!(fast, slow);
        assert!(slow.contains("Nothing &lt;here&gt;"));
        let list = tera::Value::from_serializable(&Vec::<Json>::new());
        let empty = tera::Value::from("x");
        assert!(super::list(&list, true, Some(&empty)).is_some());
    }

    fn quire_task() -> Json {
        json!({
            "path": "a/b.md", "line": 3, "status": "in_progress", "text": "write <it> & \"ship\" 'it'",
            "due": "2026-05-01", "scheduled": null, "start": "2026-04-01", "created": null,
            "done": null, "cancelled": null, "priority": "high", "recurrence": "every week",
            "id": "t1", "depends_on": ["t0"], "tags": ["x"], "mission": null, "heading": "Plan",
            "block_id": "b1", "url": "../b/#%5Eb1", "note_title": "B <note>", "date": "2026-05-01",
        })
    }

    #[test]
    fn the_rust_body_renders_quire_tasks_as_the_template_does() {
        let mut tasks = vec![quire_task()];
        let mut done = quire_task();
        done["status"] = json!("done");
        done["done"] = json!("2026-05-02");
        done["priority"] = json!(null);
        done["url"] = json!("");
        tasks.push(done);
        let mut bare = quire_task();
        for k in [
            "due",
            "start",
            "priority",
            "recurrence",
            "date",
            "scheduled",
        ] {
            bare[k] = json!(null);
        }
        bare["text"] = json!("");
        tasks.push(bare);
        for show_note in [json!(true), json!(false)] {
            let (slow, fast, taken) = both(&tasks, &show_note);
            assert_eq!(fast, slow);
            assert_eq!(taken, tasks.len(), "every quire task takes the Rust body");
        }
        assert!(both(&tasks, &json!(true)).0.contains("in progress"));
    }

    #[test]
    fn a_value_shaped_otherwise_is_rendered_by_the_template() {
        let mut number = quire_task();
        number["due"] = json!(20260501);
        let mut missing = quire_task();
        missing.as_object_mut().unwrap().remove("recurrence");
        let mut untitled = quire_task();
        untitled["note_title"] = json!(null);
        let tasks = [number, missing, untitled];
        let (slow, fast, taken) = both(&tasks, &json!(true));
        assert_eq!(fast, slow);
        assert_eq!(taken, 0, "none of them takes the Rust body");
    }

    #[test]
    fn a_theme_keeping_the_builtin_task_gets_the_rust_body_and_one_changing_it_does_not() {
        let rel = "components/task.html";
        assert!(super::super::theme::is_builtin(
            rel,
            builtin("task").as_bytes()
        ));
        let changed = builtin("task").replace("task-text", "task-words");
        assert!(!super::super::theme::is_builtin(rel, changed.as_bytes()));
    }

    fn text() -> impl Strategy<Value = Json> {
        prop_oneof![
            Just(Json::Null),
            Just(json!("")),
            "[a-z_ <>&\"'#é📅]{0,12}".prop_map(Json::from),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("QUIRE_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(64)
        ))]
        #[test]
        fn fuzz_the_rust_body_matches_the_template(
            fields in proptest::collection::vec(text(), 11),
            status in prop_oneof![Just("open".to_owned()), Just("done".to_owned()), "[a-z_ <&]{0,8}"],
            show_note: bool,
        ) {
            let keys = ["text", "priority", "date", "due", "scheduled", "start", "recurrence",
                "done", "url", "note_title", "block_id"];
            let mut task = quire_task();
            for (k, v) in keys.iter().zip(fields) {
                task[*k] = v;
            }
            task["status"] = json!(status);
            let (slow, fast, _) = both(&[task], &json!(show_note));
            prop_assert_eq!(fast, slow);
        }
    }
}
