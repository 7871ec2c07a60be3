//! MoCo's shuffle-BN (docs/method.md §2.2): the key encoder's BatchNorm must not see the same
//! batch composition as the query encoder's, or the queries can find their keys through the
//! batch statistics instead of the content (MoCo's "information leak"). The permutation depends on
//! (seed, step, clip) only, so every rank draws the same one and a resumed run the same again.

use burn::tensor::{backend::AutodiffBackend, Tensor};
use rho_model::{with_batch_groups, BatchGroups};

use crate::collectives::Collectives;
use crate::error::ObjectiveError;
use crate::network::SslNetwork;
use crate::similarity::l2_normalize;

/// A permutation of `0..n` drawn from (seed, step, clip): the same on every rank.
pub fn permutation(n: usize, salt: (u64, u64, u64)) -> Vec<usize> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let (seed, step, clip) = salt;
    let mix = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(step.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(clip.wrapping_mul(0x94D0_49BB_1331_11EB));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(mix);
    let mut p: Vec<usize> = (0..n).collect();
    p.shuffle(&mut rng);
    p
}

/// MoCo's shuffle-BN keys of one clip batch [n, 3, T, H, W] (docs/method.md §2.2): L2-normalised
/// projections of `net` whose BatchNorm statistics come from random groups of the batch.
/// Several devices: the global batch (every rank's n clips) is permuted with a permutation drawn
/// from `salt`, and the i-th slice of n permuted samples forms group i, as if the clips had been
/// gathered, shuffled and sent back out one slice per rank; only the statistics cross devices.
/// One device: the batch is permuted and cut into `splits` sub-batches. Either way the key
/// encoder's BatchNorm sees another composition than the query encoder's.
pub fn keys<B: AutodiffBackend>(
    net: &SslNetwork<B>,
    clip: &Tensor<B, 5>,
    splits: usize,
    salt: (u64, u64, u64),
    coll: &dyn Collectives<B>,
) -> Result<Tensor<B, 2>, ObjectiveError> {
    let n = clip.dims()[0];
    let key = |x: Tensor<B, 5>| l2_normalize(net.project(x)).detach();
    let world = coll.world_size();
    let groups = if world > 1 {
        let perm = permutation(world * n, salt);
        let mut of_global = vec![0; world * n];
        perm.iter()
            .enumerate()
            .for_each(|(pos, &sample)| of_global[sample] = pos / n);
        let r = coll.rank();
        BatchGroups {
            of_sample: of_global[r * n..(r + 1) * n].to_vec(),
            groups: world,
            reduce: coll.group_stats_reduce(),
        }
    } else {
        if splits <= 1 {
            return Ok(key(clip.clone()));
        }
        if n < 2 * splits {
            return Err(ObjectiveError::Config(format!(
                "shuffle-BN splits a batch of {n} into {splits} sub-batches of under 2 clips; lower method.shuffle_bn_splits or raise the batch"
            )));
        }
        let mut of_sample = vec![0; n];
        permutation(n, salt)
            .iter()
            .enumerate()
            .for_each(|(pos, &sample)| of_sample[sample] = pos * splits / n);
        BatchGroups {
            of_sample,
            groups: splits,
            reduce: None,
        }
    };
    if world > 1 && groups.reduce.is_none() {
        return Err(ObjectiveError::Config(
            "shuffle-BN across devices needs collectives that can sum BatchNorm statistics".into(),
        ));
    }
    Ok(with_batch_groups(groups, || key(clip.clone())))
}
