//! Writes the network `rho pretrain` starts from (backbone and heads, drawn as the trainer draws
//! them: the CPU backend seeded with the recipe's seed) as `.safetensors` in rho's names and
//! PyTorch's layout, for `scripts/torch_reference_pretrain.py --init-from` (docs/method.md,
//! "At the demo's scale").
//!
//!     cargo run --release -p rho-train --example init_network -- RECIPE OUT [key=value ...]
use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use rho_train::engine::build_networks;
use rho_train::Recipe;
use safetensors::tensor::{Dtype, TensorView};

type B = Autodiff<Flex>;
type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Every float tensor by module path as f32 bytes, Linear weights as PyTorch's [out, in].
#[derive(Default)]
struct Collect {
    path: Vec<String>,
    out: BTreeMap<String, (Vec<usize>, Vec<u8>)>,
}

impl<Bk: Backend> ModuleVisitor<Bk> for Collect {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Bk, D>>) {
        let key = self.path.join(".");
        let mut t = p.val();
        if key.contains("linears.") && key.ends_with(".weight") {
            t = t.swap_dims(0, 1);
        }
        let shape = t.dims().to_vec();
        let v = t
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("a float tensor reads as f32");
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.out.insert(key, (shape, bytes));
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [recipe, out, overrides @ ..] = args.as_slice() else {
        return Err("usage: init_network RECIPE OUT [key=value ...]".into());
    };
    let recipe = Recipe::load(&PathBuf::from(recipe), overrides)?;
    let device = Default::default();
    let (net, _) = build_networks::<B>(&recipe, &device)?;
    let mut c = Collect::default();
    net.visit(&mut c);
    let views = c
        .out
        .iter()
        .map(|(k, (shape, bytes))| {
            Ok((
                k.clone(),
                TensorView::new(Dtype::F32, shape.clone(), bytes)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, None, &PathBuf::from(out))?;
    Ok(())
}
