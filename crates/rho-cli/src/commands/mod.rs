pub mod bench;
pub mod convert;
pub mod data_bench;
pub mod data_check;
pub mod embed;
pub mod init;
pub mod make_clip;
pub mod models;
