//! `MomentumEncoder`: the EMA target network of ρMoCo and ρBYOL (docs/method.md §2.6).
//!
//! A deep copy of the online network (BN running statistics are its own, not shared), updated as
//! θ_m ← m·θ_m + (1−m)·θ on parameters only, never on BN running buffers. It stays on the autodiff
//! backend with gradients off, so its BatchNorms use batch statistics like the released code's
//! key encoder in train mode.

use std::collections::HashMap;

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{backend::AutodiffBackend, backend::Backend, Tensor};

/// m(e) = 1 − (1 − m_base)·(cos(π·e/E) + 1)/2 for fractional epoch e of E.
pub fn cosine_momentum(m_base: f64, epoch: f64, total_epochs: f64) -> f64 {
    let e = if total_epochs > 0.0 {
        (epoch / total_epochs).clamp(0.0, 1.0)
    } else {
        1.0
    };
    1.0 - (1.0 - m_base) * ((std::f64::consts::PI * e).cos() + 1.0) / 2.0
}

/// A target network that follows an online network by EMA.
#[derive(Debug)]
pub struct MomentumEncoder<M> {
    pub target: M,
}

impl<M> MomentumEncoder<M> {
    /// A deep copy of `online` (fresh BN running state), with gradients off.
    pub fn new<B: AutodiffBackend>(online: &M) -> Self
    where
        M: AutodiffModule<B>,
    {
        let target = M::from_inner(online.valid()).no_grad();
        Self { target }
    }

    /// θ_m ← m·θ_m + (1−m)·θ for every parameter; BN running statistics are left alone.
    pub fn update<B: Backend>(&mut self, online: &M, m: f64)
    where
        M: Module<B> + Clone,
    {
        let mut collect = CollectParams {
            path: Vec::new(),
            values: HashMap::new(),
        };
        online.visit(&mut collect);
        let mut ema = Ema {
            path: Vec::new(),
            online: collect.values,
            m,
        };
        self.target = self.target.clone().map(&mut ema);
    }
}

fn is_running_stat(path: &[String]) -> bool {
    matches!(
        path.last().map(String::as_str),
        Some("running_mean" | "running_var")
    )
}

struct CollectParams<B: Backend> {
    path: Vec<String>,
    values: HashMap<String, Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for CollectParams<B> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
        if !is_running_stat(&self.path) {
            let t = p.val().detach();
            let n = t.shape().num_elements();
            self.values.insert(self.path.join("."), t.reshape([n]));
        }
    }
}

struct Ema<B: Backend> {
    path: Vec<String>,
    online: HashMap<String, Tensor<B, 1>>,
    m: f64,
}

impl<B: Backend> ModuleMapper<B> for Ema<B> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, t, mapper) = p.consume();
        let key = self.path.join(".");
        let t = match (is_running_stat(&self.path), self.online.remove(&key)) {
            (false, Some(o)) => {
                let shape = t.shape();
                (t.mul_scalar(self.m) + o.reshape(shape).mul_scalar(1.0 - self.m)).detach()
            }
            _ => t,
        };
        Param::from_mapped_value(id, t, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_endpoints() {
        assert!((cosine_momentum(0.996, 0.0, 200.0) - 0.996).abs() < 1e-12);
        assert!((cosine_momentum(0.996, 200.0, 200.0) - 1.0).abs() < 1e-12);
        assert!((cosine_momentum(0.994, 100.0, 200.0) - 0.997).abs() < 1e-12);
    }
}
