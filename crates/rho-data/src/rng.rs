//! Counter-based randomness: every random choice of the pipeline is a pure function of
//! (seed, epoch, sample, clip), so a batch is the same whatever the number of workers and
//! whatever order they run in, and a resumed run draws exactly what it would have drawn.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What a random stream is for; streams of different purposes never overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Purpose {
    /// Clip start times of a video.
    Temporal = 1,
    /// Augmentation parameters of one clip.
    Augment = 2,
    /// Shuffling the dataset at the start of an epoch.
    Shuffle = 3,
    /// Substituting a bad sample.
    Substitute = 4,
}

/// A ChaCha8 stream keyed by the coordinates of a draw (ChaCha is a keyed PRF: different keys
/// give independent streams, with no state shared between them).
pub fn stream(seed: u64, epoch: u64, sample: u64, clip: u64, purpose: Purpose) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[0..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&epoch.to_le_bytes());
    key[16..24].copy_from_slice(&sample.to_le_bytes());
    key[24..32].copy_from_slice(&clip.to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(purpose as u64);
    rng
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn same_key_same_numbers_different_key_different_numbers() {
        let draw = |s, e, i, c, p| -> Vec<u32> {
            let mut r = stream(s, e, i, c, p);
            (0..4).map(|_| r.random()).collect()
        };
        assert_eq!(
            draw(1, 2, 3, 4, Purpose::Augment),
            draw(1, 2, 3, 4, Purpose::Augment)
        );
        assert_ne!(
            draw(1, 2, 3, 4, Purpose::Augment),
            draw(1, 2, 3, 5, Purpose::Augment)
        );
        assert_ne!(
            draw(1, 2, 3, 4, Purpose::Augment),
            draw(1, 3, 3, 4, Purpose::Augment)
        );
        assert_ne!(
            draw(1, 2, 3, 4, Purpose::Augment),
            draw(1, 2, 3, 4, Purpose::Temporal)
        );
    }
}
