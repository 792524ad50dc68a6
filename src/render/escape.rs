//! Escaping text for HTML and XML.

/// Appends `text` to `out` with `&`, `<`, `>`, `"` and `'` escaped: safe in element content and in
/// quoted attribute values.
pub(crate) fn escape_into(text: &str, out: &mut String) {
    let mut last = 0;
    for (i, b) in text.bytes().enumerate() {
        let rep = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
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
    for (i, b) in text.bytes().enumerate() {
        let rep: &[u8] = match b {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'"' => b"&quot;",
            b'\'' => b"&#39;",
            _ => continue,
        };
        out.write_all(&text.as_bytes()[last..i])?;
        out.write_all(rep)?;
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
