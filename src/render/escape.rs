//! Escaping text for HTML and XML.

/// The entity for a byte that HTML and XML text or a quoted attribute value must not hold as is.
fn entity(b: u8) -> Option<&'static str> {
    Some(match b {
        b'&' => "&amp;",
        b'<' => "&lt;",
        b'>' => "&gt;",
        b'"' => "&quot;",
        b'\'' => "&#39;",
        _ => return None,
    })
}

/// Appends `text` to `out` with `&`, `<`, `>`, `"` and `'` escaped: safe in element content and in
/// quoted attribute values.
pub(crate) fn escape_into(text: &str, out: &mut String) {
    let mut last = 0;
    for (i, rep) in text
        .bytes()
        .enumerate()
        .filter_map(|(i, b)| Some((i, entity(b)?)))
    {
        out.push_str(&text[last..i]);
        out.push_str(rep);
        last = i + 1;
    }
    out.push_str(&text[last..]);
}

/// Writes `text` to `out` escaped as [`escape_into`] does, in runs between the characters that
/// need it: what themes print goes through here (tera's own escaper writes byte by byte through a
/// `dyn Write`, which costs more than the rest of a long task list's page).
pub(crate) fn escape_to(text: &str, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut last = 0;
    for (i, rep) in text
        .bytes()
        .enumerate()
        .filter_map(|(i, b)| Some((i, entity(b)?)))
    {
        out.write_all(&text.as_bytes()[last..i])?;
        out.write_all(rep.as_bytes())?;
        last = i + 1;
    }
    out.write_all(&text.as_bytes()[last..])
}

/// `text` escaped for HTML or XML.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    escape_into(text, &mut out);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_the_five() {
        assert_eq!(
            super::escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(super::escape("plain é"), "plain é");
    }

    #[test]
    fn the_theme_escaper_escapes_what_tera_does() {
        for text in [r#"<a href="x">'&'</a>"#, "plain é", "", "&&", "tail<"] {
            let mut ours = Vec::new();
            super::escape_to(text, &mut ours).unwrap();
            let mut teras = Vec::new();
            tera::escape_html(text, &mut teras).unwrap();
            assert_eq!(String::from_utf8(ours).unwrap(), super::escape(text));
            assert_eq!(super::escape(text).as_bytes(), &teras[..], "{text}");
        }
    }
}
