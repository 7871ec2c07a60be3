//! Parameter naming schemes: how each tensor of a rho network is called in other frameworks.
//!
//! The network's structure is walked once into a table of [`Slot`]s (one per tensor), each
//! holding rho's own module path, its role and its PyTorch-layout shape. A [`Naming`] then gives
//! the external key of every slot, so loading, exporting and converting share one table.

use std::fmt;
use std::str::FromStr;

use burn::tensor::backend::Backend;

use crate::conv::ConvBn;
use crate::error::ModelError;
use crate::resnet::ResNet3d;

/// A state-dict naming convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Naming {
    /// rho's own module paths (BN γ/β as `gamma`/`beta`), tensors in PyTorch layout.
    Rho,
    /// pytorchvideo `create_resnet` (`blocks.0.conv.weight`, `blocks.1.res_blocks.0.branch2.conv_a.weight`).
    Pytorchvideo,
    /// PySlowFast `ResNet` (`s1.pathway0_stem.conv.weight`, `s2.pathway0_res0.branch2.a.weight`).
    Pyslowfast,
    /// torchvision `VideoResNet` (`stem.0.weight`, `layer1.0.conv1.0.weight`, `fc.weight`).
    Torchvision,
}

pub const NAMINGS: &[Naming] = &[
    Naming::Rho,
    Naming::Pytorchvideo,
    Naming::Pyslowfast,
    Naming::Torchvision,
];

impl Naming {
    pub fn as_str(self) -> &'static str {
        match self {
            Naming::Rho => "rho",
            Naming::Pytorchvideo => "pytorchvideo",
            Naming::Pyslowfast => "pyslowfast",
            Naming::Torchvision => "torchvision",
        }
    }

    /// Whether files in this naming carry BN `num_batches_tracked` counters (PyTorch modules do).
    pub fn has_batch_counters(self) -> bool {
        self != Naming::Rho
    }
}

impl fmt::Display for Naming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Naming {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NAMINGS
            .iter()
            .copied()
            .find(|n| n.as_str() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                ModelError::Config(format!(
                "unknown naming `{s}`; expected one of rho, pytorchvideo, pyslowfast, torchvision"
            ))
            })
    }
}

/// What a tensor is, which decides its layout conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    ConvWeight,
    BnWeight,
    BnBias,
    BnMean,
    BnVar,
    /// Burn stores [in, out], PyTorch [out, in].
    LinearWeight,
    LinearBias,
}

impl Role {
    fn leaf(self, naming: Naming) -> &'static str {
        match (self, naming) {
            (Role::BnWeight, Naming::Rho) => "gamma",
            (Role::BnBias, Naming::Rho) => "beta",
            (Role::ConvWeight | Role::BnWeight | Role::LinearWeight, _) => "weight",
            (Role::BnBias | Role::LinearBias, _) => "bias",
            (Role::BnMean, _) => "running_mean",
            (Role::BnVar, _) => "running_var",
        }
    }

    pub fn is_head(self) -> bool {
        matches!(self, Role::LinearWeight | Role::LinearBias)
    }
}

/// One tensor of the network.
#[derive(Debug, Clone)]
pub struct Slot {
    /// Path of the parameter in the Burn module tree (`stages.0.blocks.0.a.conv.weight`).
    pub rho_path: String,
    pub role: Role,
    /// Shape in PyTorch layout.
    pub torch_shape: Vec<usize>,
    /// External key without the leaf (`blocks.1.res_blocks.0.branch2.conv_a`).
    ext_module: Result<String, String>,
}

impl Slot {
    /// The key of this tensor under `naming`.
    pub fn key(&self, naming: Naming) -> Result<String, ModelError> {
        if naming == Naming::Rho {
            return Ok(self.rho_path.clone());
        }
        match &self.ext_module {
            Ok(m) => Ok(format!("{m}.{}", self.role.leaf(naming))),
            Err(what) => Err(ModelError::Naming {
                naming: naming.to_string(),
                what: what.clone(),
                hint: "--naming rho".into(),
            }),
        }
    }

    /// The BN module key for `num_batches_tracked`, for BN running-mean slots.
    pub fn batch_counter_key(&self, naming: Naming) -> Option<String> {
        (self.role == Role::BnMean && naming.has_batch_counters())
            .then(|| {
                self.ext_module
                    .as_ref()
                    .ok()
                    .map(|m| format!("{m}.num_batches_tracked"))
            })
            .flatten()
    }
}

/// Which convolution of a block a unit is.
#[derive(Debug, Clone, Copy)]
enum Part {
    A,
    B,
    C,
    Shortcut,
}

/// External module prefixes of one ConvBn unit: (spatial conv, spatial BN, conv, BN).
type UnitNames = Result<[String; 4], String>;

fn stem_names(naming: Naming, factorised: bool) -> UnitNames {
    match (naming, factorised) {
        (Naming::Pytorchvideo, false) => Ok(names4("", "", "blocks.0.conv", "blocks.0.norm")),
        (Naming::Pyslowfast, false) => Ok(names4(
            "",
            "",
            "s1.pathway0_stem.conv",
            "s1.pathway0_stem.bn",
        )),
        (Naming::Torchvision, false) => Ok(names4("", "", "stem.0", "stem.1")),
        (Naming::Torchvision, true) => Ok(names4("stem.0", "stem.1", "stem.3", "stem.4")),
        (Naming::Rho, _) => Ok(names4("", "", "", "")),
        (_, true) => Err("a factorised (2+1)D stem".into()),
    }
}

fn block_names(
    naming: Naming,
    stage: usize,
    block: usize,
    part: Part,
    factorised: bool,
    bottleneck: bool,
) -> UnitNames {
    match naming {
        Naming::Rho => Ok(names4("", "", "", "")),
        Naming::Pytorchvideo | Naming::Pyslowfast if factorised => {
            Err("factorised (2+1)D convolutions".into())
        }
        Naming::Pytorchvideo => {
            let p = format!("blocks.{}.res_blocks.{block}", stage + 1);
            Ok(match part {
                Part::A => names4(
                    "",
                    "",
                    &format!("{p}.branch2.conv_a"),
                    &format!("{p}.branch2.norm_a"),
                ),
                Part::B => names4(
                    "",
                    "",
                    &format!("{p}.branch2.conv_b"),
                    &format!("{p}.branch2.norm_b"),
                ),
                Part::C => names4(
                    "",
                    "",
                    &format!("{p}.branch2.conv_c"),
                    &format!("{p}.branch2.norm_c"),
                ),
                Part::Shortcut => names4(
                    "",
                    "",
                    &format!("{p}.branch1_conv"),
                    &format!("{p}.branch1_norm"),
                ),
            })
        }
        Naming::Pyslowfast => {
            let p = format!("s{}.pathway0_res{block}", stage + 2);
            Ok(match part {
                Part::A => names4(
                    "",
                    "",
                    &format!("{p}.branch2.a"),
                    &format!("{p}.branch2.a_bn"),
                ),
                Part::B => names4(
                    "",
                    "",
                    &format!("{p}.branch2.b"),
                    &format!("{p}.branch2.b_bn"),
                ),
                Part::C => names4(
                    "",
                    "",
                    &format!("{p}.branch2.c"),
                    &format!("{p}.branch2.c_bn"),
                ),
                Part::Shortcut => {
                    names4("", "", &format!("{p}.branch1"), &format!("{p}.branch1_bn"))
                }
            })
        }
        Naming::Torchvision => {
            let p = format!("layer{}.{block}", stage + 1);
            let conv = match (part, bottleneck) {
                (Part::A, _) => "conv1",
                (Part::B, _) => "conv2",
                (Part::C, _) => "conv3",
                (Part::Shortcut, _) => "downsample",
            };
            // Bottleneck conv1/conv3 and the shortcut are never factorised in torchvision.
            Ok(if factorised {
                names4(
                    &format!("{p}.{conv}.0.0"),
                    &format!("{p}.{conv}.0.1"),
                    &format!("{p}.{conv}.0.3"),
                    &format!("{p}.{conv}.1"),
                )
            } else {
                names4("", "", &format!("{p}.{conv}.0"), &format!("{p}.{conv}.1"))
            })
        }
    }
}

fn head_name(naming: Naming, num_stages: usize) -> String {
    match naming {
        Naming::Rho => String::new(),
        Naming::Pytorchvideo => format!("blocks.{}.proj", num_stages + 1),
        Naming::Pyslowfast => "head.projection".into(),
        Naming::Torchvision => "fc".into(),
    }
}

fn names4(a: &str, b: &str, c: &str, d: &str) -> [String; 4] {
    [a.to_string(), b.to_string(), c.to_string(), d.to_string()]
}

/// The slot table of `model` under `naming` (external keys that cannot be expressed become
/// errors when asked for).
pub fn slots<B: Backend>(model: &ResNet3d<B>, naming: Naming) -> Vec<Slot> {
    let mut out = Vec::new();
    let factorised = model.stem.unit.spatial.is_some();
    push_unit(
        &mut out,
        "stem.unit",
        &model.stem.unit,
        stem_names(naming, factorised),
    );
    for (s, stage) in model.stages.iter().enumerate() {
        for (j, block) in stage.blocks.iter().enumerate() {
            let bottleneck = block.c.is_some();
            let parts = [
                (Part::A, "a", Some(&block.a)),
                (Part::B, "b", Some(&block.b)),
                (Part::C, "c", block.c.as_ref()),
                (Part::Shortcut, "shortcut", block.shortcut.as_ref()),
            ];
            for (part, field, unit) in parts {
                if let Some(u) = unit {
                    let names = block_names(naming, s, j, part, u.spatial.is_some(), bottleneck);
                    push_unit(
                        &mut out,
                        &format!("stages.{s}.blocks.{j}.{field}"),
                        u,
                        names,
                    );
                }
            }
        }
    }
    if let Some(head) = &model.head {
        let [fin, fout] = head.proj.weight.dims();
        let ext = head_name(naming, model.stages.len());
        out.push(Slot {
            rho_path: "head.proj.weight".into(),
            role: Role::LinearWeight,
            torch_shape: vec![fout, fin],
            ext_module: Ok(ext.clone()),
        });
        out.push(Slot {
            rho_path: "head.proj.bias".into(),
            role: Role::LinearBias,
            torch_shape: vec![fout],
            ext_module: Ok(ext),
        });
    }
    out
}

fn push_unit<B: Backend>(out: &mut Vec<Slot>, path: &str, unit: &ConvBn<B>, names: UnitNames) {
    let ext = |i: usize| names.as_ref().map(|n| n[i].clone()).map_err(|e| e.clone());
    let mut conv_bn = |prefix: String,
                       conv: &burn::nn::conv::Conv3d<B>,
                       ch: usize,
                       conv_ext,
                       bn_ext: Result<String, String>| {
        out.push(Slot {
            rho_path: format!("{prefix}conv.weight"),
            role: Role::ConvWeight,
            torch_shape: conv.weight.dims().to_vec(),
            ext_module: conv_ext,
        });
        for (leaf, role) in [
            ("gamma", Role::BnWeight),
            ("beta", Role::BnBias),
            ("running_mean", Role::BnMean),
            ("running_var", Role::BnVar),
        ] {
            out.push(Slot {
                rho_path: format!("{prefix}bn.{leaf}"),
                role,
                torch_shape: vec![ch],
                ext_module: bn_ext.clone(),
            });
        }
    };
    if let Some(sp) = &unit.spatial {
        conv_bn(
            format!("{path}.spatial."),
            &sp.conv,
            sp.bn.channels(),
            ext(0),
            ext(1),
        );
    }
    conv_bn(
        format!("{path}."),
        &unit.conv,
        unit.bn.channels(),
        ext(2),
        ext(3),
    );
}

/// A row-major [rows, cols] matrix transposed (Burn stores Linear weights [in, out], PyTorch
/// [out, in]).
pub(crate) fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = data[r * cols + c];
        }
    }
    t
}
