//! Syntax highlighting of code blocks, as HTML spans with CSS classes that themes style.
//!
//! A lexical highlighter: one pass over the code per block, recognising comments, strings, numbers,
//! keywords, literals, keys and function calls from a small table per language. TextMate-grammar
//! highlighters (syntect) are exact but cost several CPU-seconds on a 10,000-note vault — more than the
//! whole render may take — while this pass costs milliseconds. What it cannot tell apart stays plain
//! text; every input byte is emitted exactly once, escaped, so it can never lose or inject anything.
//!
//! Classes: `hl-com` comment, `hl-str` string, `hl-num` number, `hl-kw` keyword, `hl-lit` literal
//! (`true`, `None`, …), `hl-key` key (YAML, TOML, JSON), `hl-fn` function call, `hl-ty` type
//! (capitalised name in languages that capitalise types).

use super::escape::escape_into;

/// How one language looks, as far as the highlighter cares.
struct Lang {
    line_comments: &'static [&'static str],
    block_comment: Option<(&'static str, &'static str)>,
    /// Quote characters; a tripled quote (`"""`) opens a multi-line string where `triple` is set.
    quotes: &'static [char],
    triple: bool,
    keywords: &'static [&'static str],
    literals: &'static [&'static str],
    /// Capitalised identifiers are types.
    types: bool,
    /// `key:` / `key =` at the start of a line is a key.
    keys: bool,
}

const RUST: Lang = Lang {
    line_comments: &["//"],
    block_comment: Some(("/*", "*/")),
    quotes: &['"'],
    triple: false,
    keywords: &[
        "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum",
        "extern", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
        "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait", "type",
        "unsafe", "use", "where", "while",
    ],
    literals: &["true", "false", "None", "Some", "Ok", "Err"],
    types: true,
    keys: false,
};

const PYTHON: Lang = Lang {
    line_comments: &["#"],
    block_comment: None,
    quotes: &['"', '\''],
    triple: true,
    keywords: &[
        "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
        "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is",
        "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while", "with",
        "yield", "self",
    ],
    literals: &["True", "False", "None"],
    types: true,
    keys: false,
};

const JAVASCRIPT: Lang = Lang {
    line_comments: &["//"],
    block_comment: Some(("/*", "*/")),
    quotes: &['"', '\'', '`'],
    triple: false,
    keywords: &[
        "async",
        "await",
        "break",
        "case",
        "catch",
        "class",
        "const",
        "continue",
        "debugger",
        "default",
        "delete",
        "do",
        "else",
        "export",
        "extends",
        "finally",
        "for",
        "from",
        "function",
        "if",
        "import",
        "in",
        "instanceof",
        "interface",
        "let",
        "new",
        "of",
        "return",
        "static",
        "super",
        "switch",
        "this",
        "throw",
        "try",
        "type",
        "typeof",
        "var",
        "void",
        "while",
        "with",
        "yield",
    ],
    literals: &["true", "false", "null", "undefined", "NaN", "Infinity"],
    types: true,
    keys: false,
};

const GO: Lang = Lang {
    line_comments: &["//"],
    block_comment: Some(("/*", "*/")),
    quotes: &['"', '`', '\''],
    triple: false,
    keywords: &[
        "break",
        "case",
        "chan",
        "const",
        "continue",
        "default",
        "defer",
        "else",
        "fallthrough",
        "for",
        "func",
        "go",
        "goto",
        "if",
        "import",
        "interface",
        "map",
        "package",
        "range",
        "return",
        "select",
        "struct",
        "switch",
        "type",
        "var",
    ],
    literals: &["true", "false", "nil", "iota"],
    types: true,
    keys: false,
};

const C_LIKE: Lang = Lang {
    line_comments: &["//"],
    block_comment: Some(("/*", "*/")),
    quotes: &['"', '\''],
    triple: false,
    keywords: &[
        "auto",
        "break",
        "case",
        "catch",
        "class",
        "const",
        "continue",
        "default",
        "delete",
        "do",
        "else",
        "enum",
        "extends",
        "extern",
        "final",
        "for",
        "goto",
        "if",
        "implements",
        "import",
        "include",
        "inline",
        "interface",
        "namespace",
        "new",
        "package",
        "private",
        "protected",
        "public",
        "return",
        "sizeof",
        "static",
        "struct",
        "switch",
        "template",
        "this",
        "throw",
        "throws",
        "try",
        "typedef",
        "union",
        "using",
        "virtual",
        "void",
        "volatile",
        "while",
    ],
    literals: &["true", "false", "null", "NULL", "nullptr"],
    types: true,
    keys: false,
};

const SHELL: Lang = Lang {
    line_comments: &["#"],
    block_comment: None,
    quotes: &['"', '\''],
    triple: false,
    keywords: &[
        "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
        "in", "function", "return", "local", "export", "set", "unset", "echo", "exit", "source",
        "cd",
    ],
    literals: &["true", "false"],
    types: false,
    keys: false,
};

const SQL: Lang = Lang {
    line_comments: &["--"],
    block_comment: Some(("/*", "*/")),
    quotes: &['\'', '"'],
    triple: false,
    keywords: &[
        "select", "from", "where", "and", "or", "not", "insert", "into", "values", "update", "set",
        "delete", "create", "table", "index", "drop", "alter", "join", "left", "right", "inner",
        "outer", "on", "group", "by", "order", "having", "limit", "as", "distinct", "union",
        "primary", "key", "with", "case", "when", "then", "else", "end", "SELECT", "FROM", "WHERE",
        "AND", "OR", "NOT", "INSERT", "INTO", "VALUES", "UPDATE", "SET", "DELETE", "CREATE",
        "TABLE", "INDEX", "DROP", "ALTER", "JOIN", "LEFT", "RIGHT", "INNER", "OUTER", "ON",
        "GROUP", "BY", "ORDER", "HAVING", "LIMIT", "AS", "DISTINCT", "UNION", "PRIMARY", "KEY",
        "WITH", "CASE", "WHEN", "THEN", "ELSE", "END",
    ],
    literals: &["true", "false", "null", "TRUE", "FALSE", "NULL"],
    types: false,
    keys: false,
};

const DATA: Lang = Lang {
    line_comments: &["#"],
    block_comment: None,
    quotes: &['"', '\''],
    triple: true,
    keywords: &[],
    literals: &["true", "false", "null", "yes", "no", "on", "off", "~"],
    types: false,
    keys: true,
};

const JSON: Lang = Lang {
    line_comments: &[],
    block_comment: None,
    quotes: &['"'],
    triple: false,
    keywords: &[],
    literals: &["true", "false", "null"],
    types: false,
    keys: true,
};

const CSS: Lang = Lang {
    line_comments: &[],
    block_comment: Some(("/*", "*/")),
    quotes: &['"', '\''],
    triple: false,
    keywords: &[
        "important",
        "media",
        "import",
        "supports",
        "keyframes",
        "root",
    ],
    literals: &[],
    types: false,
    keys: false,
};

const PLAIN: Lang = Lang {
    line_comments: &[],
    block_comment: None,
    quotes: &[],
    triple: false,
    keywords: &[],
    literals: &[],
    types: false,
    keys: false,
};

fn lang_for(name: &str) -> Option<&'static Lang> {
    Some(match name.to_ascii_lowercase().as_str() {
        "rust" | "rs" => &RUST,
        "python" | "py" | "python3" => &PYTHON,
        "javascript" | "js" | "jsx" | "typescript" | "ts" | "tsx" | "mjs" | "node" => &JAVASCRIPT,
        "go" | "golang" => &GO,
        "c" | "h" | "cpp" | "c++" | "cc" | "hpp" | "java" | "kotlin" | "kt" | "csharp" | "cs"
        | "swift" | "scala" | "dart" => &C_LIKE,
        "bash" | "sh" | "shell" | "zsh" | "console" | "fish" => &SHELL,
        "sql" | "sqlite" | "postgres" | "postgresql" => &SQL,
        "yaml" | "yml" | "toml" | "ini" | "conf" => &DATA,
        "json" | "jsonc" | "json5" => &JSON,
        "css" | "scss" | "less" => &CSS,
        "text" | "txt" | "plain" | "plaintext" => &PLAIN,
        _ => return None,
    })
}

/// Appends `code` to `out` as highlighted HTML (the inside of a `<code>` element).
pub(crate) fn highlight(lang: &str, code: &str, out: &mut String) {
    let Some(lang) = lang_for(lang).filter(|l| !std::ptr::eq(*l, &PLAIN)) else {
        escape_into(code, out);
        return;
    };
    let bytes = code.as_bytes();
    let mut i = 0;
    let mut line_start = true;
    let span = |out: &mut String, class: &str, text: &str| {
        out.push_str("<span class=\"hl-");
        out.push_str(class);
        out.push_str("\">");
        escape_into(text, out);
        out.push_str("</span>");
    };
    while i < bytes.len() {
        let rest = &code[i..];
        let c = rest.chars().next().unwrap_or('\0');

        if let Some(prefix) = lang.line_comments.iter().find(|p| rest.starts_with(**p)) {
            // `#` only starts a comment at a word boundary (`a#b` in a URL is not one).
            let boundary = *prefix != "#" || i == 0 || bytes[i - 1].is_ascii_whitespace();
            if boundary {
                let end = rest.find('\n').unwrap_or(rest.len());
                span(out, "com", &rest[..end]);
                i += end;
                continue;
            }
        }
        if let Some((open, close)) = lang.block_comment
            && rest.starts_with(open)
        {
            let end = rest[open.len()..]
                .find(close)
                .map_or(rest.len(), |e| open.len() + e + close.len());
            span(out, "com", &rest[..end]);
            i += end;
            continue;
        }
        if lang.quotes.contains(&c) {
            let end = string_end(rest, c, lang.triple);
            let class = if lang.keys && is_key_string(&rest[end..]) {
                "key"
            } else {
                "str"
            };
            span(out, class, &rest[..end]);
            i += end;
            line_start = false;
            continue;
        }
        if c.is_ascii_digit() && (i == 0 || !is_ident_byte(bytes[i - 1])) {
            let end = rest
                .bytes()
                .position(|b| !(b.is_ascii_alphanumeric() || b == b'.' || b == b'_'))
                .unwrap_or(rest.len());
            span(out, "num", &rest[..end]);
            i += end;
            line_start = false;
            continue;
        }
        if c.is_alphabetic() || c == '_' || (c == '$' && std::ptr::eq(lang, &SHELL)) {
            let end = rest
                .char_indices()
                .skip(1)
                .find(|(_, ch)| !(ch.is_alphanumeric() || *ch == '_' || (lang.keys && *ch == '-')))
                .map_or(rest.len(), |(e, _)| e);
            let word = &rest[..end];
            let after = rest[end..].trim_start_matches([' ', '\t']);
            let class =
                if lang.keys && line_start && (after.starts_with(':') || after.starts_with('=')) {
                    Some("key")
                } else if lang.keywords.contains(&word) {
                    Some("kw")
                } else if lang.literals.contains(&word) {
                    Some("lit")
                } else if after.starts_with('(') && !lang.keys {
                    Some("fn")
                } else if lang.types && word.starts_with(char::is_uppercase) {
                    Some("ty")
                } else {
                    None
                };
            match class {
                Some(class) => span(out, class, word),
                None => escape_into(word, out),
            }
            i += end;
            line_start = false;
            continue;
        }
        let len = c.len_utf8();
        escape_into(&rest[..len], out);
        if c == '\n' {
            line_start = true;
        } else if !c.is_whitespace() && c != '-' {
            line_start = false;
        }
        i += len;
    }
}

/// The length of the string literal starting at the start of `rest` (quote `q`).
fn string_end(rest: &str, q: char, triple: bool) -> usize {
    let qs = q.len_utf8();
    let tripled: String = std::iter::repeat_n(q, 3).collect();
    if triple && rest.starts_with(&tripled) {
        return rest[3 * qs..]
            .find(&tripled)
            .map_or(rest.len(), |e| 3 * qs + e + 3 * qs);
    }
    let mut escaped = false;
    for (j, ch) in rest.char_indices().skip(1) {
        if escaped {
            escaped = false;
        } else if ch == '\\' {
            escaped = true;
        } else if ch == q {
            return j + qs;
        } else if ch == '\n' && q != '`' {
            return j;
        }
    }
    rest.len()
}

/// Whether what follows a string makes it a key (`"name": …`).
fn is_key_string(after: &str) -> bool {
    after.trim_start_matches([' ', '\t']).starts_with(':')
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hl(lang: &str, code: &str) -> String {
        let mut out = String::new();
        highlight(lang, code, &mut out);
        out
    }

    /// The text of highlighted HTML: tags removed, entities decoded.
    fn text_of(html: &str) -> String {
        let mut out = String::new();
        let mut in_tag = false;
        for c in html.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        out.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    }

    #[test]
    fn classes_by_kind() {
        let out = hl("rust", "fn main() { let x = \"s\"; // c\n    Some(42) }");
        for want in [
            "<span class=\"hl-kw\">fn</span>",
            "<span class=\"hl-fn\">main</span>",
            "<span class=\"hl-str\">&quot;s&quot;</span>",
            "<span class=\"hl-com\">// c</span>",
            "<span class=\"hl-lit\">Some</span>",
            "<span class=\"hl-num\">42</span>",
        ] {
            assert!(out.contains(want), "{want} in {out}");
        }
        let out = hl("yaml", "name: x # c\nlist:\n  - 1\n");
        assert!(out.contains("<span class=\"hl-key\">name</span>"), "{out}");
        let out = hl("json", "{\"a\": \"b\", \"n\": 1}");
        assert!(
            out.contains("<span class=\"hl-key\">&quot;a&quot;</span>")
                && out.contains("<span class=\"hl-str\">&quot;b&quot;</span>"),
            "{out}"
        );
        let out = hl("python", "def f():\n    return \"\"\"doc\nmore\"\"\" # x");
        assert!(
            out.contains(
                "<span class=\"hl-str\">&quot;&quot;&quot;doc\nmore&quot;&quot;&quot;</span>"
            ),
            "{out}"
        );
    }

    #[test]
    fn never_loses_or_injects_text() {
        let samples = [
            ("rust", "let s = \"unterminated\n/* open comment"),
            (
                "js",
                "const t = `<script>alert(1)</script>`; x < y && y > z",
            ),
            (
                "bash",
                "echo \"$HOME\" # comment\nif [ -f a ]; then exit 1; fi",
            ),
            ("python", "s = 'it\\'s' ; r'''x"),
            ("unknown", "<b>&amp;</b>"),
            ("go", "x := 0x1F + 3.14e10 // é日本"),
        ];
        for (lang, code) in samples {
            let out = hl(lang, code);
            assert_eq!(text_of(&out), code, "{lang}: {out}");
            assert!(!out.contains("<script"), "{out}");
        }
    }
}
