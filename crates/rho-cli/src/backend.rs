//! Which Burn backend runs a command: chosen at build time by Cargo features, and among the
//! compiled-in ones at run time by `--backend`. Everything below the CLI is generic.

use anyhow::{bail, Result};
use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// Pure-Rust CPU backend (default build).
    Flex,
    /// The ndarray CPU backend (feature `ndarray`).
    Ndarray,
    /// wgpu: Vulkan, Metal, DX12 (feature `wgpu`).
    Wgpu,
    /// NVIDIA CUDA (feature `cuda`).
    Cuda,
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default();
        f.write_str(&name)
    }
}

impl BackendKind {
    /// Backends whose replicas share the host's memory (the memory check divides it).
    pub fn is_cpu(self) -> bool {
        matches!(self, BackendKind::Flex | BackendKind::Ndarray)
    }

    pub fn compiled() -> Vec<BackendKind> {
        let mut v = Vec::new();
        if cfg!(feature = "cuda") {
            v.push(BackendKind::Cuda);
        }
        if cfg!(feature = "wgpu") {
            v.push(BackendKind::Wgpu);
        }
        if cfg!(feature = "flex") {
            v.push(BackendKind::Flex);
        }
        if cfg!(feature = "ndarray") {
            v.push(BackendKind::Ndarray);
        }
        v
    }

    /// `--backend` or the first compiled one (GPUs first).
    pub fn resolve(requested: Option<BackendKind>) -> Result<BackendKind> {
        let compiled = Self::compiled();
        match requested {
            Some(k) if compiled.contains(&k) => Ok(k),
            Some(k) => bail!(
                "backend `{k:?}` is not compiled into this rho; build with `--features {}` (compiled: {:?})",
                format!("{k:?}").to_lowercase(),
                compiled
            ),
            None => compiled
                .first()
                .copied()
                .ok_or_else(|| anyhow::anyhow!("rho was built without any backend feature (flex, ndarray, wgpu, cuda)")),
        }
    }
}

/// Runs `$body` with `B` bound to the chosen backend type, `$dev` to its device and `$at` to a
/// function from a device index to a device (data parallelism; CPU backends have one device,
/// which the replicas share).
#[macro_export]
macro_rules! with_backend {
    ($kind:expr, $index:expr, |$B:ident, $dev:ident, $at:ident| $body:expr) => {{
        use $crate::backend::BackendKind;
        match $kind {
            #[cfg(feature = "flex")]
            BackendKind::Flex => {
                type $B = burn::backend::Flex;
                let $dev = Default::default();
                let _ = $index;
                let $at = |_: usize| Default::default();
                $body
            }
            #[cfg(feature = "ndarray")]
            BackendKind::Ndarray => {
                type $B = burn::backend::NdArray<f32>;
                let $dev = Default::default();
                let _ = $index;
                let $at = |_: usize| Default::default();
                $body
            }
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu => {
                type $B = burn::backend::Wgpu;
                // CUBECL_WGPU_DEFAULT_DEVICE (e.g. `Cpu` for Mesa's lavapipe software Vulkan)
                // lets cubecl pick the adapter it names instead of requiring a discrete GPU.
                let $at = |i: usize| {
                    if std::env::var_os("CUBECL_WGPU_DEFAULT_DEVICE").is_some() {
                        burn::backend::wgpu::WgpuDevice::DefaultDevice
                    } else {
                        burn::backend::wgpu::WgpuDevice::DiscreteGpu(i)
                    }
                };
                let $dev = $at($index);
                $body
            }
            #[cfg(feature = "cuda")]
            BackendKind::Cuda => {
                type $B = burn::backend::Cuda;
                let $dev = burn::backend::cuda::CudaDevice::new($index);
                let $at = burn::backend::cuda::CudaDevice::new;
                $body
            }
            #[allow(unreachable_patterns)]
            other => anyhow::bail!("backend {other:?} is not compiled in"),
        }
    }};
}
