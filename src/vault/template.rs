//! The built-in vault template (the repo's `vault-template/`, embedded in the binary).

use std::io;
use std::path::Path;

use super::fsutil;

/// Every template file as (vault-relative path, bytes), in path order.
pub fn files() -> &'static [(&'static str, &'static [u8])] {
    crate::embedded::VAULT_TEMPLATE
}

/// Writes the template into `root`, leaving every file that already exists untouched (so running
/// `quire init` on an existing vault only fills in what is missing). Returns the paths written.
pub fn write_missing(root: &Path) -> io::Result<Vec<&'static str>> {
    let mut written = Vec::new();
    for (rel, bytes) in files() {
        let dest = root.join(rel);
        if dest.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        fsutil::atomic_write(&dest, bytes, false)?;
        written.push(*rel);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    #[test]
    fn template_has_config_gitignore_and_folders() {
        let names: Vec<&str> = super::files().iter().map(|(p, _)| *p).collect();
        assert!(names.contains(&"quire.toml"));
        assert!(names.contains(&".gitignore"));
        assert!(names.iter().any(|p| p.starts_with("01_MISSIONS/")));
        let cfg = std::str::from_utf8(
            super::files()
                .iter()
                .find(|(p, _)| *p == "quire.toml")
                .unwrap()
                .1,
        )
        .unwrap();
        assert_eq!(
            crate::vault::Config::parse(cfg).unwrap(),
            crate::vault::Config::default()
        );
        let ignore = std::str::from_utf8(
            super::files()
                .iter()
                .find(|(p, _)| *p == ".gitignore")
                .unwrap()
                .1,
        )
        .unwrap();
        for must in [
            "/.quire/",
            "/_site/",
            "/sandbox/",
            "/contributions/",
            "/07_LOGS/",
            ".env",
        ] {
            assert!(
                ignore.lines().any(|l| l == must),
                "{must} missing from .gitignore"
            );
        }
    }
}
