//! The backbone presets: one table of name, description and constructor. `rho models`, the
//! recipes' `model.arch` and every "unknown arch" message read it, and [`register`] adds one
//! at run time (a user's own network shape) in one place.

use std::sync::{LazyLock, RwLock};

use crate::config::{BlockKind, ConvFactor, ResNet3dConfig};
use crate::error::ModelError;

/// A named backbone configuration.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub name: &'static str,
    pub description: &'static str,
    pub build: fn() -> ResNet3dConfig,
}

const BUILTIN: &[Preset] = &[
    Preset {
        name: "slow_r50",
        description: "Slow R-50, the paper's backbone (SlowFast's Slow pathway)",
        build: || ResNet3dConfig::slow_resnet("slow_r50", [3, 4, 6, 3], 64, BlockKind::Bottleneck),
    },
    Preset {
        name: "slow_r101",
        description: "Slow R-101 (the paper's deeper backbone)",
        build: || {
            ResNet3dConfig::slow_resnet("slow_r101", [3, 4, 23, 3], 64, BlockKind::Bottleneck)
        },
    },
    Preset {
        name: "slow_r18",
        description: "Slow R-18: basic blocks on the Slow layout",
        build: || ResNet3dConfig::slow_resnet("slow_r18", [2, 2, 2, 2], 64, BlockKind::Basic),
    },
    Preset {
        name: "r3d_18",
        description: "torchvision's R3D-18 (full 3×3×3 convolutions)",
        build: || ResNet3dConfig::torchvision_r18("r3d_18", 64, ConvFactor::Full),
    },
    Preset {
        name: "r2plus1d_18",
        description: "torchvision's R(2+1)D-18 (factorised spatial and temporal convolutions)",
        build: || ResNet3dConfig::torchvision_r18("r2plus1d_18", 64, ConvFactor::TwoPlusOne),
    },
    // Laptop/test sizes: the same layer tables with channels divided by 8.
    Preset {
        name: "slow_r50_tiny",
        description: "slow_r50 with 1/8 of the channels (tests, laptops)",
        build: || {
            ResNet3dConfig::slow_resnet("slow_r50_tiny", [3, 4, 6, 3], 8, BlockKind::Bottleneck)
        },
    },
    Preset {
        name: "slow_r18_tiny",
        description: "one basic block per stage, 1/8 of the channels (the demo's backbone)",
        build: || ResNet3dConfig::slow_resnet("slow_r18_tiny", [1, 1, 1, 1], 8, BlockKind::Basic),
    },
    Preset {
        name: "r3d_18_tiny",
        description: "r3d_18 with 1/8 of the channels",
        build: || ResNet3dConfig::torchvision_r18("r3d_18_tiny", 8, ConvFactor::Full),
    },
    Preset {
        name: "r2plus1d_18_tiny",
        description: "r2plus1d_18 with 1/8 of the channels",
        build: || ResNet3dConfig::torchvision_r18("r2plus1d_18_tiny", 8, ConvFactor::TwoPlusOne),
    },
];

static PRESETS: LazyLock<RwLock<Vec<Preset>>> = LazyLock::new(|| RwLock::new(BUILTIN.to_vec()));

/// Every preset, built-in ones first, in registration order.
pub fn presets() -> Vec<Preset> {
    PRESETS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The preset called `name`.
pub fn find(name: &str) -> Result<Preset, ModelError> {
    let all = presets();
    all.iter()
        .find(|p| p.name == name)
        .copied()
        .ok_or_else(|| ModelError::UnknownArch {
            name: name.to_string(),
            known: all.iter().map(|p| p.name).collect::<Vec<_>>().join(", "),
        })
}

/// Adds a preset; its name must be new, and its configuration valid.
pub fn register(preset: Preset) -> Result<(), ModelError> {
    (preset.build)().validate()?;
    let mut all = PRESETS.write().unwrap_or_else(|e| e.into_inner());
    if all.iter().any(|p| p.name == preset.name) {
        return Err(ModelError::Config(format!(
            "a preset called `{}` exists already",
            preset.name
        )));
    }
    all.push(preset);
    Ok(())
}
