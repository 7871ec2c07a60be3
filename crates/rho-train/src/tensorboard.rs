//! TensorBoard scalars beside `metrics.jsonl`, so `tensorboard --logdir OUT` shows a run.
//!
//! An event file is a sequence of TFRecords (length, masked CRC-32C of the length, the bytes,
//! masked CRC-32C of the bytes), each an `Event` protocol buffer. rho writes three of its fields
//! (`wall_time` 1, `step` 2, `file_version` 3 or `summary` 5, a `Summary` of `Value { tag 1,
//! simple_value 2 }`) by hand: the messages are small and fixed, which spares a protobuf
//! toolchain. [`read_scalars`] reads them back (CRCs checked), for tests and for resuming: a
//! resumed run keeps the events before its checkpoint's step and drops the killed run's later
//! ones, as `metrics.jsonl` does, so every step appears once.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The run's event file. TensorBoard reads any file whose name holds `tfevents`.
pub const FILE_NAME: &str = "events.out.tfevents.rho";

/// One scalar of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub tag: String,
    pub step: i64,
    pub value: f32,
    pub wall_time: f64,
}

/// Appends scalars to `DIR/events.out.tfevents.rho`.
pub struct EventWriter {
    out: BufWriter<File>,
    path: PathBuf,
}

impl EventWriter {
    /// Starts the event file of `dir`. `resume_at`: the step a resumed run continues from; the
    /// earlier file's events before it are kept, the rest dropped. Without it the file starts
    /// empty.
    pub fn create(dir: &Path, resume_at: Option<i64>) -> io::Result<Self> {
        let path = dir.join(FILE_NAME);
        let mut bytes = record(&file_version_event(now()));
        if let (Some(step), Ok(old)) = (resume_at, std::fs::read(&path)) {
            for event in records(&old).0.into_iter().skip(1) {
                if decode_event(event).is_some_and(|e| e.step < step) {
                    bytes.extend(record(event));
                }
            }
        }
        rho_model::weights::write_atomically(&path, &bytes)?;
        let file = std::fs::OpenOptions::new().append(true).open(&path)?;
        Ok(Self {
            out: BufWriter::new(file),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One scalar; written out by [`EventWriter::flush`].
    pub fn scalar(&mut self, tag: &str, step: i64, value: f64) -> io::Result<()> {
        let event = scalar_event(tag, step, value as f32, now());
        self.out.write_all(&record(&event))
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Every scalar of an event file, in file order. A record that fails its CRC or a truncated
/// record is an error: the file is not one rho (or TensorBoard) wrote whole.
pub fn read_scalars(path: &Path) -> io::Result<Vec<Scalar>> {
    let bytes = std::fs::read(path)?;
    let (events, complete) = records(&bytes);
    if !complete {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: a record is truncated or fails its CRC", path.display()),
        ));
    }
    Ok(events
        .into_iter()
        .filter_map(decode_event)
        .flat_map(|e| e.scalars)
        .collect())
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// CRC-32C, masked as TFRecord does (so a CRC of data that holds CRCs stays well mixed).
fn masked_crc(bytes: &[u8]) -> u32 {
    let c = crc32c::crc32c(bytes);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut r = Vec::with_capacity(data.len() + 16);
    r.extend(len);
    r.extend(masked_crc(&len).to_le_bytes());
    r.extend(data);
    r.extend(masked_crc(data).to_le_bytes());
    r
}

/// The records of `bytes` that verify, and whether all of `bytes` was such records.
fn records(bytes: &[u8]) -> (Vec<&[u8]>, bool) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(head) = bytes.get(at..at + 12) else {
            return (out, false);
        };
        let (len, len_crc) = head.split_at(8);
        let n = u64::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
        let ok_len = masked_crc(len).to_le_bytes() == len_crc;
        let Some(data) = bytes.get(at + 12..).and_then(|b| b.get(..n)) else {
            return (out, false);
        };
        let Some(crc) = bytes.get(at + 12 + n..at + 16 + n) else {
            return (out, false);
        };
        if !ok_len || masked_crc(data).to_le_bytes() != crc {
            return (out, false);
        }
        out.push(data);
        at += 16 + n;
    }
    (out, true)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field (wire type 2).
fn bytes_field(field: u8, data: &[u8], out: &mut Vec<u8>) {
    out.push(field << 3 | 2);
    varint(data.len() as u64, out);
    out.extend(data);
}

/// `wall_time` and `step`; step 0 is left out, as proto3 leaves out every default value (so
/// the bytes equal TensorBoard's own).
fn event_head(wall_time: f64, step: i64) -> Vec<u8> {
    let mut e = vec![1 << 3 | 1];
    e.extend(wall_time.to_le_bytes());
    if step != 0 {
        e.push(2 << 3);
        varint(step as u64, &mut e);
    }
    e
}

fn file_version_event(wall_time: f64) -> Vec<u8> {
    let mut e = event_head(wall_time, 0);
    bytes_field(3, b"brain.Event:2", &mut e);
    e
}

fn scalar_event(tag: &str, step: i64, value: f32, wall_time: f64) -> Vec<u8> {
    let mut v = Vec::new();
    bytes_field(1, tag.as_bytes(), &mut v);
    v.push(2 << 3 | 5);
    v.extend(value.to_le_bytes());
    let mut summary = Vec::new();
    bytes_field(1, &v, &mut summary);
    let mut e = event_head(wall_time, step);
    bytes_field(5, &summary, &mut e);
    e
}

/// A decoded event: its step, and the scalars of its summary.
struct Event {
    step: i64,
    scalars: Vec<Scalar>,
}

/// The fields of a protocol buffer message as (number, value); `None` if it is malformed.
fn fields(mut b: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    fn read_varint(b: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first()?;
            *b = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = read_varint(&mut b)?;
        let value = match key & 7 {
            0 => Field::Varint(read_varint(&mut b)?),
            1 => {
                let (v, rest) = b.split_at_checked(8)?;
                b = rest;
                Field::Fixed64(u64::from_le_bytes(v.try_into().ok()?))
            }
            2 => {
                let n = read_varint(&mut b)? as usize;
                let (v, rest) = b.split_at_checked(n)?;
                b = rest;
                Field::Bytes(v)
            }
            5 => {
                let (v, rest) = b.split_at_checked(4)?;
                b = rest;
                Field::Fixed32(u32::from_le_bytes(v.try_into().ok()?))
            }
            _ => return None,
        };
        out.push((key >> 3, value));
    }
    Some(out)
}

#[derive(Clone, Copy)]
enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

fn decode_event(bytes: &[u8]) -> Option<Event> {
    let (mut step, mut wall_time, mut scalars) = (0, 0.0, Vec::new());
    for (n, f) in fields(bytes)? {
        match (n, f) {
            (1, Field::Fixed64(v)) => wall_time = f64::from_bits(v),
            (2, Field::Varint(v)) => step = v as i64,
            (5, Field::Bytes(summary)) => {
                for (_, value) in fields(summary)?.into_iter().filter(|(n, _)| *n == 1) {
                    let Field::Bytes(value) = value else { continue };
                    let (mut tag, mut v) = (String::new(), None);
                    for (n, f) in fields(value)? {
                        match (n, f) {
                            (1, Field::Bytes(t)) => tag = String::from_utf8_lossy(t).into_owned(),
                            (2, Field::Fixed32(x)) => v = Some(f32::from_bits(x)),
                            _ => {}
                        }
                    }
                    if let Some(value) = v {
                        scalars.push((tag, value));
                    }
                }
            }
            _ => {}
        }
    }
    Some(Event {
        step,
        scalars: scalars
            .into_iter()
            .map(|(tag, value)| Scalar {
                tag,
                step,
                value,
                wall_time,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crc_is_crc32c_masked_as_tfrecord_masks_it() {
        // The standard CRC-32C check value, and TFRecord's mask: rotate right 15, add a constant.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        let c = 0xe306_9283u32;
        assert_eq!(
            masked_crc(b"123456789"),
            ((c >> 15) | (c << 17)).wrapping_add(0xa282_ead8)
        );
    }

    /// tests/fixtures/tensorboard_scalars.tfevents was written by the `tensorboard` package
    /// (scripts/make_tensorboard_fixture.py): rho reads it, and writes the same bytes.
    #[test]
    fn events_are_byte_identical_to_tensorboards_own() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/tensorboard_scalars.tfevents");
        let theirs = std::fs::read(&path).unwrap();
        let mut ours = record(&file_version_event(1764547200.25));
        let expected = [
            (1764547201.5, 0, "train/loss", 2.75),
            (1764547202.0, 1, "train/loss", 2.5),
            (1764547202.0, 300, "train/lr", 0.125),
        ];
        for (wall, step, tag, value) in expected {
            ours.extend(record(&scalar_event(tag, step, value, wall)));
        }
        assert_eq!(ours, theirs);
        let read = read_scalars(&path).unwrap();
        let got: Vec<_> = read
            .iter()
            .map(|s| (s.wall_time, s.step, s.tag.as_str(), s.value))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn scalars_round_trip_and_a_resume_drops_the_killed_runs_later_steps() {
        let dir = std::env::temp_dir().join(format!("rho-tb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = EventWriter::create(&dir, None).unwrap();
        for step in 0..10 {
            w.scalar("train/loss", step, 1.0 / (step + 1) as f64)
                .unwrap();
            w.scalar("train/lr", step, 0.1).unwrap();
        }
        w.flush().unwrap();
        let s = read_scalars(w.path()).unwrap();
        assert_eq!(s.len(), 20);
        assert_eq!(
            (s[4].tag.as_str(), s[4].step, s[4].value),
            ("train/loss", 2, 1.0 / 3.0)
        );
        // Killed after step 9, resumed from the checkpoint at step 6: steps 6..9 come again.
        let mut w = EventWriter::create(&dir, Some(6)).unwrap();
        for step in 6..12 {
            w.scalar("train/loss", step, -1.0).unwrap();
        }
        w.flush().unwrap();
        let s = read_scalars(w.path()).unwrap();
        let steps: Vec<i64> = s
            .iter()
            .filter(|x| x.tag == "train/loss")
            .map(|x| x.step)
            .collect();
        assert_eq!(steps, (0..12).collect::<Vec<_>>());
        assert!(s.iter().filter(|x| x.step >= 6).all(|x| x.value == -1.0));
        // A flipped byte is caught by the CRC.
        let mut b = std::fs::read(w.path()).unwrap();
        let n = b.len();
        b[n - 6] ^= 1;
        std::fs::write(w.path(), b).unwrap();
        assert!(read_scalars(w.path()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
