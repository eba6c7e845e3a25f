//! What the classifier knows of each word, looked up once for each token of a message.

use rustc_hash::FxHashMap;

use super::matcher::Marks;

/// The marks of words. Most words are a few Chinese characters: up to fifteen bytes, a word is its own key,
/// kept in the table beside its marks, so that a lookup compares in place rather than following a pointer
/// to the key's text elsewhere in memory; longer words are keyed by their text.
#[derive(Default, Clone)]
pub struct Vocabulary {
    short: FxHashMap<u128, Marks>,
    long: FxHashMap<Box<str>, Marks>,
}

/// Up to fifteen bytes of a word, and its length in the last.
fn inline(word: &str) -> Option<u128> {
    let bytes = word.as_bytes();
    (bytes.len() < 16).then(|| {
        let mut key = [0u8; 16];
        key[..bytes.len()].copy_from_slice(bytes);
        key[15] = bytes.len() as u8;
        u128::from_le_bytes(key)
    })
}

impl Vocabulary {
    pub fn get(&self, word: &str) -> Marks {
        let marks = match inline(word) {
            Some(key) => self.short.get(&key),
            None => self.long.get(word),
        };
        marks.copied().unwrap_or_default()
    }

    /// Sets the marks of every word, from the word and its marks so far.
    pub fn update(&mut self, mut f: impl FnMut(&str, &mut Marks)) {
        for (key, marks) in &mut self.short {
            let bytes = key.to_le_bytes();
            let word = std::str::from_utf8(&bytes[..bytes[15] as usize]).expect("a key is a word's bytes");
            f(word, marks);
        }
        for (word, marks) in &mut self.long {
            f(word, marks);
        }
    }

    /// The marks of `word`, to set; none yet for a word not seen before.
    pub fn mark(&mut self, word: &str) -> &mut Marks {
        match inline(word) {
            Some(key) => self.short.entry(key).or_default(),
            None => self.long.entry(word.into()).or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_short_and_long_keep_their_own_marks() {
        let mut vocabulary = Vocabulary::default();
        let long = "全国总工会货车司机权益保障";
        assert!(long.len() > 16);
        vocabulary.mark("没").negator = true;
        vocabulary.mark("运满满").platform = true;
        vocabulary.mark(long).learned = Some(7);
        vocabulary.mark("abcdefghijklmno").stop = true;
        assert!(vocabulary.get("没").negator);
        assert!(vocabulary.get("运满满").platform);
        assert_eq!(vocabulary.get(long).learned, Some(7));
        assert!(
            vocabulary.get("abcdefghijklmno").stop,
            "fifteen bytes are kept in place"
        );
        for other in [
            "",
            "运满",
            "运满满满",
            "全国总工会货车司机权益",
            "abcdefghijklmn",
            "没\0",
        ] {
            assert_eq!(vocabulary.get(other), Marks::default(), "{other:?}");
        }
    }
}
