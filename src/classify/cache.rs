//! The trained model, kept on disk between runs of the same program on the same corpus.
//!
//! Training reads every labelled message through normalization and jieba: about half of what a start costs.
//! What it makes depends only on the corpus, the dictionaries and the program, so the model is written to
//! the user's cache directory (`~/.cache/suqiu` on Linux; `SUQIU_CACHE_DIR` names another, and set empty
//! turns the cache off) and read back while all three are unchanged. The program is known by its
//! executable's size and modification time: a rebuilt or upgraded binary trains afresh.
//!
//! The cache can only save time, never change a result: an entry is used when its key matches and its
//! contents hash to what was written; anything else (a missing, stale, cut-short or damaged file, a cache
//! directory that cannot be written) is ignored, and the model is trained as if there were no cache.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use rustc_hash::FxHasher;

use super::model::Trained;
use super::source::SourceFile;

/// Marks a file as a suqiu model; the number changes with the layout of [`Trained`].
const MAGIC: &[u8; 16] = b"suqiu model v1\n\0";

/// Where the model trained from some sources by this executable is kept.
#[derive(Debug, Clone)]
pub struct ModelCache {
    path: PathBuf,
    key: u64,
}

impl ModelCache {
    /// The entry for a model trained from `dictionaries` and `corpus` by the running executable, in the
    /// user's cache directory; `None` when the cache is turned off or the executable cannot be known.
    pub fn for_sources(dictionaries: &[SourceFile], corpus: &[SourceFile]) -> Option<ModelCache> {
        let dir = match std::env::var_os("SUQIU_CACHE_DIR") {
            Some(dir) if dir.is_empty() => return None,
            Some(dir) => PathBuf::from(dir),
            None => dirs::cache_dir()?.join("suqiu"),
        };
        ModelCache::in_dir(&dir, dictionaries, corpus)
    }

    /// The entry in `dir`. Each executable has one file there, which a new key overwrites: rebuilding the
    /// program or editing the corpus does not pile up models.
    pub fn in_dir(dir: &Path, dictionaries: &[SourceFile], corpus: &[SourceFile]) -> Option<ModelCache> {
        let exe = std::env::current_exe().ok()?;
        let meta = std::fs::metadata(&exe).ok()?;
        let modified = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
        let mut key = FxHasher::default();
        (MAGIC, meta.len(), modified).hash(&mut key);
        for file in dictionaries.iter().chain(corpus) {
            (&file.name, &file.text).hash(&mut key);
        }
        Some(ModelCache {
            path: dir.join(format!("model-{:016x}.bin", hash(&exe))),
            key: key.finish(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The model kept for this key, if there is one and it reads back whole.
    pub fn load(&self) -> Option<Trained> {
        let bytes = std::fs::read(&self.path).ok()?;
        let (header, payload) = bytes.split_at_checked(MAGIC.len() + 16)?;
        let (magic, sums) = header.split_at(MAGIC.len());
        let (key, checksum) = sums.split_at(8);
        if magic != MAGIC || key != self.key.to_le_bytes() || checksum != hash(payload).to_le_bytes() {
            return None;
        }
        let trained: Trained = match postcard::from_bytes(payload) {
            Ok(trained) => trained,
            Err(e) => {
                tracing::warn!("model cache {}: {e}; training afresh", self.path.display());
                return None;
            }
        };
        trained.is_whole().then_some(trained)
    }

    /// Keeps `trained` for the next start. Written to a file of its own beside the entry and renamed over it,
    /// so that a start reading at the same moment sees the old entry or the new one, never half of one.
    pub fn store(&self, trained: &Trained) {
        if let Err(e) = self.write(trained) {
            tracing::debug!("model cache {}: not written: {e}", self.path.display());
        }
    }

    fn write(&self, trained: &Trained) -> std::io::Result<()> {
        let payload = postcard::to_stdvec(trained).map_err(std::io::Error::other)?;
        let dir = self.path.parent().expect("an entry is a file in a directory");
        std::fs::create_dir_all(dir)?;
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        file.write_all(MAGIC)?;
        file.write_all(&self.key.to_le_bytes())?;
        file.write_all(&hash(&payload).to_le_bytes())?;
        file.write_all(&payload)?;
        file.persist(&self.path)?;
        Ok(())
    }
}

fn hash(value: impl Hash) -> u64 {
    let mut hasher = FxHasher::default();
    value.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Classifier, Sources};

    /// The built-in rules and dictionaries with a corpus of the first `n` messages of the built-in one.
    fn sources(n: usize) -> Sources {
        let mut sources = Sources::builtin();
        let lines: Vec<&str> = sources.corpus.iter().flat_map(|f| f.text.lines()).take(n).collect();
        sources.corpus = vec![SourceFile {
            name: "corpus/part.jsonl".into(),
            text: lines.join("\n"),
        }];
        sources
    }

    fn entry(dir: &Path, sources: &Sources) -> ModelCache {
        ModelCache::in_dir(dir, &sources.dictionaries, &sources.corpus).expect("the test binary is a file")
    }

    fn start(sources: &Sources, cache: &ModelCache) -> Classifier {
        Classifier::from_sources_cached(sources, Some(cache)).expect("the built-in rules load")
    }

    fn messages_learned(classifier: &Classifier) -> usize {
        classifier.model().map_or(0, |m| m.messages())
    }

    #[test]
    fn a_kept_model_classifies_as_the_one_trained() {
        let dir = tempfile::tempdir().unwrap();
        let sources = sources(400);
        let cache = entry(dir.path(), &sources);
        let trained = start(&sources, &cache);
        assert!(cache.path().is_file(), "the first start keeps its model");
        let read = start(&sources, &cache);
        assert_eq!(messages_learned(&read), 400);
        let texts = [
            "老板欠我三个月运费了",
            "车翻了人卡在里面",
            "有货去太原",
            "平台把我账号封了",
            "谁知道哪里能停车洗澡",
        ];
        for text in texts {
            let (a, b) = (trained.classify(text), read.classify(text));
            assert_eq!(
                serde_json::to_value(&a).unwrap(),
                serde_json::to_value(&b).unwrap(),
                "{text}"
            );
        }
    }

    #[test]
    fn a_start_reads_the_kept_model_instead_of_training() {
        let dir = tempfile::tempdir().unwrap();
        let sources = sources(300);
        let cache = entry(dir.path(), &sources);
        // What another corpus teaches, kept under this corpus's key: a start that reads it learned 50 messages.
        let other = start(&self::sources(50), &entry(dir.path(), &self::sources(50)));
        let labelled = crate::classify::read_corpus(&self::sources(50).corpus, &mut Vec::new());
        cache.store(&other.train(&labelled).unwrap());
        assert_eq!(messages_learned(&start(&sources, &cache)), 50);
    }

    #[test]
    fn a_damaged_or_stale_entry_is_trained_afresh_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let sources = sources(200);
        let cache = entry(dir.path(), &sources);
        start(&sources, &cache);
        let good = std::fs::read(cache.path()).unwrap();
        let mut flipped = good.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x10;
        let damages: [(&str, Vec<u8>); 4] = [
            ("cut short", good[..good.len() / 2].to_vec()),
            ("one bit flipped", flipped),
            ("empty", Vec::new()),
            ("not a model", b"hello".to_vec()),
        ];
        for (damage, bytes) in damages {
            std::fs::write(cache.path(), bytes).unwrap();
            assert!(cache.load().is_none(), "{damage}");
            assert_eq!(messages_learned(&start(&sources, &cache)), 200, "{damage}");
            assert!(cache.load().is_some(), "{damage}: the entry is written again");
        }
        // Another corpus has another key: the entry of this one is not taken for it, and is replaced.
        let edited = self::sources(150);
        let stale = entry(dir.path(), &edited);
        assert_eq!(stale.path(), cache.path(), "one entry an executable");
        assert_eq!(messages_learned(&start(&edited, &stale)), 150);
        assert!(cache.load().is_none() && stale.load().is_some());
    }

    #[test]
    fn a_cache_that_cannot_be_written_only_costs_the_training() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, "").unwrap();
        let sources = sources(100);
        let cache = entry(&not_a_dir, &sources);
        assert_eq!(messages_learned(&start(&sources, &cache)), 100);
        assert_eq!(messages_learned(&start(&sources, &cache)), 100);
        assert!(
            std::fs::read_dir(dir.path()).unwrap().count() == 1,
            "nothing left behind"
        );
    }
}
