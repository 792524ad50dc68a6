//! The fields of a task line, in the Obsidian Tasks emoji form and the Dataview inline-field form.
//!
//! Emoji fields are read the way Obsidian Tasks reads them: repeatedly strip one recognised field
//! from the **end** of the line until none matches, so `📅 2026-12-01` in the middle of a sentence is
//! text, not a due date. Tags met at the end while stripping are kept and put back at the end of the
//! description, as Tasks does. Dataview fields (`[due:: 2026-12-01]`, `(due:: …)`) may stand anywhere
//! in the line.
//!
//! A date that has the right shape but is not a real date (`📅 2026-02-30`) is kept: the field holds
//! its raw text and no date, so queries treat it as absent and `quire check` reports it.

use std::sync::LazyLock;

use chrono::NaiveDate;
use regex::Regex;
use serde::Serialize;

/// A task's status, from the character between the brackets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// `[ ]`
    Open,
    /// `[x]` or `[X]`
    Done,
    /// `[/]`
    InProgress,
    /// `[-]`
    Cancelled,
    /// Any other character, kept as written.
    Other(char),
}

impl Status {
    /// The status of the marker character `c`.
    pub fn from_char(c: char) -> Self {
        match c {
            ' ' => Status::Open,
            'x' | 'X' => Status::Done,
            '/' => Status::InProgress,
            '-' => Status::Cancelled,
            other => Status::Other(other),
        }
    }

    /// The status as written in JSON (`open`, `done`, `in_progress`, `cancelled`, or the raw
    /// character).
    pub fn name(self) -> String {
        match self {
            Status::Open => "open".into(),
            Status::Done => "done".into(),
            Status::InProgress => "in_progress".into(),
            Status::Cancelled => "cancelled".into(),
            Status::Other(c) => c.to_string(),
        }
    }

    /// Whether the task is finished (done or cancelled).
    pub fn is_closed(self) -> bool {
        matches!(self, Status::Done | Status::Cancelled)
    }
}

/// Obsidian Tasks' five priorities (plus "none", which is the absence of one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// ⏬
    Lowest,
    /// 🔽
    Low,
    /// 🔼
    Medium,
    /// ⏫
    High,
    /// 🔺
    Highest,
}

impl Priority {
    /// The priority's name.
    pub fn name(self) -> &'static str {
        match self {
            Priority::Lowest => "lowest",
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
            Priority::Highest => "highest",
        }
    }

    /// A priority from its name (any case), as Dataview writes it.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "lowest" => Priority::Lowest,
            "low" => Priority::Low,
            "medium" | "normal" => Priority::Medium,
            "high" => Priority::High,
            "highest" => Priority::Highest,
            _ => return None,
        })
    }

    fn from_emoji(e: &str) -> Option<Self> {
        Some(match e {
            "🔺" => Priority::Highest,
            "⏫" => Priority::High,
            "🔼" => Priority::Medium,
            "🔽" => Priority::Low,
            "⏬" => Priority::Lowest,
            _ => return None,
        })
    }
}

/// A date field as written: its text, and the date when the text is a real one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateField {
    /// The text after the emoji or `key::`.
    pub raw: String,
    /// The date, when `raw` is a valid ISO 8601 date.
    pub date: Option<NaiveDate>,
}

impl DateField {
    fn parse(raw: &str) -> Self {
        let raw = raw.trim();
        // Dataview allows a time after the date; the date is what tasks care about.
        let date = iso_date(raw).filter(|_| {
            raw.len() == 10 || raw.get(10..).is_some_and(|t| t.starts_with(['T', ' ']))
        });
        Self {
            raw: raw.to_owned(),
            date,
        }
    }
}

/// The date a text starting `YYYY-MM-DD` names, when it is a real one. Read by hand: chrono's
/// format-string parser costs more than the rest of a task line's fields together.
pub fn iso_date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes().get(..10)?;
    let digits = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    if b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)
}

/// The fields of one task line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFields {
    /// The description: the line without its date, priority, recurrence, id, dependency,
    /// on-completion and block-id fields. Tags stay in it.
    pub description: String,
    /// 📅 / `due::`
    pub due: Option<DateField>,
    /// ⏳ / `scheduled::`
    pub scheduled: Option<DateField>,
    /// 🛫 / `start::`
    pub start: Option<DateField>,
    /// ➕ / `created::`
    pub created: Option<DateField>,
    /// ✅ / `completion::`
    pub done: Option<DateField>,
    /// ❌ / `cancelled::`
    pub cancelled: Option<DateField>,
    /// 🔺⏫🔼🔽⏬ / `priority::`
    pub priority: Option<Priority>,
    /// 🔁 / `repeat::`
    pub recurrence: Option<String>,
    /// 🆔 / `id::`
    pub id: Option<String>,
    /// ⛔ / `dependsOn::`
    pub depends_on: Vec<String>,
    /// 🏁 / `onCompletion::`
    pub on_completion: Option<String>,
    /// `^block-id` at the end of the line.
    pub block_id: Option<String>,
}

impl TaskFields {
    /// Every date field that has the shape of a date but is not a real one, by name.
    pub fn invalid_dates(&self) -> Vec<(&'static str, &str)> {
        [
            ("due", &self.due),
            ("scheduled", &self.scheduled),
            ("start", &self.start),
            ("created", &self.created),
            ("done", &self.done),
            ("cancelled", &self.cancelled),
        ]
        .into_iter()
        .filter_map(|(name, f)| {
            f.as_ref()
                .filter(|f| f.date.is_none())
                .map(|f| (name, f.raw.as_str()))
        })
        .collect()
    }
}

impl TaskFields {
    /// Field markers left in the description — a date emoji followed by something that is not a
    /// date (`📅 soon`), or a field in the middle of the line — each with the text after it. Obsidian
    /// Tasks reads these as text, which is rarely what the writer meant.
    pub fn stranded_fields(&self) -> Vec<(&'static str, String)> {
        const MARKERS: &[(&str, &str)] = &[
            ("📅", "due"),
            ("📆", "due"),
            ("🗓", "due"),
            ("⏳", "scheduled"),
            ("⌛", "scheduled"),
            ("🛫", "start"),
            ("➕", "created"),
            ("✅", "done"),
            ("❌", "cancelled"),
        ];
        let mut out = Vec::new();
        for (marker, field) in MARKERS {
            for (i, _) in self.description.match_indices(marker) {
                let after = self.description[i + marker.len()..]
                    .trim_start_matches('\u{FE0F}')
                    .trim_start();
                let word: String = after.split_whitespace().next().unwrap_or("").to_owned();
                out.push((*field, format!("{marker} {word}").trim_end().to_owned()));
            }
        }
        out
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Due,
    Scheduled,
    Start,
    Created,
    Done,
    Cancelled,
    Priority,
    Recurrence,
    OnCompletion,
    DependsOn,
    Id,
}

const VS: &str = "\u{FE0F}?";

/// The end-of-line field patterns, in the order Obsidian Tasks tries them, each with the emojis that
/// must occur in the line for it to match (a `contains` is far cheaper than a regex search, and most
/// lines hold one or two fields at most).
static EMOJI_FIELDS: LazyLock<Vec<(Field, &'static [&'static str], Regex)>> = LazyLock::new(|| {
    let date = r" *(\d{4}-\d{2}-\d{2})$";
    let re = |s: String| Regex::new(&s).expect("task field patterns are valid");
    vec![
        (
            Field::Priority,
            &["🔺", "⏫", "🔼", "🔽", "⏬"][..],
            re(format!("(🔺|⏫|🔼|🔽|⏬){VS}$")),
        ),
        (Field::Done, &["✅"][..], re(format!("✅{VS}{date}"))),
        (Field::Cancelled, &["❌"][..], re(format!("❌{VS}{date}"))),
        (
            Field::Due,
            &["📅", "📆", "🗓"][..],
            re(format!("(?:📅|📆|🗓){VS}{date}")),
        ),
        (
            Field::Scheduled,
            &["⏳", "⌛"][..],
            re(format!("(?:⏳|⌛){VS}{date}")),
        ),
        (Field::Start, &["🛫"][..], re(format!("🛫{VS}{date}"))),
        (Field::Created, &["➕"][..], re(format!("➕{VS}{date}"))),
        (
            Field::Recurrence,
            &["🔁"][..],
            re(format!("🔁{VS} *([a-zA-Z0-9, !]+)$")),
        ),
        (
            Field::OnCompletion,
            &["🏁"][..],
            re(format!("🏁{VS} *([a-zA-Z]+)$")),
        ),
        (
            Field::DependsOn,
            &["⛔"][..],
            re(format!(
                "⛔{VS} *([a-zA-Z0-9_-]+(?: *, *[a-zA-Z0-9_-]+ *)*)$"
            )),
        ),
        (
            Field::Id,
            &["🆔"][..],
            re(format!("🆔{VS} *([a-zA-Z0-9_-]+)$")),
        ),
    ]
});

static TRAILING_TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?:^|\s)(#[^ \t!@#$%^&*(),.?":{}|<>]+)$"#).expect("valid pattern")
});

static BLOCK_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r" \^([a-zA-Z0-9-]+)$").expect("valid pattern"));

static DATAVIEW_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\[([^\[\]():]+?)::\s*([^\[\]]*?)\s*\]|\(([^\[\]():]+?)::\s*([^()]*?)\s*\)")
        .expect("valid pattern")
});

/// Reads the fields of a task's text (the part of the line after `[ ]`).
pub fn parse_fields(text: &str) -> TaskFields {
    let mut f = TaskFields::default();
    let mut line = text.trim().to_owned();

    if line.contains('^')
        && let Some(c) = BLOCK_ID.captures(&line)
    {
        f.block_id = Some(c[1].to_owned());
        let start = c.get(0).map_or(line.len(), |m| m.start());
        line.truncate(start);
        line = line.trim().to_owned();
    }

    // Strip fields from the end until none is left, as Obsidian Tasks does (bounded like it, too).
    // Stripping only shortens the line: a field whose emoji it lacks now never matches later.
    let has = |line: &str, needles: &[&str]| needles.iter().any(|n| line.contains(n));
    let mut present: u32 = EMOJI_FIELDS
        .iter()
        .enumerate()
        .filter(|(_, (_, needles, _))| has(&line, needles))
        .fold(0, |bits, (i, _)| bits | 1 << i);
    let mut trailing_tags = String::new();
    for _ in 0..=20 {
        let mut matched = false;
        for (i, (field, needles, re)) in EMOJI_FIELDS.iter().enumerate() {
            if present & 1 << i == 0 {
                continue;
            }
            if !has(&line, needles) {
                present &= !(1 << i);
                continue;
            }
            let Some(c) = re.captures(&line) else {
                continue;
            };
            let value = c.get(1).map_or("", |m| m.as_str()).trim().to_owned();
            let start = c.get(0).map_or(line.len(), |m| m.start());
            match field {
                Field::Priority => f.priority = Priority::from_emoji(&value),
                Field::Due => f.due = Some(DateField::parse(&value)),
                Field::Scheduled => f.scheduled = Some(DateField::parse(&value)),
                Field::Start => f.start = Some(DateField::parse(&value)),
                Field::Created => f.created = Some(DateField::parse(&value)),
                Field::Done => f.done = Some(DateField::parse(&value)),
                Field::Cancelled => f.cancelled = Some(DateField::parse(&value)),
                Field::Recurrence => f.recurrence = Some(value),
                Field::OnCompletion => f.on_completion = Some(value),
                Field::DependsOn => f.depends_on = split_ids(&value),
                Field::Id => f.id = Some(value),
            }
            trim_to(&mut line, start);
            matched = true;
        }
        if line.contains('#')
            && let Some(c) = TRAILING_TAG.captures(&line)
        {
            let tag = c[1].to_owned();
            let start = c.get(0).map_or(line.len(), |m| m.start());
            trim_to(&mut line, start);
            trailing_tags = if trailing_tags.is_empty() {
                tag
            } else {
                format!("{tag} {trailing_tags}")
            };
            matched = true;
        }
        if !matched {
            break;
        }
    }
    if !trailing_tags.is_empty() {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&trailing_tags);
    }

    f.description = dataview_fields(&line, &mut f);
    f
}

/// Cuts `line` (already trimmed at both ends) at `end` and trims what is left, in place: the start
/// is already trimmed, unless nothing is left.
fn trim_to(line: &mut String, end: usize) {
    line.truncate(end);
    let kept = line.trim_end().len();
    line.truncate(kept);
}

/// Applies the Dataview inline fields of `line` that the emoji form did not already set, and returns
/// the line without the recognised ones.
fn dataview_fields(line: &str, f: &mut TaskFields) -> String {
    if !line.contains("::") {
        return line.to_owned();
    }
    let mut out = String::with_capacity(line.len());
    let mut last = 0;
    let mut removed = false;
    for c in DATAVIEW_FIELD.captures_iter(line) {
        let (key, value) = match (c.get(1), c.get(2), c.get(3), c.get(4)) {
            (Some(k), Some(v), _, _) | (_, _, Some(k), Some(v)) => (k.as_str(), v.as_str()),
            _ => continue,
        };
        let key = key.trim().to_ascii_lowercase().replace([' ', '_'], "");
        let known = match key.as_str() {
            "due" => set_date(&mut f.due, value),
            "scheduled" => set_date(&mut f.scheduled, value),
            "start" => set_date(&mut f.start, value),
            "created" => set_date(&mut f.created, value),
            "completion" => set_date(&mut f.done, value),
            "cancelled" => set_date(&mut f.cancelled, value),
            "priority" => {
                f.priority = f.priority.or_else(|| Priority::from_name(value));
                true
            }
            "repeat" => {
                f.recurrence.get_or_insert_with(|| value.trim().to_owned());
                true
            }
            "id" => {
                f.id.get_or_insert_with(|| value.trim().to_owned());
                true
            }
            "dependson" => {
                if f.depends_on.is_empty() {
                    f.depends_on = split_ids(value);
                }
                true
            }
            "oncompletion" => {
                f.on_completion
                    .get_or_insert_with(|| value.trim().to_owned());
                true
            }
            _ => false,
        };
        if known {
            let m = c.get(0).map_or(0..0, |m| m.range());
            out.push_str(&line[last..m.start]);
            last = m.end;
            removed = true;
        }
    }
    out.push_str(&line[last..]);
    if removed {
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        out
    }
}

fn set_date(slot: &mut Option<DateField>, value: &str) -> bool {
    if slot.is_none() {
        *slot = Some(DateField::parse(value));
    }
    true
}

fn split_ids(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Option<NaiveDate> {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
    }

    #[test]
    fn every_emoji_field() {
        let f = parse_fields(
            "#task Task with every field set 🆔 y3yryw ⛔ c5mw2c,2ypqea 🔺 🔁 every April and December on the 1st and 24th ➕ 2024-04-27 🛫 2024-04-28 ⏳ 2024-04-29 📅 2024-04-30",
        );
        assert_eq!(f.description, "#task Task with every field set");
        assert_eq!(f.id.as_deref(), Some("y3yryw"));
        assert_eq!(f.depends_on, ["c5mw2c", "2ypqea"]);
        assert_eq!(f.priority, Some(Priority::Highest));
        assert_eq!(
            f.recurrence.as_deref(),
            Some("every April and December on the 1st and 24th")
        );
        assert_eq!(f.created.unwrap().date, d("2024-04-27"));
        assert_eq!(f.start.unwrap().date, d("2024-04-28"));
        assert_eq!(f.scheduled.unwrap().date, d("2024-04-29"));
        assert_eq!(f.due.unwrap().date, d("2024-04-30"));
    }

    #[test]
    fn done_cancelled_on_completion_and_block_ids() {
        let f = parse_fields(
            "Take out the trash 🔁 every week on Monday ➕ 2024-02-12 📅 2024-02-19 ✅ 2024-02-19 ^abc-1",
        );
        assert_eq!(f.done.unwrap().date, d("2024-02-19"));
        assert_eq!(f.block_id.as_deref(), Some("abc-1"));
        assert_eq!(f.description, "Take out the trash");
        let f = parse_fields("Drop it ❌ 2024-05-26 🏁 delete");
        assert_eq!(f.cancelled.unwrap().date, d("2024-05-26"));
        assert_eq!(f.on_completion.as_deref(), Some("delete"));
        assert_eq!(f.description, "Drop it");
    }

    #[test]
    fn fields_are_read_from_the_end_only() {
        let f = parse_fields(
            "Some task - with Tasks emoji in 📅2021-08-22 middle of line - dataview finds the date",
        );
        assert_eq!(f.due, None);
        let f = parse_fields("Some task - with Tasks emoji at end of line 📅2021-08-22");
        assert_eq!(f.due.unwrap().date, d("2021-08-22"));
    }

    #[test]
    fn alternative_emojis_and_variation_selector() {
        for (text, field) in [
            ("a 📆 2026-12-01", "due"),
            ("a 🗓 2026-12-01", "due"),
            ("a 🗓\u{fe0f}2026-12-01", "due"),
            ("a 📅\u{fe0f} 2026-12-01", "due"),
            ("a ⌛ 2026-12-01", "scheduled"),
        ] {
            let f = parse_fields(text);
            let got = if field == "due" { f.due } else { f.scheduled };
            assert_eq!(got.and_then(|g| g.date), d("2026-12-01"), "{text}");
            assert_eq!(f.description, "a");
        }
        assert_eq!(
            parse_fields("p 🔼\u{fe0f}").priority,
            Some(Priority::Medium)
        );
    }

    #[test]
    fn trailing_tags_stay_in_the_description() {
        let f = parse_fields("Order seeds 📅 2026-12-01 #garden");
        assert_eq!(f.due.unwrap().date, d("2026-12-01"));
        assert_eq!(f.description, "Order seeds #garden");
        let f = parse_fields("#task Do it 📅 2026-12-01 #a #b/c");
        assert_eq!(f.description, "#task Do it #a #b/c");
    }

    #[test]
    fn dates_are_read_only_in_their_iso_shape() {
        assert_eq!(super::iso_date("2026-01-05"), d("2026-01-05"));
        assert_eq!(super::iso_date("2024-02-29T10:00"), d("2024-02-29"));
        for not_one in [
            "2026-02-30",
            "2026-1-05",
            "2026-01-5",
            "+2026-01-05",
            "2026/01/05",
            "2026-01-0a",
            "２０２６-01-05",
            "",
        ] {
            assert_eq!(super::iso_date(not_one), None, "{not_one}");
        }
    }

    #[test]
    fn invalid_dates_are_kept_but_not_dates() {
        let f = parse_fields("Pay 📅 2026-02-30");
        let due = f.due.clone().unwrap();
        assert_eq!(due.raw, "2026-02-30");
        assert_eq!(due.date, None);
        assert_eq!(f.invalid_dates(), vec![("due", "2026-02-30")]);
        assert_eq!(f.description, "Pay");
    }

    #[test]
    fn dataview_fields_anywhere() {
        let f = parse_fields("Completed task [completion::2021-08-06] [due::2021-08-07]");
        assert_eq!(f.done.unwrap().date, d("2021-08-06"));
        assert_eq!(f.due.unwrap().date, d("2021-08-07"));
        assert_eq!(f.description, "Completed task");
        let f = parse_fields(
            "Call (due:: 2026-12-01) Ana [priority:: High] [repeat:: every week] [annotation::kept]",
        );
        assert_eq!(f.due.unwrap().date, d("2026-12-01"));
        assert_eq!(f.priority, Some(Priority::High));
        assert_eq!(f.recurrence.as_deref(), Some("every week"));
        assert_eq!(f.description, "Call Ana [annotation::kept]");
        let f = parse_fields("x [dependsOn:: a, b] [id:: me] [due:: 2026-12-01T09:30]");
        assert_eq!(f.depends_on, ["a", "b"]);
        assert_eq!(f.id.as_deref(), Some("me"));
        assert_eq!(f.due.unwrap().date, d("2026-12-01"));
    }

    #[test]
    fn stranded_fields_are_found() {
        let f = parse_fields("Pay rent 📅 soon");
        assert_eq!(f.stranded_fields(), vec![("due", "📅 soon".to_owned())]);
        let f = parse_fields("Read 📅 2026-12-01 before the meeting");
        assert_eq!(
            f.stranded_fields(),
            vec![("due", "📅 2026-12-01".to_owned())]
        );
        assert!(
            parse_fields("Fine 📅 2026-12-01")
                .stranded_fields()
                .is_empty()
        );
    }

    #[test]
    fn statuses() {
        assert_eq!(Status::from_char(' ').name(), "open");
        assert_eq!(Status::from_char('X').name(), "done");
        assert_eq!(Status::from_char('/').name(), "in_progress");
        assert_eq!(Status::from_char('-').name(), "cancelled");
        assert_eq!(Status::from_char('?').name(), "?");
        assert!(Status::Cancelled.is_closed() && !Status::Other('>').is_closed());
    }

    const TASK_PIECES: &[&str] = &[
        "📅",
        "⏳",
        "🛫",
        "➕",
        "✅",
        "❌",
        "🔺",
        "⏫",
        "🔼",
        "🔽",
        "⏬",
        "🔁",
        "🆔",
        "⛔",
        "🏁",
        " ",
        "2026-12-01",
        "2026-02-30",
        "every day",
        "[due:: ",
        "[priority:: high",
        "]",
        "(",
        ")",
        "due::",
        "::",
        "#tag",
        "#a/b",
        "^blk-1",
        " ^",
        ",",
        "\u{fe0f}",
        "x",
        "text",
    ];

    proptest::proptest! {
        #![proptest_config(crate::fuzz::config(3000))]

        /// A task line of any shape parses without a panic; what it keeps of a date is a real
        /// date; the description is no longer than the line.
        #[test]
        fn fuzz_task_lines_never_panic(line in crate::fuzz::tricky_text(TASK_PIECES, 30)) {
            let f = parse_fields(&line);
            proptest::prop_assert!(f.description.len() <= line.len());
            for d in [&f.due, &f.scheduled, &f.start, &f.created, &f.done, &f.cancelled].into_iter().flatten() {
                if let Some(date) = d.date {
                    proptest::prop_assert!(d.raw.starts_with(&date.format("%Y-%m-%d").to_string()));
                }
            }
            let _ = f.invalid_dates();
            let _ = f.stranded_fields();
        }
    }
}
