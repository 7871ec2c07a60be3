//! `ResStage`: a run of residual blocks at one resolution (res2…res5).

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

use crate::block::{BlockSpec, ResBlock};

#[derive(Module, Debug)]
pub struct ResStage<B: Backend> {
    pub blocks: Vec<ResBlock<B>>,
}

impl<B: Backend> ResStage<B> {
    /// `first` describes block 0; the others keep the width and have stride 1.
    pub fn new(first: BlockSpec, depth: usize, device: &B::Device) -> Self {
        let blocks = (0..depth)
            .map(|i| {
                let spec = if i == 0 {
                    first
                } else {
                    BlockSpec {
                        cin: first.cout,
                        stride: [1, 1, 1],
                        ..first
                    }
                };
                ResBlock::new(spec, device)
            })
            .collect();
        Self { blocks }
    }

    pub fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        self.blocks.iter().fold(x, |x, b| b.forward(x))
    }
}
