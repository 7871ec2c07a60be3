//! `DatasetSpec`: where a dataset's index is and how to read it, shared by recipes and the CLI's
//! `--format` flags, so every command reads a given list the same way.

use std::path::PathBuf;

use rho_data::{DataError, Split, VideoIndex};
use serde::{Deserialize, Serialize};

/// How an index file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexFormat {
    /// A folder → folder tree; a file → PySlowFast list or, with 3 numeric-ended columns, an
    /// mmaction frame list.
    #[default]
    Auto,
    /// PySlowFast / VideoMAE list: `path label` or `path,label` (label optional).
    List,
    /// mmaction rawframes list: `frame_dir total_frames [label]`.
    Frames,
    /// Folder tree `root/<class>/<video>`.
    Folder,
    /// Official Kinetics CSV (`train_csv` fixes the class ids; `class_folders` the layout).
    Kinetics,
    /// UCF101 train/test list (needs `class_ind`).
    Ucf101,
    /// HMDB51 split folder (`split`, `which`).
    Hmdb51,
    /// Something-Something v2 JSON (needs `labels`).
    Ssv2,
}

/// One dataset split as the user names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// The index file, or a folder of videos.
    pub index: PathBuf,
    #[serde(default)]
    pub format: IndexFormat,
    /// Prefix (or root folder) joined to the paths of the index.
    pub prefix: Option<PathBuf>,
    /// Kinetics: the train CSV that fixes the class ids (defaults to the index itself).
    pub train_csv: Option<PathBuf>,
    /// Kinetics: videos sit in `label_with_underscores/` folders.
    #[serde(default)]
    pub class_folders: bool,
    /// UCF101: classInd.txt.
    pub class_ind: Option<PathBuf>,
    /// UCF101/HMDB51 split number (1–3); HMDB51 also needs `which`.
    #[serde(default = "one")]
    pub split: usize,
    #[serde(default = "train")]
    pub which: String,
    /// SSv2: labels JSON.
    pub labels: Option<PathBuf>,
}

fn one() -> usize {
    1
}
fn train() -> String {
    "train".into()
}

impl DatasetSpec {
    /// A list file or folder read with `format`.
    pub fn new(index: impl Into<PathBuf>, format: IndexFormat) -> Self {
        Self {
            index: index.into(),
            format,
            prefix: None,
            train_csv: None,
            class_folders: false,
            class_ind: None,
            split: 1,
            which: "train".into(),
            labels: None,
        }
    }

    pub fn with_prefix(mut self, prefix: impl Into<PathBuf>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Reads the index; an empty one is an error.
    pub fn load(&self) -> Result<VideoIndex, DataError> {
        let prefix = self.prefix.clone().unwrap_or_default();
        let need = |o: &Option<PathBuf>, key: &str| {
            o.clone().ok_or_else(|| {
                DataError::Config(format!(
                    "format {} needs `{key}` in a recipe (--{} on the command line); the index is {}",
                    format!("{:?}", self.format).to_lowercase(),
                    key.replace('_', "-"),
                    self.index.display()
                ))
            })
        };
        let idx = match self.format {
            IndexFormat::Auto if self.index.is_dir() => VideoIndex::folder_tree(&self.index)?,
            IndexFormat::Auto => {
                let text = std::fs::read_to_string(&self.index).map_err(|e| DataError::Index {
                    path: self.index.clone(),
                    line: 0,
                    reason: e.to_string(),
                })?;
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
                VideoIndex::ucf101(&need(&self.class_ind, "class_ind")?, &self.index, &prefix)?
            }
            IndexFormat::Hmdb51 => {
                let which = match self.which.as_str() {
                    "train" => Split::Train,
                    "test" => Split::Test,
                    other => {
                        return Err(DataError::Config(format!(
                            "`which` must be train or test, not `{other}`"
                        )))
                    }
                };
                VideoIndex::hmdb51(&self.index, self.split, which, &prefix)?
            }
            IndexFormat::Ssv2 => {
                VideoIndex::ssv2(&self.index, &need(&self.labels, "labels")?, &prefix)?
            }
        };
        if idx.is_empty() {
            return Err(DataError::Index {
                path: self.index.clone(),
                line: 0,
                reason: "the index lists no videos".into(),
            });
        }
        Ok(idx)
    }
}
