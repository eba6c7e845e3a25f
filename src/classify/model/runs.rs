//! The runs of one to three Chinese characters the model knows, as a trie of three levels in flat arrays.
//!
//! A message's runs are looked up one after another, scattered over tens of thousands: in a hash table each
//! lookup is a cache miss or two. Here a character's followers are a short sorted slice of 16-bit offsets,
//! and the whole trie takes a few hundred kilobytes where the hash table and its keys took megabytes.

/// A character's offset from the first CJK Unified Ideograph.
pub type Han = u16;

pub const HAN_FIRST: u32 = 0x4E00;
pub const HAN_LAST: u32 = 0x9FFF;
const HANS: usize = (HAN_LAST - HAN_FIRST + 1) as usize;
const UNKNOWN: u32 = u32::MAX;

/// The offset of `c` if it is a CJK Unified Ideograph.
pub fn han(c: char) -> Option<Han> {
    let code = c as u32;
    (HAN_FIRST..=HAN_LAST)
        .contains(&code)
        .then(|| (code - HAN_FIRST) as Han)
}

pub struct Runs {
    /// For each character, its row (or [`UNKNOWN`]) and where the characters seen after it start in
    /// `seconds`, side by side: judging looks up a character's row and, a character later, its followers.
    /// One entry more than there are characters ends the last one's followers.
    heads: Box<[Head]>,
    /// `seconds[heads[c].second_from..heads[c + 1].second_from]`: the characters seen after `c`, sorted. A
    /// pair's position in `seconds` is its id.
    seconds: Box<[Han]>,
    /// `thirds[third_from[p]..third_from[p + 1]]`: the characters seen after the pair with id `p`, sorted.
    third_from: Box<[u32]>,
    thirds: Box<[Han]>,
    /// The rows of pairs start here, after those of single characters; the rows of triples after them.
    first_pair_row: u32,
    first_triple_row: u32,
}

#[derive(Clone, Copy)]
struct Head {
    row: u32,
    second_from: u32,
}

/// The characters of one run, in reading order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Run {
    /// The number of characters: the shorter runs sort first.
    len: u8,
    chars: [Han; 3],
}

impl Run {
    pub fn new(chars: &[Han]) -> Run {
        let mut run = Run {
            len: chars.len() as u8,
            chars: [0; 3],
        };
        run.chars[..chars.len()].copy_from_slice(chars);
        run
    }

    fn chars(&self) -> &[Han] {
        &self.chars[..usize::from(self.len)]
    }
}

/// A known pair, as found by [`Runs::pair`]: what [`Runs::triple`] continues.
#[derive(Clone, Copy)]
pub struct Pair(u32);

impl Runs {
    /// Builds the trie of `runs` (each the characters of one run, in reading order). Rows are numbered single
    /// characters first, then pairs, then triples, each in sorted order; returns the trie and the position
    /// in `runs` of each row's run.
    ///
    /// Every prefix of a known run must be known: counting all the runs of each message ensures it.
    pub fn build(runs: &[Run]) -> (Runs, Vec<usize>) {
        let mut order: Vec<usize> = (0..runs.len()).collect();
        order.sort_unstable_by_key(|&i| runs[i]);
        let of_length = |n: usize| order.iter().copied().filter(move |&i| usize::from(runs[i].len) == n);

        let pairs: Vec<&[Han]> = of_length(2).map(|i| runs[i].chars()).collect();
        let second_from = offsets(HANS, pairs.iter().map(|p| usize::from(p[0])));
        let mut heads: Box<[Head]> = second_from
            .iter()
            .map(|&second_from| Head {
                row: UNKNOWN,
                second_from,
            })
            .collect();
        let mut singles = 0;
        for (row, i) in of_length(1).enumerate() {
            heads[usize::from(runs[i].chars[0])].row = row as u32;
            singles += 1;
        }
        let seconds = pairs.iter().map(|p| p[1]).collect();
        let mut trie = Runs {
            heads,
            seconds,
            third_from: Box::new([]),
            thirds: Box::new([]),
            first_pair_row: singles,
            first_triple_row: singles + pairs.len() as u32,
        };
        let triples: Vec<&[Han]> = of_length(3).map(|i| runs[i].chars()).collect();
        let pair_of = |t: &[Han]| {
            trie.pair(t[0], t[1])
                .expect("the first two characters of a known triple are a known pair")
                .0 as usize
        };
        trie.third_from = offsets(pairs.len(), triples.iter().map(|t| pair_of(t)));
        trie.thirds = triples.iter().map(|t| t[2]).collect();
        (trie, order)
    }

    /// The row of a single character.
    pub fn character(&self, c: Han) -> Option<u32> {
        Some(self.heads[usize::from(c)].row).filter(|&row| row != UNKNOWN)
    }

    /// The pair `first second`, if known.
    pub fn pair(&self, first: Han, second: Han) -> Option<Pair> {
        let c = usize::from(first);
        let from = self.heads[c].second_from as usize;
        let at = find(&self.seconds[from..self.heads[c + 1].second_from as usize], second)?;
        Some(Pair((from + at) as u32))
    }

    /// The triple that continues `pair` with `third`, as its row.
    pub fn triple(&self, pair: Pair, third: Han) -> Option<u32> {
        let p = pair.0 as usize;
        let from = self.third_from[p] as usize;
        let at = find(&self.thirds[from..self.third_from[p + 1] as usize], third)?;
        Some(self.first_triple_row + (from + at) as u32)
    }

    /// The row of a pair.
    pub fn pair_row(&self, pair: Pair) -> u32 {
        self.first_pair_row + pair.0
    }
}

/// For items grouped by a parent in `0..parents` (in sorted order), where each parent's items start:
/// `parents + 1` offsets, the last one the end.
fn offsets(parents: usize, items: impl Iterator<Item = usize>) -> Box<[u32]> {
    let mut from = vec![0u32; parents + 1];
    for parent in items {
        from[parent + 1] += 1;
    }
    for i in 1..from.len() {
        from[i] += from[i - 1];
    }
    from.into_boxed_slice()
}

/// The position of `c` in a short sorted slice.
fn find(slice: &[Han], c: Han) -> Option<usize> {
    slice.binary_search(&c).ok()
}
