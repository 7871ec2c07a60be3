//! `VideoIndex`: the videos of a dataset and their labels, read from the annotation formats
//! users have (docs/data.md §4): PySlowFast lists, the official Kinetics CSV, UCF101 and HMDB51
//! split files, Something-Something v2 JSON, mmaction frame-folder lists, and a plain folder tree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::DataError;

/// Where a video's frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoSource {
    /// A container file decoded with FFmpeg.
    File(PathBuf),
    /// A folder of JPEG frames `img_00001.jpg`, … (1-based, mmaction's rawframes).
    FrameDir { dir: PathBuf, total_frames: usize },
}

impl VideoSource {
    pub fn path(&self) -> &Path {
        match self {
            VideoSource::File(p) => p,
            VideoSource::FrameDir { dir, .. } => dir,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoEntry {
    pub source: VideoSource,
    /// Class id, `None` for unlabeled lists (fine for pre-training).
    pub label: Option<usize>,
}

/// A list of videos and, when known, the class names (index = class id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VideoIndex {
    pub entries: Vec<VideoEntry>,
    pub classes: Vec<String>,
}

/// Which split of a dataset with official splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    #[default]
    Train,
    Test,
}

/// An index file's text; a FIFO or device would block the read, so it is refused by name.
pub(crate) fn read(path: &Path) -> Result<String, DataError> {
    if let Some(kind) = crate::file_guard::not_a_regular_file(path) {
        return Err(DataError::Index {
            path: path.to_path_buf(),
            line: 0,
            reason: format!("it is {kind}, not an index file"),
        });
    }
    std::fs::read_to_string(path).map_err(|e| DataError::Index {
        path: path.to_path_buf(),
        line: 0,
        reason: e.to_string(),
    })
}

fn bad(path: &Path, line: usize, reason: impl Into<String>) -> DataError {
    DataError::Index {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

/// Lines without CR, blank lines skipped, with their 1-based numbers.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r').trim()))
        .filter(|(_, l)| !l.is_empty())
}

impl VideoIndex {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// PySlowFast / VideoMAE list: `path label` (space) or `path,label`, or just `path`
    /// (unlabeled). Paths are joined to `prefix`.
    pub fn pyslowfast_csv(list: &Path, prefix: &Path) -> Result<Self, DataError> {
        let text = read(list)?;
        let mut entries = Vec::new();
        for (n, l) in lines(&text) {
            let (path, label) = match l.rsplit_once([' ', ',', '\t']) {
                Some((p, lab)) if lab.trim().parse::<usize>().is_ok() => {
                    (p.trim(), Some(lab.trim().parse().unwrap_or(0)))
                }
                Some((_, lab))
                    if !lab.is_empty() && lab.chars().all(|c| c.is_ascii_digit() || c == '-') =>
                {
                    return Err(bad(list, n, format!("label `{lab}` is not a class id ≥ 0")));
                }
                _ => (l, None),
            };
            entries.push(VideoEntry {
                source: VideoSource::File(prefix.join(path)),
                label,
            });
        }
        Ok(Self {
            entries,
            classes: Vec::new(),
        })
    }

    /// The official Kinetics CSV (`label,youtube_id,time_start,time_end,split[,is_cc]`). Class ids
    /// are positions in the sorted labels of `train_csv` (pass the same file for the train split).
    /// Files: `{youtube_id}_{start:06}_{end:06}.mp4`, under `label_with_underscores/` when
    /// `class_folders`.
    pub fn kinetics_csv(
        csv_path: &Path,
        train_csv: &Path,
        root: &Path,
        class_folders: bool,
    ) -> Result<Self, DataError> {
        let classes: Vec<String> = {
            let rows = read_kinetics_rows(train_csv)?;
            let set: BTreeSet<String> = rows.into_iter().filter_map(|r| r.label).collect();
            set.into_iter().collect()
        };
        let ids: BTreeMap<&str, usize> = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        let mut entries = Vec::new();
        for (n, r) in read_kinetics_rows(csv_path)?.into_iter().enumerate() {
            let label = match &r.label {
                Some(l) => Some(*ids.get(l.as_str()).ok_or_else(|| {
                    bad(
                        csv_path,
                        n + 2,
                        format!("label `{l}` is not among the train labels"),
                    )
                })?),
                None => None,
            };
            let file = format!("{}_{:06}_{:06}.mp4", r.youtube_id, r.start, r.end);
            let path = match (&r.label, class_folders) {
                (Some(l), true) => root.join(l.replace(' ', "_")).join(file),
                _ => root.join(file),
            };
            entries.push(VideoEntry {
                source: VideoSource::File(path),
                label,
            });
        }
        Ok(Self { entries, classes })
    }

    /// UCF101: `classInd.txt` plus `trainlist0N.txt` (with labels) or `testlist0N.txt` (class from
    /// the directory part of the path).
    pub fn ucf101(class_ind: &Path, list: &Path, root: &Path) -> Result<Self, DataError> {
        let mut classes = Vec::new();
        for (n, l) in lines(&read(class_ind)?) {
            let (id, name) = l
                .split_once(' ')
                .ok_or_else(|| bad(class_ind, n, "expected `id name`"))?;
            let id: usize = id
                .parse()
                .map_err(|_| bad(class_ind, n, format!("`{id}` is not a class number")))?;
            if id != classes.len() + 1 {
                return Err(bad(
                    class_ind,
                    n,
                    format!("class ids must run 1, 2, …; found {id}"),
                ));
            }
            classes.push(name.trim().to_string());
        }
        let by_name: BTreeMap<String, usize> = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.to_ascii_lowercase(), i))
            .collect();
        let mut entries = Vec::new();
        for (n, l) in lines(&read(list)?) {
            let mut parts = l.split_whitespace();
            let path = parts.next().unwrap_or_default();
            let label = match parts.next() {
                Some(id) => {
                    let id: usize = id
                        .parse()
                        .map_err(|_| bad(list, n, format!("`{id}` is not a class number")))?;
                    id.checked_sub(1)
                        .filter(|i| *i < classes.len())
                        .ok_or_else(|| bad(list, n, format!("class {id} is not in classInd")))?
                }
                None => {
                    let dir = path
                        .split('/')
                        .next()
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    *by_name.get(&dir).ok_or_else(|| {
                        bad(
                            list,
                            n,
                            format!("folder `{dir}` is not a class of classInd"),
                        )
                    })?
                }
            };
            entries.push(VideoEntry {
                source: VideoSource::File(root.join(path)),
                label: Some(label),
            });
        }
        Ok(Self { entries, classes })
    }

    /// HMDB51: every `<class>_test_split<k>.txt` in `split_dir`, lines `<video>.avi <flag>` with
    /// flag 1 = train, 2 = test, 0 = unused. Class ids = sorted class names.
    pub fn hmdb51(
        split_dir: &Path,
        split: usize,
        which: Split,
        root: &Path,
    ) -> Result<Self, DataError> {
        let suffix = format!("_test_split{split}.txt");
        let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(split_dir)
            .map_err(|e| bad(split_dir, 0, e.to_string()))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.strip_suffix(&suffix)
                    .map(|c| (c.to_string(), e.path()))
            })
            .collect();
        if files.is_empty() {
            return Err(bad(split_dir, 0, format!("no `*{suffix}` files")));
        }
        files.sort();
        let classes: Vec<String> = files.iter().map(|(c, _)| c.clone()).collect();
        let want = match which {
            Split::Train => "1",
            Split::Test => "2",
        };
        let mut entries = Vec::new();
        for (id, (class, file)) in files.iter().enumerate() {
            for (n, l) in lines(&read(file)?) {
                let mut parts = l.split_whitespace();
                let (video, flag) = (parts.next().unwrap_or_default(), parts.next());
                match flag {
                    Some("0" | "1" | "2") => {}
                    _ => return Err(bad(file, n, "expected `<video>.avi <0|1|2>`")),
                }
                if flag == Some(want) {
                    entries.push(VideoEntry {
                        source: VideoSource::File(root.join(class).join(video)),
                        label: Some(id),
                    });
                }
            }
        }
        Ok(Self { entries, classes })
    }

    /// Something-Something v2: the split JSON and `labels.json` (template → class id string).
    /// Videos are `{id}.webm` under `root`; the test JSON has ids only (unlabeled).
    pub fn ssv2(split_json: &Path, labels_json: &Path, root: &Path) -> Result<Self, DataError> {
        let labels: BTreeMap<String, String> = serde_json::from_str(&read(labels_json)?)
            .map_err(|e| bad(labels_json, e.line(), e.to_string()))?;
        let mut classes = vec![String::new(); labels.len()];
        for (template, id) in &labels {
            let id: usize = id
                .parse()
                .map_err(|_| bad(labels_json, 0, format!("class id `{id}` is not a number")))?;
            let slot = classes
                .get_mut(id)
                .ok_or_else(|| bad(labels_json, 0, format!("class id {id} out of range")))?;
            *slot = template.clone();
        }
        #[derive(serde::Deserialize)]
        struct Item {
            id: String,
            template: Option<String>,
        }
        let items: Vec<Item> = serde_json::from_str(&read(split_json)?)
            .map_err(|e| bad(split_json, e.line(), e.to_string()))?;
        let mut entries = Vec::new();
        for it in items {
            let label = match it.template {
                Some(t) => {
                    let key = t.replace(['[', ']'], "");
                    let id = labels.get(&key).ok_or_else(|| {
                        bad(
                            split_json,
                            0,
                            format!("template `{key}` (video {}) is not in the labels", it.id),
                        )
                    })?;
                    Some(id.parse::<usize>().map_err(|_| {
                        bad(labels_json, 0, format!("class id `{id}` is not a number"))
                    })?)
                }
                None => None,
            };
            entries.push(VideoEntry {
                source: VideoSource::File(root.join(format!("{}.webm", it.id))),
                label,
            });
        }
        Ok(Self { entries, classes })
    }

    /// mmaction rawframes list: `frame_dir total_frames label` (label optional).
    pub fn frame_folders(list: &Path, prefix: &Path) -> Result<Self, DataError> {
        let mut entries = Vec::new();
        for (n, l) in lines(&read(list)?) {
            let parts: Vec<&str> = l.split_whitespace().collect();
            if parts.len() < 2 {
                return Err(bad(list, n, "expected `frame_dir total_frames [label]`"));
            }
            let total: usize = parts[1]
                .parse()
                .map_err(|_| bad(list, n, format!("`{}` is not a frame count", parts[1])))?;
            let label = match parts.get(2) {
                Some(x) => Some(
                    x.parse()
                        .map_err(|_| bad(list, n, format!("`{x}` is not a class id")))?,
                ),
                None => None,
            };
            entries.push(VideoEntry {
                source: VideoSource::FrameDir {
                    dir: prefix.join(parts[0]),
                    total_frames: total,
                },
                label,
            });
        }
        Ok(Self {
            entries,
            classes: Vec::new(),
        })
    }

    /// A folder tree `root/<class>/<video>` (class ids = sorted folder names); files directly
    /// under `root` are unlabeled. Only files with a video extension are taken.
    pub fn folder_tree(root: &Path) -> Result<Self, DataError> {
        let mut classes = Vec::new();
        let mut loose = Vec::new();
        let mut dirs: Vec<PathBuf> = Vec::new();
        for e in std::fs::read_dir(root)
            .map_err(|e| bad(root, 0, e.to_string()))?
            .filter_map(|e| e.ok())
        {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if is_video(&p) {
                loose.push(p);
            }
        }
        dirs.sort();
        loose.sort();
        let mut entries: Vec<VideoEntry> = loose
            .into_iter()
            .map(|p| VideoEntry {
                source: VideoSource::File(p),
                label: None,
            })
            .collect();
        for d in dirs {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&d)
                .map_err(|e| bad(&d, 0, e.to_string()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_video(p))
                .collect();
            if files.is_empty() {
                continue;
            }
            files.sort();
            let id = classes.len();
            classes.push(
                d.file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default(),
            );
            entries.extend(files.into_iter().map(|p| VideoEntry {
                source: VideoSource::File(p),
                label: Some(id),
            }));
        }
        Ok(Self { entries, classes })
    }
}

/// Container extensions the folder tree picks up.
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "avi", "webm", "mkv", "mov", "m4v", "mpg", "mpeg", "flv",
];

fn is_video(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .map(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

struct KineticsRow {
    label: Option<String>,
    youtube_id: String,
    start: u64,
    end: u64,
}

fn read_kinetics_rows(path: &Path) -> Result<Vec<KineticsRow>, DataError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_path(path)
        .map_err(|e| bad(path, 0, e.to_string()))?;
    let headers = rdr
        .headers()
        .map_err(|e| bad(path, 1, e.to_string()))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.trim() == name);
    let (yid, ts, te) = match (col("youtube_id"), col("time_start"), col("time_end")) {
        (Some(a), Some(b), Some(c)) => (a, b, c),
        _ => {
            return Err(bad(
                path,
                1,
                "header must have youtube_id, time_start and time_end",
            ))
        }
    };
    let lab = col("label");
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| bad(path, line, e.to_string()))?;
        let get = |c: usize| rec.get(c).map(str::trim).unwrap_or_default();
        let num = |c: usize| -> Result<u64, DataError> {
            get(c)
                .parse::<f64>()
                .map(|v| v as u64)
                .map_err(|_| bad(path, line, format!("`{}` is not a time", get(c))))
        };
        rows.push(KineticsRow {
            label: lab.map(|c| get(c).to_string()).filter(|l| !l.is_empty()),
            youtube_id: get(yid).to_string(),
            start: num(ts)?,
            end: num(te)?,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rho-index-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    #[test]
    fn pyslowfast_lists_space_comma_unlabeled() {
        let d = tmp("psf");
        write(&d.join("train.csv"), "a/x.mp4 3\nb y.mp4,7\r\n\nc/z.mp4\n");
        let idx = VideoIndex::pyslowfast_csv(&d.join("train.csv"), Path::new("/data")).unwrap();
        let got: Vec<(PathBuf, Option<usize>)> = idx
            .entries
            .iter()
            .map(|e| (e.source.path().to_path_buf(), e.label))
            .collect();
        assert_eq!(
            got,
            [
                (PathBuf::from("/data/a/x.mp4"), Some(3)),
                (PathBuf::from("/data/b y.mp4"), Some(7)),
                (PathBuf::from("/data/c/z.mp4"), None),
            ]
        );
        write(&d.join("bad.csv"), "a.mp4 -1\n");
        let e = VideoIndex::pyslowfast_csv(&d.join("bad.csv"), Path::new(""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.csv") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn kinetics_csv_with_quoted_labels() {
        let d = tmp("k400");
        let train = "label,youtube_id,time_start,time_end,split,is_cc\n\"passing American football (in game)\",abc,10,20,train,0\nabseiling,def,0,10,train,0\n";
        write(&d.join("train.csv"), train);
        write(
            &d.join("test.csv"),
            "youtube_id,time_start,time_end,split\nghi,5,15,test\n",
        );
        let idx = VideoIndex::kinetics_csv(
            &d.join("train.csv"),
            &d.join("train.csv"),
            Path::new("/k"),
            true,
        )
        .unwrap();
        assert_eq!(
            idx.classes,
            ["abseiling", "passing American football (in game)"]
        );
        assert_eq!(idx.entries[0].label, Some(1));
        assert_eq!(
            idx.entries[0].source.path(),
            Path::new("/k/passing_American_football_(in_game)/abc_000010_000020.mp4")
        );
        let test = VideoIndex::kinetics_csv(
            &d.join("test.csv"),
            &d.join("train.csv"),
            Path::new("/k"),
            false,
        )
        .unwrap();
        assert_eq!(test.entries[0].label, None);
        assert_eq!(
            test.entries[0].source.path(),
            Path::new("/k/ghi_000005_000015.mp4")
        );
    }

    #[test]
    fn ucf101_train_and_test_lists_with_crlf() {
        let d = tmp("ucf");
        write(
            &d.join("classInd.txt"),
            "1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n",
        );
        write(
            &d.join("trainlist01.txt"),
            "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n",
        );
        write(
            &d.join("testlist01.txt"),
            "HandstandPushups/v_HandStandPushups_g01_c01.avi\r\n",
        );
        let tr = VideoIndex::ucf101(
            &d.join("classInd.txt"),
            &d.join("trainlist01.txt"),
            Path::new("/u"),
        )
        .unwrap();
        assert_eq!(tr.entries[0].label, Some(0));
        let te = VideoIndex::ucf101(
            &d.join("classInd.txt"),
            &d.join("testlist01.txt"),
            Path::new("/u"),
        )
        .unwrap();
        assert_eq!(te.entries[0].label, Some(1));
        assert_eq!(te.classes.len(), 2);
    }

    #[test]
    fn hmdb51_split_flags() {
        let d = tmp("hmdb");
        write(
            &d.join("wave_test_split1.txt"),
            "w1.avi 1 \nw2.avi 2 \nw3.avi 0 \n",
        );
        write(&d.join("clap_test_split1.txt"), "c1.avi 2\n");
        let tr = VideoIndex::hmdb51(&d, 1, Split::Train, Path::new("/h")).unwrap();
        assert_eq!(tr.classes, ["clap", "wave"]);
        assert_eq!(
            tr.entries,
            [VideoEntry {
                source: VideoSource::File("/h/wave/w1.avi".into()),
                label: Some(1)
            }]
        );
        let te = VideoIndex::hmdb51(&d, 1, Split::Test, Path::new("/h")).unwrap();
        assert_eq!(te.len(), 2);
    }

    #[test]
    fn ssv2_templates_map_to_class_ids() {
        let d = tmp("ssv2");
        write(
            &d.join("labels.json"),
            r#"{"Holding something next to something": "1", "Approaching something with your camera": "0"}"#,
        );
        write(
            &d.join("train.json"),
            r#"[{"id": "78687", "label": "holding potato", "template": "Holding [something] next to [something]", "placeholders": ["potato"]}]"#,
        );
        write(&d.join("test.json"), r#"[{"id": "5"}]"#);
        let tr = VideoIndex::ssv2(
            &d.join("train.json"),
            &d.join("labels.json"),
            Path::new("/s"),
        )
        .unwrap();
        assert_eq!(tr.entries[0].label, Some(1));
        assert_eq!(tr.entries[0].source.path(), Path::new("/s/78687.webm"));
        assert_eq!(tr.classes[0], "Approaching something with your camera");
        let te = VideoIndex::ssv2(
            &d.join("test.json"),
            &d.join("labels.json"),
            Path::new("/s"),
        )
        .unwrap();
        assert_eq!(te.entries[0].label, None);
    }

    #[test]
    fn frame_folders_and_folder_tree() {
        let d = tmp("tree");
        write(&d.join("list.txt"), "vid1 120 4\nvid2 64\n");
        let f = VideoIndex::frame_folders(&d.join("list.txt"), Path::new("/f")).unwrap();
        assert_eq!(
            f.entries[0].source,
            VideoSource::FrameDir {
                dir: "/f/vid1".into(),
                total_frames: 120
            }
        );
        assert_eq!(f.entries[1].label, None);
        let root = d.join("videos");
        write(&root.join("b_class/1.mp4"), "");
        write(&root.join("a_class/2.webm"), "");
        write(&root.join("a_class/notes.txt"), "");
        write(&root.join("loose.avi"), "");
        let t = VideoIndex::folder_tree(&root).unwrap();
        assert_eq!(t.classes, ["a_class", "b_class"]);
        let labels: Vec<Option<usize>> = t.entries.iter().map(|e| e.label).collect();
        assert_eq!(labels, [None, Some(0), Some(1)]);
    }
}
