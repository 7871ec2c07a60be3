//! `--format` and friends: how the data commands read a dataset index.

use std::path::PathBuf;

use anyhow::Result;
use clap::builder::TypedValueParser;
use clap::Args;
use rho_data::dataset::{DatasetSpec, IndexFormat, FORMATS};
use rho_data::{Split, VideoIndex};

#[derive(Args, Debug, Clone)]
pub struct IndexArgs {
    /// The index file, or a folder of videos.
    pub index: PathBuf,
    #[command(flatten)]
    pub layout: IndexLayout,
}

/// How an index is laid out: the flags every command that reads one shares.
#[derive(Args, Debug, Clone)]
pub struct IndexLayout {
    /// How the index is laid out.
    #[arg(long, default_value = "auto", value_parser = format_parser())]
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
    #[arg(long, default_value = "train", value_parser = split_parser())]
    pub which: Split,
    /// SSv2: labels JSON.
    #[arg(long)]
    pub labels: Option<PathBuf>,
}

impl IndexLayout {
    /// The dataset `index` read with these flags.
    pub fn spec(&self, index: PathBuf) -> DatasetSpec {
        DatasetSpec {
            index,
            format: self.format,
            prefix: self.prefix.clone(),
            train_csv: self.train_csv.clone(),
            class_folders: self.class_folders,
            class_ind: self.class_ind.clone(),
            split: self.split,
            which: self.which,
            labels: self.labels.clone(),
        }
    }
}

impl IndexArgs {
    pub fn spec(&self) -> DatasetSpec {
        self.layout.spec(self.index.clone())
    }

    pub fn load(&self) -> Result<VideoIndex> {
        Ok(self.spec().load()?)
    }
}

/// `--format`: the names of rho-data's format table, each with its description in `--help`.
fn format_parser() -> impl TypedValueParser<Value = IndexFormat> {
    let names = FORMATS
        .iter()
        .map(|f| clap::builder::PossibleValue::new(f.name).help(f.description));
    clap::builder::PossibleValuesParser::new(names).try_map(|s: String| IndexFormat::from_name(&s))
}

fn split_parser() -> impl TypedValueParser<Value = Split> {
    clap::builder::PossibleValuesParser::new(["train", "test"]).map(|s: String| {
        if s == "test" {
            Split::Test
        } else {
            Split::Train
        }
    })
}
