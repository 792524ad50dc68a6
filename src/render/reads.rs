//! What a page's templates may read, found from their source, erring towards "may".
//!
//! Some context values are costly and seldom shown: `note.tasks` of a note with 100,000 tasks is
//! 100,000 template values that the built-in note page never prints (the note's own HTML already
//! lists them). A page skips building such a value only when this module finds that no template
//! the page renders through can read it. The check is textual and conservative: any use of the
//! variable other than a plain `var.field` access (passing it whole, indexing it, a filter on it,
//! iterating it, a template name that is not a literal, tera's context dump) counts as reading
//! every field, so a theme that reads the value in any way gets it.

use std::collections::BTreeMap;

/// Whether rendering `template` with `sources` (template name → source, as tera names them) may
/// read `var.field`.
pub(super) fn may_read(
    sources: &BTreeMap<&str, &str>,
    template: &str,
    var: &str,
    field: &str,
) -> bool {
    may_use(sources, template, var, |_, words, i| {
        match (words.get(i + 1), words.get(i + 2)) {
            (Some(Word::Punct('.')), Some(Word::Ident(f))) => *f == field,
            _ => true,
        }
    })
}

/// Whether a template that rendering `template` goes through, other than `template` itself, may
/// read `var` at all. For a page template whose own uses of `var` are known (a built-in page,
/// byte for byte), `false` means those are the only ones.
pub(super) fn others_may_read(sources: &BTreeMap<&str, &str>, template: &str, var: &str) -> bool {
    may_use(sources, template, var, |name, _, _| name != template)
}

/// Walks the templates rendering `template` goes through (itself, its parents and includes, as
/// far as literal names lead) and says whether `reads(template name, words, i)` holds for a use of
/// `var` (the identifier at `words[i]`, not a field of something else). Anything it cannot follow
/// counts as a use.
fn may_use(
    sources: &BTreeMap<&str, &str>,
    template: &str,
    var: &str,
    reads: impl Fn(&str, &[Word<'_>], usize) -> bool,
) -> bool {
    let mut seen: Vec<&str> = Vec::new();
    let mut todo = vec![template];
    while let Some(name) = todo.pop() {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let Some(&source) = sources.get(name) else {
            // Not ours to judge: say yes.
            return true;
        };
        for tag in tags(source) {
            if tag.contains("__tera_context") {
                return true;
            }
            let words = words(tag);
            for (i, w) in words.iter().enumerate() {
                match *w {
                    Word::Ident(id) if id == "extends" || id == "include" => {
                        // Followed only to a literal name the theme has: a list of names
                        // (`include ["a", "b"]`), a variable or a missing file says yes.
                        match words.get(i + 1) {
                            Some(Word::Literal(n)) if sources.contains_key(n) => todo.push(n),
                            _ => return true,
                        }
                    }
                    Word::Ident(id) if id == var => {
                        let after_dot = i > 0 && words[i - 1] == Word::Punct('.');
                        if !after_dot && reads(name, &words, i) {
                            return true;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    false
}

/// The inside of each `{{ … }}` and `{% … %}` of a template (comments and text left out).
fn tags(source: &str) -> impl Iterator<Item = &str> {
    let mut rest = source;
    std::iter::from_fn(move || {
        loop {
            let start = rest.find('{')?;
            let open = rest[start..].get(..2)?;
            let close = match open {
                "{{" => "}}",
                "{%" => "%}",
                "{#" => "#}",
                _ => {
                    rest = &rest[start + 1..];
                    continue;
                }
            };
            let body = &rest[start + 2..];
            // A closing mark inside a string literal does not close the tag.
            let end = end_outside_strings(body, close).unwrap_or(body.len());
            rest = body.get(end + close.len()..).unwrap_or("");
            if open != "{#" {
                return Some(&body[..end]);
            }
        }
    })
}

/// Where `close` first appears in `body` outside quotes.
fn end_outside_strings(body: &str, close: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if matches!(b, b'"' | b'\'' | b'`') => quote = Some(b),
            None if body[i..].starts_with(close) => return Some(i),
            None => {}
        }
        i += 1;
    }
    None
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Word<'a> {
    Ident(&'a str),
    /// A string literal's content.
    Literal(&'a str),
    Punct(char),
}

/// A tag's identifiers, string literals and punctuation, in order (white space dropped).
fn words(tag: &str) -> Vec<Word<'_>> {
    let mut out = Vec::new();
    let mut chars = tag.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if matches!(c, '"' | '\'' | '`') {
            let start = i + 1;
            let mut end = tag.len();
            for (j, d) in chars.by_ref() {
                if d == c {
                    end = j;
                    break;
                }
            }
            out.push(Word::Literal(&tag[start..end]));
        } else if c.is_alphanumeric() || c == '_' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if !(d.is_alphanumeric() || d == '_') {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
            out.push(Word::Ident(&tag[i..end]));
        } else {
            out.push(Word::Punct(c));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::may_read;
    use std::collections::BTreeMap;

    fn theme<'a>(files: &[(&'a str, &'a str)]) -> BTreeMap<&'a str, &'a str> {
        files.iter().copied().collect()
    }

    fn reads(note: &str) -> bool {
        let t = theme(&[
            (
                "base.html",
                "<main>{% block main %}{% endblock main %}</main>",
            ),
            ("note.html", note),
            (
                "list.html",
                "{% for x in listing %}{{ x.title }}{% endfor %}",
            ),
        ]);
        may_read(&t, "note.html", "note", "tasks")
    }

    #[test]
    fn plain_field_access_other_than_the_field_does_not_read_it() {
        let page = r#"{% extends "base.html" %}{% block main %}<h1 class="note">{{ note.title }}</h1>
            {{ note.content | safe }}{% if note.date %}{{ note.date }}{% endif %}
            {{ <toc entries={note.toc} /> }}{# note.tasks in a comment #}{{ "note" }}
            {% set listing = note.children %}{% include "list.html" %}{{ page.note }}{{ note_title }}{% endblock main %}"#;
        assert!(!reads(page));
    }

    #[test]
    fn every_other_use_may_read_it() {
        for page in [
            "{{ note.tasks | length }}",
            "{% for t in note.tasks %}{% endfor %}",
            "{{ note . tasks }}",
            "{{ note['tasks'] }}",
            "{{ note | json_encode }}",
            "{% for k, v in note %}{{ k }}{% endfor %}",
            "{{ <card n={note} /> }}",
            "{% set n = note %}{{ n.tasks }}",
            "{{ __tera_context }}",
            "{% include name %}",
            r#"{% include "missing.html" %}"#,
            r#"{% extends "base.html" %}{{ "}}" }}{{ note.tasks }}"#,
        ] {
            assert!(reads(page), "{page}");
        }
        // Through an included template or a parent.
        let t = theme(&[
            ("base.html", "{{ note.tasks }}"),
            ("note.html", r#"{% extends "base.html" %}"#),
        ]);
        assert!(may_read(&t, "note.html", "note", "tasks"));
    }

    #[test]
    fn others_may_read_skips_the_page_itself_but_not_its_parents() {
        use super::others_may_read;
        let page =
            r#"{% extends "base.html" %}{% block main %}{{ tasks | length }}{% endblock main %}"#;
        let quiet = theme(&[
            (
                "base.html",
                "<main>{% block main %}{% endblock main %}{{ task.text }}</main>",
            ),
            ("tasks.html", page),
        ]);
        assert!(!others_may_read(&quiet, "tasks.html", "tasks"));
        for layout in [
            "{{ tasks }}",
            "{% for t in tasks %}{% endfor %}",
            "{{ <c x={tasks} /> }}",
            "{{ __tera_context }}",
            r#"{% include "missing.html" %}"#,
        ] {
            let t = theme(&[("base.html", layout), ("tasks.html", page)]);
            assert!(others_may_read(&t, "tasks.html", "tasks"), "{layout}");
        }
        // A field named like the list is not the list.
        let t = theme(&[("base.html", "{{ note.tasks }}"), ("tasks.html", page)]);
        assert!(!others_may_read(&t, "tasks.html", "tasks"));
    }

    /// Components see their arguments only, so only a template can read the page's `note`:
    /// what `may_read` relies on.
    #[test]
    fn a_component_cannot_see_the_page_context() {
        let mut t = tera::Tera::default();
        t.add_raw_templates([
            (
                "components/c.html",
                "{% component c() %}[{{ note.title | default(value='unseen') }}]{% endcomponent c %}",
            ),
            ("p.html", "{{ <c /> }}"),
        ])
        .unwrap();
        let mut c = tera::Context::new();
        c.insert("note", &serde_json::json!({ "title": "seen" }));
        let out = t.render("p.html", &c);
        assert!(!out.is_ok_and(|o| o.contains("seen]") && !o.contains("unseen")));
    }

    #[test]
    fn the_builtin_note_page_does_not_read_note_tasks() {
        let files: BTreeMap<&str, &str> = crate::embedded::THEMES
            .iter()
            .filter_map(|(p, b)| {
                let rel = p.strip_prefix("base/")?;
                let name = rel.strip_prefix("templates/").unwrap_or(rel);
                Some((name, std::str::from_utf8(b).ok()?))
            })
            .collect();
        assert!(files.contains_key("note.html"));
        assert!(!may_read(&files, "note.html", "note", "tasks"));
        assert!(may_read(&files, "note.html", "note", "toc"));
    }
}
