//! Embeds the vault template, the demo vault, the built-in themes and the control plane's files into the binary, so that
//! `quire init`, `quire demo` and rendering work from the binary alone.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const TREES: &[(&str, &str)] = &[
    ("VAULT_TEMPLATE", "vault-template"),
    ("DEMO", "demo"),
    ("THEMES", "themes"),
    ("CONTROL", "control"),
];

fn main() {
    let root =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let mut out = String::new();
    for (name, dir) in TREES {
        println!("cargo:rerun-if-changed={dir}");
        let base = root.join(dir);
        let mut files = Vec::new();
        if base.is_dir() {
            collect(&base, &mut files);
        }
        files.sort();
        writeln!(
            out,
            "/// Files under `{dir}/`, as (relative path, bytes), in path order."
        )
        .expect("write to a String");
        writeln!(out, "pub(crate) static {name}: &[(&str, &[u8])] = &[")
            .expect("write to a String");
        for file in files {
            let rel = file
                .strip_prefix(&base)
                .expect("collected under base")
                .to_str()
                .expect("asset paths are UTF-8");
            let rel = rel.replace('\\', "/");
            writeln!(
                out,
                "    ({rel:?}, include_bytes!({:?})),",
                file.display().to_string()
            )
            .expect("write to a String");
        }
        writeln!(out, "];").expect("write to a String");
    }
    let dest =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded.rs");
    std::fs::write(dest, out).expect("write embedded.rs");
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read asset dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}
