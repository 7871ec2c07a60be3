//! `--format` and friends: how the data commands read a dataset index.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use rho_data::{Split, VideoIndex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IndexFormat {
    /// A folder → folder tree; a file → PySlowFast list or, with 3 columns, mmaction frame list.
    Auto,
    /// PySlowFast / VideoMAE list: `path label` or `path,label` (label optional).
    List,
    /// mmaction rawframes list: `frame_dir total_frames [label]`.
    Frames,
    /// Folder tree `root/<class>/<video>`.
    Folder,
    /// Official Kinetics CSV (needs --train-csv for class ids; --class-folders for the layout).
    Kinetics,
    /// UCF101 train/test list (needs --class-ind).
    Ucf101,
    /// HMDB51 split folder (needs --split and --which).
    Hmdb51,
    /// Something-Something v2 JSON (needs --labels).
    Ssv2,
}

#[derive(Args, Debug, Clone)]
pub struct IndexArgs {
    /// The index file, or a folder of videos.
    pub index: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
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
    pub fn load(&self) -> Result<VideoIndex> {
        let prefix = self.prefix.clone().unwrap_or_default();
        let need = |o: &Option<PathBuf>, flag: &str| {
            o.clone()
                .with_context(|| format!("--format {:?} needs {flag}", self.format).to_lowercase())
        };
        let idx = match self.format {
            IndexFormat::Auto if self.index.is_dir() => VideoIndex::folder_tree(&self.index)?,
            IndexFormat::Auto => {
                let text = std::fs::read_to_string(&self.index)
                    .with_context(|| format!("cannot read {}", self.index.display()))?;
                let first = text
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or_default();
                let cols: Vec<&str> = first.split_whitespace().collect();
                if cols.len() == 3
                    && cols[1].parse::<usize>().is_ok()
                    && cols[2].parse::<usize>().is_ok()
                {
                    VideoIndex::frame_folders(&self.index, &prefix)?
                } else {
                    VideoIndex::pyslowfast_csv(&self.index, &prefix)?
                }
            }
            IndexFormat::List => VideoIndex::pyslowfast_csv(&self.index, &prefix)?,
            IndexFormat::Frames => VideoIndex::frame_folders(&self.index, &prefix)?,
            IndexFormat::Folder => VideoIndex::folder_tree(&self.index)?,
            IndexFormat::Kinetics => {
                let train = self.train_csv.clone().unwrap_or_else(|| self.index.clone());
                VideoIndex::kinetics_csv(&self.index, &train, &prefix, self.class_folders)?
            }
            IndexFormat::Ucf101 => {
                VideoIndex::ucf101(&need(&self.class_ind, "--class-ind")?, &self.index, &prefix)?
            }
            IndexFormat::Hmdb51 => {
                let which = match self.which.as_str() {
                    "train" => Split::Train,
                    "test" => Split::Test,
                    other => bail!("--which must be train or test, not `{other}`"),
                };
                VideoIndex::hmdb51(&self.index, self.split, which, &prefix)?
            }
            IndexFormat::Ssv2 => {
                VideoIndex::ssv2(&self.index, &need(&self.labels, "--labels")?, &prefix)?
            }
        };
        if idx.is_empty() {
            bail!("{} lists no videos", self.index.display());
        }
        Ok(idx)
    }
}
