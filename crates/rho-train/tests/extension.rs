//! Extending rho in one place each (docs/architecture.md, "How to add …"): a backbone preset
//! and a method registered from outside the crates, then trained, checkpointed and resumed by
//! the unchanged trainer. The method is a real one, alignment and uniformity on the
//! hypersphere (Wang & Isola, 2020), with a step counter as its own checkpointed state.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{backend::AutodiffBackend, Tensor};
use rho_objectives::registry::{self, MethodInfo};
use rho_objectives::{
    l2_normalize, Collectives, MethodConfig, MethodKind, Objective, ObjectiveError, SslNetwork,
    StateBlobs, StepContext, StepOutput,
};
use rho_train::{pretrain_with, RunOptions};

mod common;

type AB = Autodiff<Flex>;

/// ‖z₁ − z₂‖² between the clips of a video, plus log E exp(−2‖zᵢ − zⱼ‖²) over the batch.
struct AlignUniform {
    config: MethodConfig,
    steps: u64,
}

impl<B: AutodiffBackend> Objective<B> for AlignUniform {
    fn config(&self) -> &MethodConfig {
        &self.config
    }

    fn step(
        &mut self,
        online: &SslNetwork<B>,
        clips: &[Tensor<B, 5>],
        _ctx: StepContext<'_>,
        _coll: &dyn Collectives<B>,
    ) -> Result<StepOutput<B>, ObjectiveError> {
        let z: Vec<Tensor<B, 2>> = clips
            .iter()
            .map(|c| l2_normalize(online.project(c.clone())))
            .collect();
        let align = (z[0].clone() - z[1].clone())
            .powi_scalar(2)
            .sum_dim(1)
            .mean();
        let n = z[0].dims()[0];
        let dot = z[0].clone().matmul(z[0].clone().transpose());
        let sq_dist = dot.neg().add_scalar(1.0).mul_scalar(2.0); // ‖a − b‖² of unit vectors
        let off_diagonal = Tensor::<B, 2>::eye(n, &z[0].device()).neg().add_scalar(1.0);
        let uniform = (sq_dist.mul_scalar(-2.0).exp() * off_diagonal)
            .sum()
            .mul_scalar(((n * (n - 1)) as f64).recip()) // not div_scalar: docs/architecture.md "Exact f64 gradients"
            .log();
        let loss = align + uniform;
        self.steps += 1;
        let value = rho_objectives::similarity::scalar(loss.clone().detach());
        Ok(StepOutput {
            loss,
            metrics: [("loss", value), ("toy_steps", self.steps as f64)].into(),
        })
    }

    fn save_state(&self) -> Result<StateBlobs, ObjectiveError> {
        Ok([(
            "method.steps".to_string(),
            self.steps.to_le_bytes().to_vec(),
        )]
        .into())
    }

    fn load_state(&mut self, blobs: &StateBlobs, _: &B::Device) -> Result<(), ObjectiveError> {
        let bytes = blobs
            .get("method.steps")
            .and_then(|b| b.as_slice().try_into().ok());
        self.steps =
            u64::from_le_bytes(bytes.ok_or(ObjectiveError::State("no step count".into()))?);
        Ok(())
    }
}

fn build_align_uniform(
    config: MethodConfig,
    _online: &SslNetwork<AB>,
    _device: &<AB as burn::tensor::backend::BackendTypes>::Device,
) -> Result<Box<dyn Objective<AB>>, ObjectiveError> {
    Ok(Box::new(AlignUniform { config, steps: 0 }))
}

#[test]
fn a_registered_preset_and_method_train_checkpoint_and_resume() {
    // One place each: the preset...
    rho_model::presets::register(rho_model::Preset {
        name: "slow_r10_micro",
        description: "one basic block per stage, 4 channels",
        build: || {
            rho_model::ResNet3dConfig::slow_resnet(
                "slow_r10_micro",
                [1, 1, 1, 1],
                4,
                rho_model::BlockKind::Basic,
            )
        },
    })
    .unwrap();
    // ...and the method, on SimCLR's preset heads.
    let info = MethodInfo {
        name: "align_uniform".into(),
        description: "alignment and uniformity on the hypersphere".into(),
        preset: MethodKind::Simclr,
    };
    registry::register::<AB>(info, build_align_uniform).unwrap();
    assert!(registry::methods()
        .iter()
        .any(|m| m.name == "align_uniform"));
    assert!(rho_model::presets::presets()
        .iter()
        .any(|p| p.name == "slow_r10_micro"));

    let index = common::videos("extension");
    let mut r = common::recipe("align_uniform", "lars", "proj_hidden = 16", &index);
    r.model.arch = "slow_r10_micro".into();
    r.output = std::env::temp_dir().join(format!("rho-extension-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&r.output);
    let opts = |max_steps, resume| RunOptions {
        max_steps: Some(max_steps),
        checkpoint_every: Some(2),
        keep: 2,
        resume,
        ..Default::default()
    };
    let mut logs = Vec::new();
    pretrain_with::<AB>(&r, &Default::default(), opts(2, None), |l| {
        logs.push(l.clone())
    })
    .unwrap();
    assert!(
        logs.iter().all(|l| l.metrics["loss"].is_finite()),
        "{logs:?}"
    );
    // The checkpoint carries the method's own state; a resumed run continues its count.
    let ck = rho_train::checkpoint::checkpoint_path(&r.output, 2);
    let mut resumed = Vec::new();
    pretrain_with::<AB>(&r, &Default::default(), opts(3, Some(ck)), |l| {
        resumed.push(l.clone())
    })
    .unwrap();
    assert_eq!(resumed.len(), 1);
    assert_eq!((resumed[0].step, resumed[0].metrics["toy_steps"]), (2, 3.0));
    // The run card's recipe reads back with the registered method.
    let written = toml::to_string(&r).unwrap();
    assert_eq!(
        rho_train::Recipe::parse(&written, "written", &[]).unwrap(),
        r
    );
    // Names must be new.
    let again = MethodInfo {
        name: "byol".into(),
        description: String::new(),
        preset: MethodKind::Byol,
    };
    assert!(registry::register::<AB>(again, build_align_uniform).is_err());
}
