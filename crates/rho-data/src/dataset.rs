//! `DatasetSpec`: where a dataset's index is and how to read it, shared by recipes and the CLI's
//! `--format` flags, so every command reads a given list the same way. The formats are one
//! table ([`FORMATS`]): a name, a one-line description and a reader each (docs/data.md §4).
//! Adding a format is a variant of [`IndexFormat`] and its row.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::index::{Split, VideoIndex};

/// How an index file is laid out (see [`FORMATS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum IndexFormat {
    #[default]
    Auto,
    List,
    Frames,
    Folder,
    Kinetics,
    Ucf101,
    Hmdb51,
    Ssv2,
}

/// One index format: its name in recipes and on the command line, and its reader.
pub struct FormatEntry {
    pub format: IndexFormat,
    pub name: &'static str,
    pub description: &'static str,
    read: fn(&DatasetSpec, &Path) -> Result<VideoIndex, DataError>,
}

pub const FORMATS: &[FormatEntry] = &[
    FormatEntry {
        format: IndexFormat::Auto,
        name: "auto",
        description: "a folder: the folder tree; a file: a PySlowFast list, or an mmaction frame list when it has 3 numeric-ended columns",
        read: read_auto,
    },
    FormatEntry {
        format: IndexFormat::List,
        name: "list",
        description: "PySlowFast / VideoMAE list: `path label` or `path,label` (label optional)",
        read: |s, prefix| VideoIndex::pyslowfast_csv(&s.index, prefix),
    },
    FormatEntry {
        format: IndexFormat::Frames,
        name: "frames",
        description: "mmaction rawframes list: `frame_dir total_frames [label]`",
        read: |s, prefix| VideoIndex::frame_folders(&s.index, prefix),
    },
    FormatEntry {
        format: IndexFormat::Folder,
        name: "folder",
        description: "folder tree `root/<class>/<video>`",
        read: |s, _| VideoIndex::folder_tree(&s.index),
    },
    FormatEntry {
        format: IndexFormat::Kinetics,
        name: "kinetics",
        description: "official Kinetics CSV (`train_csv` fixes the class ids; `class_folders` the layout)",
        read: |s, prefix| {
            let train = s.train_csv.clone().unwrap_or_else(|| s.index.clone());
            VideoIndex::kinetics_csv(&s.index, &train, prefix, s.class_folders)
        },
    },
    FormatEntry {
        format: IndexFormat::Ucf101,
        name: "ucf101",
        description: "UCF101 train/test list (needs `class_ind`)",
        read: |s, prefix| VideoIndex::ucf101(&s.need(&s.class_ind, "class_ind")?, &s.index, prefix),
    },
    FormatEntry {
        format: IndexFormat::Hmdb51,
        name: "hmdb51",
        description: "HMDB51 split folder (`split` 1–3, `which` train or test)",
        read: |s, prefix| VideoIndex::hmdb51(&s.index, s.split, s.which, prefix),
    },
    FormatEntry {
        format: IndexFormat::Ssv2,
        name: "ssv2",
        description: "Something-Something v2 JSON (needs `labels`)",
        read: |s, prefix| VideoIndex::ssv2(&s.index, &s.need(&s.labels, "labels")?, prefix),
    },
];

impl IndexFormat {
    pub fn entry(self) -> &'static FormatEntry {
        // Every variant has a row (checked by a test).
        FORMATS
            .iter()
            .find(|f| f.format == self)
            .unwrap_or(&FORMATS[0])
    }

    pub fn name(self) -> &'static str {
        self.entry().name
    }

    pub fn from_name(name: &str) -> Result<Self, String> {
        FORMATS
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.format)
            .ok_or_else(|| {
                let known: Vec<&str> = FORMATS.iter().map(|f| f.name).collect();
                format!("unknown index format `{name}`; known: {}", known.join(", "))
            })
    }
}

impl TryFrom<String> for IndexFormat {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        Self::from_name(&name)
    }
}

impl From<IndexFormat> for String {
    fn from(f: IndexFormat) -> String {
        f.name().to_string()
    }
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
    #[serde(default)]
    pub which: Split,
    /// SSv2: labels JSON.
    pub labels: Option<PathBuf>,
}

fn one() -> usize {
    1
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
            which: Split::Train,
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
        let idx = (self.format.entry().read)(self, &prefix)?;
        if idx.is_empty() {
            return Err(DataError::Index {
                path: self.index.clone(),
                line: 0,
                reason: "the index lists no videos".into(),
            });
        }
        Ok(idx)
    }

    /// A setting the format needs.
    fn need(&self, o: &Option<PathBuf>, key: &str) -> Result<PathBuf, DataError> {
        o.clone().ok_or_else(|| {
            DataError::Config(format!(
                "format {} needs `{key}` in a recipe (--{} on the command line); the index is {}",
                self.format.name(),
                key.replace('_', "-"),
                self.index.display()
            ))
        })
    }
}

/// A folder is a folder tree; a file with 3 columns whose last two are numbers is an mmaction
/// frame list; anything else a PySlowFast list.
fn read_auto(s: &DatasetSpec, prefix: &Path) -> Result<VideoIndex, DataError> {
    if s.index.is_dir() {
        return VideoIndex::folder_tree(&s.index);
    }
    let text = crate::index::read(&s.index)?;
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let cols: Vec<&str> = first.split_whitespace().collect();
    if cols.len() == 3 && cols[1].parse::<usize>().is_ok() && cols[2].parse::<usize>().is_ok() {
        VideoIndex::frame_folders(&s.index, prefix)
    } else {
        VideoIndex::pyslowfast_csv(&s.index, prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_has_one_row_and_its_name_reads_back() {
        for f in FORMATS {
            assert_eq!(FORMATS.iter().filter(|g| g.format == f.format).count(), 1);
            assert_eq!(IndexFormat::from_name(f.name), Ok(f.format));
            let v: IndexFormat = serde_json::from_str(&format!("\"{}\"", f.name)).unwrap();
            assert_eq!(v, f.format);
        }
        let e = IndexFormat::from_name("csv").unwrap_err();
        assert!(e.contains("csv") && e.contains("kinetics"), "{e}");
    }
}
