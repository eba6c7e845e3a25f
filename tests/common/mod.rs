//! Helpers shared by the integration tests: the labelled corpus, scratch directories that clean up after
//! themselves, and copies of the repository's rule files with one edit made to them.
//!
//! Edits are found by content, not by line number, because the rule files change as they are tuned.

// Each test crate (`classifier`, `cli`) uses its own subset of these helpers.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use suqiu::eval::{read_labelled, Labelled};

/// A path inside the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Every labelled message in `tests/corpus/*.jsonl`, in file-name order.
pub fn corpus() -> Vec<Labelled> {
    read_labelled(&repo_path("tests/corpus")).unwrap_or_else(|e| panic!("tests/corpus: {e}"))
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub fn new(purpose: &str) -> ScratchDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("suqiu-test-{}-{purpose}-{n}", std::process::id());
        let path = std::env::temp_dir().join(name);
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("failed to create a scratch directory");
        ScratchDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `relative` (creating folders) and returns the full path.
    pub fn write(&self, relative: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("failed to create a scratch folder");
        }
        fs::write(&path, contents).expect("failed to write a scratch file");
        path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A scratch directory holding a copy of the repository's `intents/`, for `--rules DIR`.
pub struct RulesDir {
    dir: ScratchDir,
}

impl RulesDir {
    pub fn copy_of_intents(purpose: &str) -> RulesDir {
        let dir = ScratchDir::new(purpose);
        for entry in fs::read_dir(repo_path("intents")).expect("intents/ is readable") {
            let path = entry.expect("intents entry").path();
            if path.is_file() {
                let name = path.file_name().expect("file name").to_string_lossy().into_owned();
                let text = fs::read(&path).expect("intent file is readable");
                dir.write(&format!("intents/{name}"), text);
            }
        }
        RulesDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, file: &str) -> PathBuf {
        self.path().join("intents").join(file)
    }

    /// Rewrites the first line of `intents/<file>` that starts with `prefix`; returns its 1-based number.
    pub fn edit_line(&self, file: &str, prefix: &str, edit: impl FnOnce(&str) -> String) -> usize {
        let path = self.file(file);
        let text = fs::read_to_string(&path).expect("intent file is UTF-8");
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let index = lines
            .iter()
            .position(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("intents/{file} has no line starting with {prefix:?}"));
        lines[index] = edit(&lines[index]);
        fs::write(&path, lines.join("\n") + "\n").expect("failed to rewrite an intent file");
        index + 1
    }

    /// Appends `text` to `intents/<file>`; returns the 1-based number of its first line.
    pub fn append(&self, file: &str, text: &str) -> usize {
        let path = self.file(file);
        let mut contents = fs::read_to_string(&path).expect("intent file is UTF-8");
        if !contents.is_empty() && !contents.ends_with('\n') {
            contents.push('\n');
        }
        let first_line = contents.lines().count() + 1;
        contents.push_str(text);
        fs::write(&path, contents).expect("failed to rewrite an intent file");
        first_line
    }
}
