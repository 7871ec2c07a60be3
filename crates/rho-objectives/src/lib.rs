//! rho-objectives: ρMoCo, ρSimCLR, ρBYOL and ρSwAV (Feichtenhofer et al., CVPR 2021).
//!
//! Heads ([`ProjectionMlp`], the BYOL predictor, SwAV [`Prototypes`]), losses ([`info_nce_per_positive`],
//! [`nt_xent`], [`negative_cosine_x2`], [`swapped_prediction`] with [`sinkhorn`]), the
//! [`MomentumEncoder`] and MoCo's [`KeyQueue`], behind one [`Method`] interface. Whole-batch
//! computations go through [`Collectives`]. Generic over the backend.

pub mod aggregation;
pub mod byol_loss;
pub mod collectives;
pub mod diagnostics;
pub mod error;
pub mod infonce;
pub mod logsumexp;
pub mod method;
pub mod mlp;
pub mod momentum;
pub mod network;
pub mod ntxent;
pub mod objective;
pub mod prototypes;
pub mod queue;
pub mod registry;
pub mod shuffle_bn;
pub mod similarity;
pub mod sinkhorn;
pub mod state;
pub mod swav;

pub use aggregation::Aggregation;
pub use byol_loss::negative_cosine_x2;
pub use collectives::{Collectives, SingleDevice};
pub use error::ObjectiveError;
pub use infonce::{info_nce_multi_positive, info_nce_per_positive};
pub use method::{Method, MethodConfig, MethodKind, StepContext, StepOutput};
pub use mlp::{HeadInit, ProjectionMlp, ProjectionMlpConfig};
pub use momentum::{cosine_momentum, MomentumEncoder};
pub use network::SslNetwork;
pub use ntxent::nt_xent;
pub use objective::Objective;
pub use prototypes::Prototypes;
pub use queue::{KeyQueue, KeyQueueState};
pub use registry::{MethodBuilder, MethodInfo};
pub use similarity::{embedding_std, l2_normalize};
pub use sinkhorn::sinkhorn;
pub use state::{module_from_bytes, module_to_bytes, StateBlobs, QUEUE_BLOB, TARGET_BLOB};
pub use swav::{swapped_prediction, SwavSettings};
