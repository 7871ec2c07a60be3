//! The dataset specification of recipes (it lives in rho-data, with the index formats).

pub use rho_data::dataset::{DatasetSpec, FormatEntry, IndexFormat, FORMATS};
