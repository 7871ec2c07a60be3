//! `--format` and friends: how the data commands read a dataset index.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use rho_data::VideoIndex;
use rho_train::dataset::{DatasetSpec, IndexFormat};

#[derive(Args, Debug, Clone)]
pub struct IndexArgs {
    /// The index file, or a folder of videos.
    pub index: PathBuf,
    /// auto, list, frames, folder, kinetics, ucf101, hmdb51 or ssv2.
    #[arg(long, default_value = "auto", value_parser = parse_format)]
    pub format: IndexFormat,
    /// Prefix (or root folder) joined to the paths of the index.
    #[arg(long)]
    pub prefix: Option<PathBuf>,
    /// Kinetics: the train CSV that fixes the class ids (defaults to the index itself).
    #[arg(long)]
    pub train_csv: Option<PathBuf>,
    /// Kinetics: videos sit in `label_with_underscores/` folders.
    #[arg(long)]
    pub class_folders: bool,
    /// UCF101: classInd.txt.
    #[arg(long)]
    pub class_ind: Option<PathBuf>,
    /// HMDB51: split number (1–3) and which part.
    #[arg(long, default_value_t = 1)]
    pub split: usize,
    #[arg(long, default_value = "train")]
    pub which: String,
    /// SSv2: labels JSON.
    #[arg(long)]
    pub labels: Option<PathBuf>,
}

impl IndexArgs {
    pub fn spec(&self) -> DatasetSpec {
        DatasetSpec {
            index: self.index.clone(),
            format: self.format,
            prefix: self.prefix.clone(),
            train_csv: self.train_csv.clone(),
            class_folders: self.class_folders,
            class_ind: self.class_ind.clone(),
            split: self.split,
            which: self.which.clone(),
            labels: self.labels.clone(),
        }
    }

    pub fn load(&self) -> Result<VideoIndex> {
        Ok(self.spec().load()?)
    }
}

fn parse_format(s: &str) -> std::result::Result<IndexFormat, String> {
    serde::Deserialize::deserialize(
        serde::de::value::StrDeserializer::<serde::de::value::Error>::new(s),
    )
    .map_err(|_| {
        format!(
            "unknown format `{s}`: auto, list, frames, folder, kinetics, ucf101, hmdb51 or ssv2"
        )
    })
}
