//! How the ρ per-query sub-losses are combined (docs/method.md §2.1, §8 #4).

/// The paper averages the ρ sub-losses; the released code back-propagates each one separately,
/// which sums their gradients (and so scales the effective SGD learning rate with ρ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Mean over query clips (paper).
    #[default]
    Mean,
    /// Sum over query clips (released code's gradient).
    Sum,
}

impl Aggregation {
    pub fn factor(self, terms: usize) -> f64 {
        match self {
            Aggregation::Mean => 1.0 / terms.max(1) as f64,
            Aggregation::Sum => 1.0,
        }
    }
}
