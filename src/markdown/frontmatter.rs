//! Front matter: the YAML block between `---` lines at the very top of a note, as Obsidian reads it.
//!
//! Splitting never copies or normalises the body: patching front matter must leave the body
//! byte-identical, whatever its line endings.

use serde_json::{Map, Value};

use super::yaml::{self, YamlError};

/// A note split into its optional front matter and its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Document<'a> {
    /// Whether the text starts with a UTF-8 byte-order mark (kept on rewrite).
    pub bom: bool,
    /// The front matter block, if the note has one.
    pub front_matter: Option<FrontMatter<'a>>,
    /// Everything after the front matter (the whole text, minus any BOM, when there is none).
    pub body: &'a str,
    /// Byte offset of `body` in the original text.
    pub body_offset: usize,
    /// The note's line ending (`"\r\n"` when its first line ends so, else `"\n"`).
    pub newline: &'static str,
}

/// The front matter block of a note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontMatter<'a> {
    /// The YAML between the delimiters.
    pub yaml: &'a str,
    /// 1-based line of the first YAML line in the file (the line after the opening `---`).
    pub first_line: usize,
}

/// Front matter that could not be read, with the line in the file it points at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("front matter: {source}")]
pub struct FrontMatterError {
    /// 1-based line in the note.
    pub line: usize,
    /// What was wrong.
    #[source]
    pub source: YamlError,
}

/// Splits `text` into front matter and body. A block opened by `---` on the first line but never
/// closed is not front matter (Obsidian reads it as body too).
pub fn split(text: &str) -> Document<'_> {
    let (bom, start) = match text.strip_prefix('\u{feff}') {
        Some(_) => (true, '\u{feff}'.len_utf8()),
        None => (false, 0),
    };
    let rest = &text[start..];
    let newline = match rest.find('\n') {
        Some(i) if i > 0 && rest.as_bytes()[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    };
    let no_front = Document {
        bom,
        front_matter: None,
        body: rest,
        body_offset: start,
        newline,
    };
    let Some(first_end) = rest.find('\n') else {
        return no_front;
    };
    if rest[..first_end].trim_end() != "---" {
        return no_front;
    }
    let yaml_start = first_end + 1;
    let mut line_start = yaml_start;
    while line_start <= rest.len() {
        let line_end = rest[line_start..]
            .find('\n')
            .map_or(rest.len(), |i| line_start + i);
        let line = rest[line_start..line_end].trim_end();
        if line == "---" || line == "..." {
            let body_start = (line_end + 1).min(rest.len());
            return Document {
                bom,
                front_matter: Some(FrontMatter {
                    yaml: &rest[yaml_start..line_start],
                    first_line: 2,
                }),
                body: &rest[body_start..],
                body_offset: start + body_start,
                newline,
            };
        }
        if line_end == rest.len() {
            break;
        }
        line_start = line_end + 1;
    }
    no_front
}

impl FrontMatter<'_> {
    /// Parses the block as a YAML mapping (an empty block is an empty mapping).
    pub fn parse(&self) -> Result<Map<String, Value>, FrontMatterError> {
        yaml::parse_mapping(self.yaml).map_err(|source| {
            let source = source.shifted(self.first_line - 1);
            FrontMatterError {
                line: source.line().unwrap_or(self.first_line),
                source,
            }
        })
    }
}

impl Document<'_> {
    /// The front matter as a mapping: empty when the note has none.
    pub fn front_matter_map(&self) -> Result<Map<String, Value>, FrontMatterError> {
        self.front_matter
            .map_or_else(|| Ok(Map::new()), |fm| fm.parse())
    }

    /// The note rewritten with `map` as its front matter and the body unchanged, byte for byte.
    /// Entries that did not change keep their original text; an empty mapping removes the block,
    /// unless the body would then be read as front matter itself.
    pub fn with_front_matter(&self, map: &Map<String, Value>) -> Result<String, YamlError> {
        let mut out = String::with_capacity(self.body.len() + 256);
        if self.bom {
            out.push('\u{feff}');
        }
        // Found by fuzzing: a body that itself opens with a `---` line and closes it later (a
        // thematic break, then another) would become the front matter once the block before it
        // went, and its text would leave the body. Such a body keeps an empty block before it.
        if map.is_empty() {
            if self.front_matter.is_some() && split(self.body).front_matter.is_some() {
                out.push_str("---");
                out.push_str(self.newline);
                out.push_str("---");
                out.push_str(self.newline);
            }
        } else {
            let text = match self.front_matter {
                Some(fm) => {
                    let yaml = fm.yaml.replace("\r\n", "\n");
                    match yaml::parse_mapping(&yaml) {
                        Ok(old) => yaml::rewrite_mapping(&yaml, &old, map)?,
                        Err(_) => yaml::to_string(&Value::Object(map.clone()))?,
                    }
                }
                None => yaml::to_string(&Value::Object(map.clone()))?,
            };
            out.push_str("---");
            out.push_str(self.newline);
            for line in text.lines() {
                out.push_str(line);
                out.push_str(self.newline);
            }
            out.push_str("---");
            out.push_str(self.newline);
        }
        out.push_str(self.body);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn emptying_the_front_matter_never_turns_the_body_into_front_matter() {
        let text = "---\nstatus: x\n---\n---\nSome text\n---\nmore\n";
        let d = split(text);
        let written = d.with_front_matter(&Map::new()).unwrap();
        assert_eq!(split(&written).body, d.body);
        assert_eq!(written, "---\n---\n---\nSome text\n---\nmore\n");
        // A plain body loses the emptied block.
        let plain = split("---\na: 1\n---\n# Body\n");
        assert_eq!(plain.with_front_matter(&Map::new()).unwrap(), "# Body\n");
    }

    #[test]
    fn splits_front_matter_and_body() {
        let d = split("---\ntitle: A\n---\n# A\nbody\n");
        assert_eq!(d.front_matter.unwrap().yaml, "title: A\n");
        assert_eq!(d.body, "# A\nbody\n");
        assert_eq!(d.body_offset, 17);
    }

    #[test]
    fn no_front_matter_cases() {
        for t in [
            "# A\n",
            "---\nnot closed\n",
            "",
            "--- \n",
            "text\n---\na: 1\n---\n",
        ] {
            let d = split(t);
            assert!(d.front_matter.is_none(), "{t:?}");
            assert_eq!(d.body, t);
        }
    }

    #[test]
    fn crlf_bom_and_eof_delimiter() {
        let t = "\u{feff}---\r\na: 1\r\n---\r\nbody\r\n";
        let d = split(t);
        assert!(d.bom);
        assert_eq!(d.newline, "\r\n");
        assert_eq!(
            d.front_matter.unwrap().parse().unwrap(),
            *json!({"a": 1}).as_object().unwrap()
        );
        assert_eq!(d.body, "body\r\n");
        let d = split("---\na: 1\n---");
        assert_eq!(d.body, "");
        assert!(d.front_matter.is_some());
    }

    #[test]
    fn rewrite_keeps_body_bytes_and_line_endings() {
        let t = "\u{feff}---\r\na: 1\r\n---\r\n# T\r\n\r\ntext  \r\n";
        let d = split(t);
        let mut m = d.front_matter_map().unwrap();
        m.insert("b".into(), json!("x"));
        let out = d.with_front_matter(&m).unwrap();
        assert_eq!(
            out,
            "\u{feff}---\r\na: 1\r\nb: x\r\n---\r\n# T\r\n\r\ntext  \r\n"
        );
        assert!(out.ends_with(d.body));
    }

    #[test]
    fn errors_point_at_the_file_line() {
        let d = split("---\na: 1\nb: [x\n---\nbody\n");
        let err = d.front_matter.unwrap().parse().unwrap_err();
        assert!(err.line >= 3, "{err:?}");
    }

    const YAML_PIECES: &[&str] = &[
        "---\n",
        "---\r\n",
        "\n",
        "\r\n",
        "\u{feff}",
        "title: ",
        "tags: ",
        "[",
        "]",
        "{",
        "}",
        ", ",
        "- ",
        "  ",
        "&a ",
        "*a",
        "<<: *a\n",
        "!!str ",
        "? ",
        ": ",
        "'",
        "\"",
        "#",
        "|\n",
        ">\n",
        "...\n",
        "%YAML 1.2\n",
        "x",
        "1",
        "2026-12-01",
        "~",
        "null",
        "\t",
    ];

    proptest::proptest! {
        #![proptest_config(crate::fuzz::config(2000))]

        /// Any text splits into front matter and body without a panic; the body is a suffix of
        /// the text at the offset given; reading the front matter either succeeds or says why,
        /// with a line inside the file, and writing a map back gives text that splits again.
        #[test]
        fn fuzz_front_matter_never_panics(text in crate::fuzz::tricky_text(YAML_PIECES, 40)) {
            let d = split(&text);
            proptest::prop_assert_eq!(&text[d.body_offset..], d.body);
            match d.front_matter_map() {
                Ok(map) => {
                    if let Ok(written) = d.with_front_matter(&map) {
                        // A body that starts with U+FEFF reads as a byte-order mark once no front
                        // matter is before it; the text is the same either way.
                        let again = split(&written);
                        proptest::prop_assert_eq!(
                            again.body.trim_start_matches('\u{feff}'),
                            d.body.trim_start_matches('\u{feff}')
                        );
                    }
                }
                Err(e) => proptest::prop_assert!(e.line >= 1 && e.line <= text.lines().count() + 1, "line {} of {:?}", e.line, text),
            }
        }
    }
}
