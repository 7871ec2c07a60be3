//! MoCo's shuffle-BN (spec §2.2): the key encoder's BatchNorm must not see the same batch
//! composition as the query encoder's, or the queries can find their keys through the batch
//! statistics instead of the content (MoCo's "information leak"). The permutation depends on
//! (seed, step, clip) only, so every rank draws the same one and a resumed run the same again.

use burn::tensor::{backend::AutodiffBackend, Tensor, TensorData};

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

fn index_tensor<B: burn::tensor::backend::Backend>(
    idx: &[usize],
    device: &B::Device,
) -> Tensor<B, 1, burn::tensor::Int> {
    let v: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(v, [idx.len()]), device)
}

/// MoCo's shuffle-BN keys of one clip batch [n, 3, T, H, W] (spec §2.2). Several devices: the
/// clips of all ranks are gathered, permuted, each rank encodes its slice, and the keys go back
/// to their own rows. One device: the batch is permuted and encoded in `splits` sub-batches.
/// Either way the key encoder's BatchNorm sees a different composition than the queries'.
pub fn keys<B: AutodiffBackend>(
    net: &SslNetwork<B>,
    clip: &Tensor<B, 5>,
    splits: usize,
    salt: (u64, u64, u64),
    coll: &dyn Collectives<B>,
) -> Result<Tensor<B, 2>, ObjectiveError> {
    let dims = clip.dims();
    let n = dims[0];
    let device = clip.device();
    let world = coll.world_size();
    let key = |x: Tensor<B, 5>| l2_normalize(net.project(x)).detach();
    if world > 1 {
        let f = dims[1..].iter().product::<usize>();
        let all = coll.all_gather(clip.clone().detach().reshape([n, f])); // [W·n, F]
        let perm = permutation(world * n, salt);
        let mut inv = vec![0; perm.len()];
        perm.iter().enumerate().for_each(|(i, &p)| inv[p] = i);
        let r = coll.rank();
        let mine = all.select(0, index_tensor::<B>(&perm[r * n..(r + 1) * n], &device));
        let keys = coll.all_gather(key(mine.reshape(dims))); // row i: key of sample perm[i]
        return Ok(keys.select(0, index_tensor::<B>(&inv[r * n..(r + 1) * n], &device)));
    }
    if splits <= 1 {
        return Ok(key(clip.clone()));
    }
    if n < 2 * splits {
        return Err(ObjectiveError::Config(format!(
            "shuffle-BN splits a batch of {n} into {splits} sub-batches of under 2 clips; lower method.shuffle_bn_splits or raise the batch"
        )));
    }
    let perm = permutation(n, salt);
    let mut inv = vec![0; n];
    perm.iter().enumerate().for_each(|(i, &p)| inv[p] = i);
    let shuffled = clip.clone().select(0, index_tensor::<B>(&perm, &device));
    let parts: Vec<Tensor<B, 2>> = (0..splits)
        .map(|s| {
            let (a, b) = (s * n / splits, (s + 1) * n / splits);
            key(shuffled.clone().slice([a..b]))
        })
        .collect();
    Ok(Tensor::cat(parts, 0).select(0, index_tensor::<B>(&inv, &device)))
}
