//! Project-directory helpers shared by the test files that copy and edit projects.
#![allow(dead_code)]

use std::path::Path;

/// Copies a directory tree, leaving out the entries named in `skip` (at any depth).
pub fn copy_dir(from: &Path, to: &Path, skip: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if skip.iter().any(|s| e.file_name() == *s) {
            continue;
        }
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest, skip);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Replaces text in one file of a project; the text must be there.
pub fn replace_in(root: &Path, file: &str, from: &str, to: &str) {
    let p = root.join(file);
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains(from), "{file} has no `{from}`");
    std::fs::write(&p, text.replace(from, to)).unwrap();
}
pub mod tmux;
