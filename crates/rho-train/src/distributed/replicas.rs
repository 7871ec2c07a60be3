//! Keeping the replicas of a data-parallel run identical: gradients averaged in one flat buffer
//! per call (one collective, however many tensors), and rank 0's weights broadcast at start and
//! checked identical on every rank.

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{backend::AutodiffBackend, backend::Backend, Tensor, TensorData};

use super::transport::{CollectiveError, Transport};

/// Averages `grads` over the ranks: the gradient of the global batch's loss, each rank having
/// computed its own shard's share (with collectives inside the graph, the share already holds
/// the cross-rank terms).
pub fn average_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    mut grads: GradientsParams,
    t: &dyn Transport<B::InnerBackend>,
    call: &str,
) -> Result<GradientsParams, CollectiveError> {
    struct Take<'a, IB: Backend> {
        grads: &'a mut GradientsParams,
        taken: Vec<(ParamId, Vec<usize>, Tensor<IB, 1>)>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Take<'_, B::InnerBackend> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.remove::<B::InnerBackend, D>(p.id) {
                let shape = g.dims().to_vec();
                let n: usize = shape.iter().product();
                self.taken.push((p.id, shape, g.reshape([n])));
            }
        }
    }
    let mut take = Take::<B::InnerBackend> {
        grads: &mut grads,
        taken: Vec::new(),
    };
    module.visit(&mut take);
    let taken = take.taken;
    if taken.is_empty() {
        return Ok(grads);
    }
    let sizes: Vec<usize> = taken.iter().map(|(_, s, _)| s.iter().product()).collect();
    let flat = Tensor::cat(taken.iter().map(|(_, _, g)| g.clone()).collect(), 0);
    let world = t.world_size() as f64;
    let summed = t.all_reduce_sum(flat, call)?.div_scalar(world);
    let mut offset = 0;
    let parts: Vec<(ParamId, Vec<usize>, Tensor<B::InnerBackend, 1>)> = taken
        .into_iter()
        .zip(sizes)
        .map(|((id, shape, _), n)| {
            let part = summed.clone().narrow(0, offset, n);
            offset += n;
            (id, shape, part)
        })
        .collect();
    struct Put<'a, IB: Backend> {
        grads: &'a mut GradientsParams,
        parts: std::collections::HashMap<ParamId, (Vec<usize>, Tensor<IB, 1>)>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Put<'_, B::InnerBackend> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            if let Some((shape, g)) = self.parts.remove(&p.id) {
                let shape: [usize; D] = shape.try_into().expect("the shape was taken from D dims");
                self.grads
                    .register::<B::InnerBackend, D>(p.id, g.reshape(shape));
            }
        }
    }
    let mut put = Put::<B::InnerBackend> {
        grads: &mut grads,
        parts: parts.into_iter().map(|(id, s, g)| (id, (s, g))).collect(),
    };
    module.visit(&mut put);
    Ok(grads)
}

/// Every float tensor of a module (parameters and BatchNorm running statistics), flattened in
/// visiting order.
fn flatten<B: Backend, M: Module<B>>(module: &M) -> Vec<Tensor<B, 1>> {
    struct Collect<B: Backend>(Vec<Tensor<B, 1>>);
    impl<B: Backend> ModuleVisitor<B> for Collect<B> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            let t = p.val();
            let n = t.shape().num_elements();
            self.0.push(t.reshape([n]));
        }
    }
    let mut c = Collect(Vec::new());
    module.visit(&mut c);
    c.0
}

/// Makes every rank's module rank 0's: its float tensors are summed with zeros from the other
/// ranks (a broadcast on the all-reduce primitive), after checking that every rank built the
/// same architecture. Then checks the replicas are bit-identical.
pub fn broadcast_from_rank0<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: M,
    t: &dyn Transport<B::InnerBackend>,
    what: &str,
) -> Result<M, CollectiveError> {
    let inner = module.valid();
    let tensors = flatten(&inner);
    let device = match tensors.first() {
        Some(x) => x.device(),
        None => return Ok(module),
    };
    let sizes: Vec<usize> = tensors.iter().map(|x| x.dims()[0]).collect();
    // Same structure everywhere: tensor count and element count, gathered from every rank.
    let shape_sig = [sizes.len() as f32, sizes.iter().sum::<usize>() as f32];
    let sigs = gather_rows::<B::InnerBackend>(
        t,
        &shape_sig,
        &device,
        &format!("{what}: structure check"),
    )?;
    if let Some((r, s)) = sigs
        .iter()
        .enumerate()
        .find(|(_, s)| s[..] != shape_sig[..])
    {
        return Err(CollectiveError::Setup(format!(
            "{what}: rank {r} built {} tensors with {} values, rank {} built {} with {}; every rank must run the same recipe (model.arch, method heads)",
            s[0], s[1], t.rank(), shape_sig[0], shape_sig[1]
        )));
    }
    let flat = Tensor::cat(tensors, 0);
    let contribution = if t.rank() == 0 {
        flat
    } else {
        flat.zeros_like()
    };
    let values = t.all_reduce_sum(contribution, &format!("{what}: broadcast from rank 0"))?;
    let mut offset = 0;
    let mut parts = Vec::with_capacity(sizes.len());
    for n in sizes {
        parts.push(values.clone().narrow(0, offset, n));
        offset += n;
    }
    struct Set<B: Backend> {
        parts: std::vec::IntoIter<Tensor<B, 1>>,
    }
    impl<B: AutodiffBackend> ModuleMapper<B> for Set<B::InnerBackend> {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, old, mapper) = p.consume();
            let shape = old.shape();
            let require_grad = old.is_require_grad();
            let new = self.parts.next().expect("one part per tensor");
            let mut v = Tensor::<B, D>::from_inner(new.reshape(shape));
            if require_grad {
                v = v.require_grad();
            }
            Param::from_mapped_value(id, v, mapper)
        }
    }
    let module = module.map(&mut Set::<B::InnerBackend> {
        parts: parts.into_iter(),
    });
    check_identical(&module, t, what)?;
    Ok(module)
}

/// Errors unless every rank holds bit-identical float tensors (compared by a checksum).
pub fn check_identical<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    t: &dyn Transport<B::InnerBackend>,
    what: &str,
) -> Result<(), CollectiveError> {
    let tensors = flatten(&module.valid());
    let Some(device) = tensors.first().map(|x| x.device()) else {
        return Ok(());
    };
    let sig = checksum(&Tensor::cat(tensors, 0).into_data());
    let sigs = gather_rows::<B::InnerBackend>(t, &sig, &device, &format!("{what}: replica check"))?;
    match sigs.iter().position(|s| s[..] != sig[..]) {
        None => Ok(()),
        Some(r) => Err(CollectiveError::Setup(format!(
            "{what}: the replica on rank {r} differs from the one on rank {} (checksums {:?} vs {:?})",
            t.rank(),
            sigs[r],
            sig
        ))),
    }
}

/// Three f32 values that differ for any realistic difference in `data` (bit patterns hashed).
fn checksum(data: &TensorData) -> [f32; 3] {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data.as_bytes() {
        h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
    }
    // f32 holds 24 bits exactly: three 21-bit slices of the hash.
    [
        (h & 0x1f_ffff) as f32,
        ((h >> 21) & 0x1f_ffff) as f32,
        ((h >> 42) & 0x1f_ffff) as f32,
    ]
}

/// Errors unless every rank reports the same `facts` (named by `names`): where a resumed run
/// continues, which dataset it reads. Ranks that disagree would issue different collectives or
/// train on batches that no longer add up.
pub fn check_agreement<B: Backend>(
    t: &dyn Transport<B>,
    device: &B::Device,
    names: &[&str],
    facts: &[u64],
    hint: &str,
) -> Result<(), CollectiveError> {
    // f32 carries 24 bits exactly: each fact travels as four 16-bit pieces.
    let row: Vec<f32> = facts
        .iter()
        .flat_map(|v| [0, 16, 32, 48].map(|s| ((v >> s) & 0xffff) as f32))
        .collect();
    let rows = gather_rows(t, &row, device, "run-state agreement")?;
    let mine = t.rank();
    for (r, other) in rows.iter().enumerate() {
        if other[..] != row[..] {
            let value = |v: &[f32], i: usize| {
                (0..4).fold(0u64, |acc, k| acc | (v[4 * i + k] as u64) << (16 * k))
            };
            let diff: Vec<String> = names
                .iter()
                .enumerate()
                .filter(|(i, _)| value(other, *i) != value(&row, *i))
                .map(|(i, n)| {
                    format!(
                        "{n}: rank {r} {} vs rank {mine} {}",
                        value(other, i),
                        value(&row, i)
                    )
                })
                .collect();
            return Err(CollectiveError::Setup(format!(
                "the ranks disagree ({}); {hint}",
                diff.join(", ")
            )));
        }
    }
    Ok(())
}

/// `row` from every rank, in rank order.
fn gather_rows<B: Backend>(
    t: &dyn Transport<B>,
    row: &[f32],
    device: &B::Device,
    call: &str,
) -> Result<Vec<Vec<f32>>, CollectiveError> {
    let (w, k) = (t.world_size(), row.len());
    let mut padded = vec![0f32; w * k];
    padded[t.rank() * k..(t.rank() + 1) * k].copy_from_slice(row);
    let all = t.all_reduce_sum(
        Tensor::from_data(TensorData::new(padded, [w * k]), device),
        call,
    )?;
    let all = all
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| CollectiveError::Setup(format!("{call}: {e:?}")))?;
    Ok(all.chunks(k).map(<[f32]>::to_vec).collect())
}

/// Makes every rank's `bytes` rank 0's (state the engine does not look into, e.g. a method's
/// target network or queue). The length goes first, then the bytes, two per element: integers
/// below 2¹⁶ are exact in f32 and wider floats, and adding the other ranks' zeros keeps them.
pub fn broadcast_bytes_from_rank0<B: Backend>(
    bytes: &[u8],
    t: &dyn Transport<B>,
    device: &B::Device,
    what: &str,
) -> Result<Vec<u8>, CollectiveError> {
    let root = t.rank() == 0;
    let len = bytes.len() as u64;
    let len_parts: Vec<f32> = (0..4)
        .map(|i| {
            if root {
                ((len >> (16 * i)) & 0xffff) as f32
            } else {
                0.0
            }
        })
        .collect();
    let len_parts = t.all_reduce_sum(
        Tensor::from_data(TensorData::new(len_parts, [4]), device),
        &format!("{what}: length from rank 0"),
    )?;
    let len = to_u16s(len_parts, what)?
        .iter()
        .enumerate()
        .fold(0u64, |acc, (i, p)| acc | (u64::from(*p) << (16 * i))) as usize;
    let words: Vec<f32> = if root {
        bytes
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c.get(1).copied().unwrap_or(0)]) as f32)
            .collect()
    } else {
        vec![0.0; len.div_ceil(2)]
    };
    let n = words.len();
    let words = t.all_reduce_sum(
        Tensor::from_data(TensorData::new(words, [n]), device),
        &format!("{what}: broadcast from rank 0"),
    )?;
    let mut out: Vec<u8> = to_u16s(words, what)?
        .into_iter()
        .flat_map(u16::to_le_bytes)
        .collect();
    out.truncate(len);
    Ok(out)
}

fn to_u16s<B: Backend>(t: Tensor<B, 1>, what: &str) -> Result<Vec<u16>, CollectiveError> {
    let v = t
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| CollectiveError::Setup(format!("{what}: {e:?}")))?;
    Ok(v.into_iter().map(|x| x as u16).collect())
}
