//! Which items of a dataset are held out (to calibrate, later to tune) and which evaluate: one
//! definition of splits, so every command that splits a dataset splits it the same way.
//!
//! The first items of a dataset are often not a sample of it: a streaming audio set starts with
//! silence, a sorted one with one class. So the default is a seeded random sample; `first` keeps
//! the old behaviour, and `stratified` takes each label's share.
//!
//! The permutation comes from SplitMix64 (Steele, Lea & Flood 2014), written here rather than
//! taken from `rand`, whose generators and sampling algorithms may change their output between
//! versions: a record names its split by seed, and a later qbench must recompute the same items.

/// How held-out items are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// A uniform random sample without replacement, from `seed`.
    Random { seed: u64 },
    /// The first items, in dataset order.
    First,
    /// Each label's share of the held-out items (largest remainder), each label's items drawn
    /// at random from `seed`. Needs labels.
    Stratified { seed: u64 },
}

impl Selection {
    pub const NAMES: &'static [&'static str] = &["random", "first", "stratified"];

    /// `at random (seed 0)`, `first in dataset order`, `stratified by label (seed 0)`: how
    /// records and reports say it.
    pub fn describe(&self) -> String {
        match self {
            Selection::Random { seed } => format!("at random (seed {seed})"),
            Selection::First => "first in dataset order".to_string(),
            Selection::Stratified { seed } => format!("stratified by label (seed {seed})"),
        }
    }
}

/// The held-out items and the rest, both in dataset order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub held: Vec<usize>,
    pub rest: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("a stratified split needs labels, and the dataset has none; use select = \"random\"")]
    NoLabels,
    #[error("{held} items cannot be held out of {len}: the rest would be empty; hold out fewer")]
    TooMany { held: usize, len: usize },
}

/// Holds `count` of `len` items out as `how` says; `labels` (one per item) for a stratified split.
pub fn split(len: usize, count: usize, labels: Option<&[u32]>, how: Selection) -> Result<Split, SplitError> {
    if count >= len && count > 0 {
        return Err(SplitError::TooMany { held: count, len });
    }
    let mut held = match how {
        Selection::First => (0..count).collect(),
        Selection::Random { seed } => {
            let mut order: Vec<usize> = (0..len).collect();
            shuffle(&mut order, seed);
            order.truncate(count);
            order
        }
        Selection::Stratified { seed } => {
            let labels = labels.ok_or(SplitError::NoLabels)?;
            stratified(labels, count, seed)
        }
    };
    held.sort_unstable();
    let mut is_held = vec![false; len];
    for &i in &held {
        is_held[i] = true;
    }
    let rest = (0..len).filter(|&i| !is_held[i]).collect();
    Ok(Split { held, rest })
}

/// Largest-remainder shares per label (ties to the smaller label), each label's items shuffled
/// with a seed of its own.
fn stratified(labels: &[u32], count: usize, seed: u64) -> Vec<usize> {
    let mut classes: std::collections::BTreeMap<u32, Vec<usize>> = std::collections::BTreeMap::new();
    for (i, &l) in labels.iter().enumerate() {
        classes.entry(l).or_default().push(i);
    }
    let len = labels.len();
    let mut shares: Vec<(u32, usize, usize)> = classes
        .iter()
        .map(|(&l, items)| {
            let exact = count * items.len();
            (l, exact / len, exact % len)
        })
        .collect();
    let mut left = count - shares.iter().map(|s| s.1).sum::<usize>();
    let mut by_remainder: Vec<usize> = (0..shares.len()).collect();
    by_remainder.sort_by(|&a, &b| shares[b].2.cmp(&shares[a].2).then(a.cmp(&b)));
    // Every label keeps at least one item for evaluation where it can: a label's share is at
    // most its items less one, and what that frees goes to the others, one at a time in
    // remainder order (round after round while some label has room).
    let size = |k: usize, shares: &[(u32, usize, usize)]| classes[&shares[k].0].len();
    for k in 0..shares.len() {
        let cap = size(k, &shares).saturating_sub(1);
        if shares[k].1 > cap {
            left += shares[k].1 - cap;
            shares[k].1 = cap;
        }
    }
    // Then, if only labels of one item are left, they are held out too rather than fewer items.
    for keep in [1, 0] {
        while left > 0 {
            let before = left;
            for &k in &by_remainder {
                if left > 0 && shares[k].1 + keep < size(k, &shares) {
                    shares[k].1 += 1;
                    left -= 1;
                }
            }
            if left == before {
                break;
            }
        }
    }
    let mut held = Vec::with_capacity(count);
    for (label, take, _) in shares {
        let mut items = classes[&label].clone();
        shuffle(&mut items, seed ^ (u64::from(label) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        held.extend(items.into_iter().take(take));
    }
    held
}

/// Fisher–Yates with SplitMix64 (the modulo's bias is below 2^-40 for any dataset that fits in
/// memory).
fn shuffle(items: &mut [usize], seed: u64) {
    let mut state = seed;
    for i in (1..items.len()).rev() {
        let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// The next SplitMix64 output from `state`.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_its_published_first_outputs() {
        // The reference implementation's first outputs from seed 1234567 (Vigna's splitmix64.c).
        let mut state: u64 = 1234567;
        let outputs = [splitmix64(&mut state), splitmix64(&mut state), splitmix64(&mut state)];
        assert_eq!(outputs, [6457827717110365317, 3203168211198807973, 9817491932198370423]);
        // shuffle draws that stream: the last swap of 3 items picks index 6457827717110365317 % 3.
        let mut items = [0, 1, 2];
        shuffle(&mut items, 1234567);
        let (j2, j1) = (6457827717110365317u64 % 3, 3203168211198807973u64 % 2);
        let mut want = [0, 1, 2];
        want.swap(2, j2 as usize);
        want.swap(1, j1 as usize);
        assert_eq!(items, want);
    }

    #[test]
    fn random_splits_are_disjoint_complete_seeded_and_uniform() {
        let a = split(1000, 100, None, Selection::Random { seed: 7 }).unwrap();
        assert_eq!(a.held.len(), 100);
        assert_eq!(a.rest.len(), 900);
        let mut all: Vec<usize> = a.held.iter().chain(&a.rest).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(a, split(1000, 100, None, Selection::Random { seed: 7 }).unwrap());
        assert_ne!(a.held, split(1000, 100, None, Selection::Random { seed: 8 }).unwrap().held);
        assert_ne!(a.held, (0..100).collect::<Vec<_>>());
        // Each item is held out with probability 1/10: over 2000 seeds, every item's count is
        // within 5 standard deviations (sd = sqrt(2000 · 0.1 · 0.9) ≈ 13.4) of 200.
        let mut counts = [0u32; 1000];
        for seed in 0..2000 {
            for i in split(1000, 100, None, Selection::Random { seed }).unwrap().held {
                counts[i] += 1;
            }
        }
        let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*lo > 133 && *hi < 267, "{lo}..{hi}");
        assert_eq!(split(10, 3, None, Selection::First).unwrap().held, [0, 1, 2]);
    }

    #[test]
    fn stratified_splits_take_each_labels_share() {
        // 70% class 0, 20% class 1, 10% class 2, sorted by label (the first 100 are all 0).
        let labels: Vec<u32> = (0..1000)
            .map(|i| {
                if i < 700 {
                    0
                } else if i < 900 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let s = split(1000, 100, Some(&labels), Selection::Stratified { seed: 3 }).unwrap();
        let per = |c: u32| s.held.iter().filter(|&&i| labels[i] == c).count();
        assert_eq!((per(0), per(1), per(2)), (70, 20, 10));
        // Shares that do not divide: 3 of 7 items of labels [0,0,0,1,1,2,2] → 1.29, 0.86, 0.86:
        // floors 1, 0, 0 and the two largest remainders (labels 1 and 2) get one more each.
        let small = [0, 0, 0, 1, 1, 2, 2];
        let s = split(7, 3, Some(&small), Selection::Stratified { seed: 0 }).unwrap();
        let per = |c: u32| s.held.iter().filter(|&&i| small[i] == c).count();
        assert_eq!((per(0), per(1), per(2)), (1, 1, 1));
        assert_eq!(split(7, 3, None, Selection::Stratified { seed: 0 }), Err(SplitError::NoLabels));
        // A rare label keeps its one item for evaluation: 60 of 99 × label 0 and 1 × label 1.
        let rare: Vec<u32> = (0..100).map(|i| u32::from(i == 99)).collect();
        let s = split(100, 60, Some(&rare), Selection::Stratified { seed: 1 }).unwrap();
        assert_eq!(s.held.len(), 60);
        assert!(s.rest.contains(&99), "the only label-1 item is evaluated");
        assert_eq!(split(7, 7, None, Selection::First), Err(SplitError::TooMany { held: 7, len: 7 }));
    }
}
