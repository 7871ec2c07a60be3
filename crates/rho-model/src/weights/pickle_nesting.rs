//! How deeply a PyTorch pickle nests, measured before burn-store parses it.
//!
//! burn-store's unpickler builds one value per level and its tensor search and the values' drops
//! recurse once per level, so a crafted `.pth` nested 10⁵ deep overflows the stack: the process
//! aborts instead of reporting an error. Real checkpoints nest under 20 levels (PySlowFast:
//! dict → optimizer state → per-parameter dict → tensor → storage tuple). This module replays
//! the pickle machine's stack with each value replaced by its nesting depth, reading each
//! opcode's argument only to skip it, and refuses a file deeper than [`MAX_NESTING`].
//!
//! Memo entries keep the depth they had when stored, as burn-store's memo keeps a copy.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

/// Deepest nesting accepted: far beyond any checkpoint, far below a stack overflow.
pub const MAX_NESTING: u32 = 256;

/// A legacy `torch.save` file is five pickles in a row (magic, protocol, system info, the
/// object, the storage keys) followed by raw storage bytes.
const LEGACY_PICKLES: usize = 5;

/// Why a scan stopped early.
enum Stop {
    /// Nested deeper than [`MAX_NESTING`].
    TooDeep,
    /// Not a pickle this scanner understands: burn-store's parser reports what is wrong.
    Unreadable,
}

impl From<io::Error> for Stop {
    fn from(_: io::Error) -> Self {
        Stop::Unreadable
    }
}

/// Refuses `path` when a pickle in it nests deeper than [`MAX_NESTING`]. Files this scanner
/// cannot follow pass: the parser that reads them afterwards names their problem.
pub(crate) fn check(path: &Path) -> Result<(), String> {
    let deep = |where_: &str| {
        Err(format!(
            "its pickle{where_} nests deeper than {MAX_NESTING} levels (a state dict nests under 20); the file is corrupt or crafted and is not read"
        ))
    };
    let Ok(file) = File::open(path) else {
        return Ok(());
    };
    if let Ok(mut archive) = zip::ZipArchive::new(BufReader::new(file)) {
        let names: Vec<String> = archive
            .file_names()
            .filter(|n| n.ends_with(".pkl"))
            .map(str::to_string)
            .collect();
        for name in names {
            let Ok(entry) = archive.by_name(&name) else {
                continue;
            };
            if let Err(Stop::TooDeep) = scan_pickles(&mut BufReader::new(entry), 1) {
                return deep(&format!(" `{name}`"));
            }
        }
        return Ok(());
    }
    let Ok(file) = File::open(path) else {
        return Ok(());
    };
    match scan_pickles(&mut BufReader::new(file), LEGACY_PICKLES) {
        Err(Stop::TooDeep) => deep(""),
        _ => Ok(()),
    }
}

/// Scans up to `count` consecutive pickles from `r`.
fn scan_pickles(r: &mut impl BufRead, count: usize) -> Result<(), Stop> {
    for _ in 0..count {
        if r.fill_buf()?.is_empty() {
            return Ok(());
        }
        Machine::default().run(r)?;
    }
    Ok(())
}

/// A stack entry: a mark, or a value's nesting depth (a scalar is 1).
#[derive(Clone, Copy)]
enum Item {
    Mark,
    Value(u32),
}

#[derive(Default)]
struct Machine {
    stack: Vec<Item>,
    memo: HashMap<u64, u32>,
}

impl Machine {
    fn push(&mut self, depth: u32) -> Result<(), Stop> {
        if depth > MAX_NESTING {
            return Err(Stop::TooDeep);
        }
        self.stack.push(Item::Value(depth));
        Ok(())
    }

    fn pop(&mut self) -> Result<u32, Stop> {
        match self.stack.pop() {
            Some(Item::Value(d)) => Ok(d),
            _ => Err(Stop::Unreadable),
        }
    }

    /// Pops the values above the top mark and the mark; the deepest of them (0 if none).
    fn pop_to_mark(&mut self) -> Result<u32, Stop> {
        let mut deepest = 0;
        loop {
            match self.stack.pop() {
                Some(Item::Mark) => return Ok(deepest),
                Some(Item::Value(d)) => deepest = deepest.max(d),
                None => return Err(Stop::Unreadable),
            }
        }
    }

    /// The value on top now holds something `child` deep (APPEND, SETITEM, BUILD, ...).
    fn fill_top(&mut self, child: u32) -> Result<(), Stop> {
        let top = self.pop()?;
        self.push(top.max(child.saturating_add(1)))
    }

    /// A new value built from values `child` deep (TUPLE, REDUCE, NEWOBJ, ...).
    fn wrap(&mut self, child: u32) -> Result<(), Stop> {
        self.push(child.saturating_add(1))
    }

    fn top(&self) -> Result<u32, Stop> {
        match self.stack.last() {
            Some(Item::Value(d)) => Ok(*d),
            _ => Err(Stop::Unreadable),
        }
    }

    fn get(&mut self, idx: u64) -> Result<(), Stop> {
        let d = *self.memo.get(&idx).ok_or(Stop::Unreadable)?;
        self.push(d)
    }

    fn put(&mut self, idx: u64) -> Result<(), Stop> {
        let d = self.top()?;
        self.memo.insert(idx, d);
        Ok(())
    }

    /// Runs one pickle up to its STOP.
    fn run(&mut self, r: &mut impl BufRead) -> Result<(), Stop> {
        loop {
            let op = read_uint(r, 1)? as u8;
            if op == b'.' {
                return Ok(());
            }
            self.step(op, r)?;
        }
    }

    fn step(&mut self, op: u8, r: &mut impl BufRead) -> Result<(), Stop> {
        match op {
            b'(' => self.stack.push(Item::Mark),
            b'0' => {
                self.stack.pop().ok_or(Stop::Unreadable)?;
            }
            b'1' => {
                self.pop_to_mark()?;
            }
            b'2' => self.push(self.top()?)?,
            b'a' => {
                let v = self.pop()?;
                self.fill_top(v)?;
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.fill_top(v.max(k))?;
            }
            b'b' => {
                let state = self.pop()?;
                self.fill_top(state)?;
            }
            b'e' | b'u' | 0x90 => {
                let m = self.pop_to_mark()?;
                self.fill_top(m)?;
            }
            b'd' | b'l' | b't' | b'o' | 0x91 => {
                let m = self.pop_to_mark()?;
                self.wrap(m)?;
            }
            b'i' => {
                skip_line(r)?;
                skip_line(r)?;
                let m = self.pop_to_mark()?;
                self.wrap(m)?;
            }
            0x85..=0x87 => {
                let mut deepest = 0;
                for _ in 0..(op - 0x84) {
                    deepest = deepest.max(self.pop()?);
                }
                self.wrap(deepest)?;
            }
            b'R' | 0x81 => {
                let args = self.pop()?;
                let callable = self.pop()?;
                self.wrap(args.max(callable))?;
            }
            0x92 => {
                let kwargs = self.pop()?;
                let args = self.pop()?;
                let class = self.pop()?;
                self.wrap(kwargs.max(args).max(class))?;
            }
            b'Q' => {
                let id = self.pop()?;
                self.wrap(id)?;
            }
            0x93 => {
                self.pop()?;
                self.pop()?;
                self.push(1)?;
            }
            b'g' => self.get(read_line_uint(r)?)?,
            b'h' => self.get(read_uint(r, 1)?)?,
            b'j' => self.get(read_uint(r, 4)?)?,
            b'p' => self.put(read_line_uint(r)?)?,
            b'q' => self.put(read_uint(r, 1)?)?,
            b'r' => self.put(read_uint(r, 4)?)?,
            0x94 => self.put(self.memo.len() as u64)?,
            0x80 => skip(r, 1)?,
            0x95 => skip(r, 8)?,
            0x98 => {}
            _ => self.scalar(op, r)?,
        }
        Ok(())
    }

    /// Opcodes that push one value holding no other (numbers, strings, globals, empty
    /// containers), after skipping their argument.
    fn scalar(&mut self, op: u8, r: &mut impl BufRead) -> Result<(), Stop> {
        match op {
            b'F' | b'I' | b'L' | b'S' | b'V' | b'P' => skip_line(r)?,
            b'c' => {
                skip_line(r)?;
                skip_line(r)?;
            }
            b'K' | 0x82 => skip(r, 1)?,
            b'M' | 0x83 => skip(r, 2)?,
            b'J' | 0x84 => skip(r, 4)?,
            b'G' => skip(r, 8)?,
            b'U' | b'C' | 0x8c | 0x8a => {
                let n = read_uint(r, 1)?;
                skip(r, n)?;
            }
            b'T' | b'X' | b'B' | 0x8b => {
                let n = read_uint(r, 4)?;
                skip(r, n)?;
            }
            0x8d | 0x8e | 0x96 => {
                let n = read_uint(r, 8)?;
                skip(r, n)?;
            }
            b'N' | 0x88 | 0x89 | b'}' | b']' | b')' | 0x8f | 0x97 => {}
            _ => return Err(Stop::Unreadable),
        }
        self.push(1)
    }
}

/// A little-endian unsigned integer of `bytes` bytes.
fn read_uint(r: &mut impl Read, bytes: usize) -> Result<u64, Stop> {
    let mut buf = [0u8; 8];
    r.read_exact(&mut buf[..bytes])?;
    Ok(u64::from_le_bytes(buf))
}

fn skip(r: &mut impl Read, n: u64) -> Result<(), Stop> {
    let skipped = io::copy(&mut r.take(n), &mut io::sink())?;
    if skipped == n {
        Ok(())
    } else {
        Err(Stop::Unreadable)
    }
}

fn skip_line(r: &mut impl BufRead) -> Result<(), Stop> {
    r.skip_until(b'\n')?;
    Ok(())
}

/// A protocol-0 memo index: decimal digits up to a newline.
fn read_line_uint(r: &mut impl BufRead) -> Result<u64, Stop> {
    let mut line = Vec::new();
    r.take(32).read_until(b'\n', &mut line)?;
    std::str::from_utf8(&line)
        .ok()
        .and_then(|s| s.trim_end().parse().ok())
        .ok_or(Stop::Unreadable)
}

#[cfg(test)]
mod tests_support {
    /// Lists nested `depth` deep, as protocol 2 writes them.
    pub fn nested_lists(depth: usize) -> Vec<u8> {
        let mut p = vec![0x80, 2];
        p.extend(std::iter::repeat_n(b']', depth));
        p.extend(std::iter::repeat_n(b'a', depth - 1));
        p.push(b'.');
        p
    }

    /// A legacy `torch.save` file around `object`: magic number, protocol and system-info
    /// pickles first, as burn-store expects.
    pub fn legacy_file(object: &[u8]) -> Vec<u8> {
        let mut f = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec();
        f.extend(b"\x80\x02M\xe9\x03.");
        f.extend(b"\x80\x02}q\x00(X\x10\x00\x00\x00protocol_versionq\x01M\xe9\x03X\x0d\x00\x00\x00little_endianq\x02\x88u.");
        f.extend(object);
        f.extend(b"\x80\x02]q\x00.");
        f
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;

    fn depth_ok(bytes: &[u8]) -> bool {
        !matches!(
            scan_pickles(&mut io::Cursor::new(bytes), LEGACY_PICKLES),
            Err(Stop::TooDeep)
        )
    }

    #[test]
    fn nesting_is_counted_through_appends_tuples_and_the_memo() {
        assert!(depth_ok(&nested_lists(MAX_NESTING as usize)));
        assert!(!depth_ok(&nested_lists(MAX_NESTING as usize + 1)));
        // ((x,),) built by TUPLE1 and re-fetched from the memo, then wrapped again each round.
        let mut p = vec![0x80, 2, b'N', b'q', 0];
        for _ in 0..300 {
            p.extend([b'h', 0, 0x85, b'q', 0, b'0']);
        }
        p.extend([b'h', 0, b'.']);
        assert!(!depth_ok(&p));
        p.truncate(5);
        p.extend([b'h', 0, 0x85, b'.']);
        assert!(depth_ok(&p));
    }

    #[test]
    fn a_state_dict_of_tensors_passes_and_garbage_is_left_to_the_parser() {
        // {"w": REDUCE(global, (persid, 0, (2,), (1,)))} in protocol 2.
        let p = b"\x80\x02}q\x00X\x01\x00\x00\x00wq\x01ctorch._utils\n_rebuild_tensor_v2\nq\x02(X\x01\x00\x00\x00kQK\x00K\x02\x85K\x01\x85tRs.";
        let mut r = io::Cursor::new(&p[..]);
        assert!(Machine::default().run(&mut r).is_ok());
        assert!(depth_ok(b"not a pickle at all"));
        assert!(depth_ok(b""));
    }
}

#[cfg(test)]
mod file_tests {
    use super::tests_support::*;
    use crate::weights::StateDict;

    #[test]
    fn a_pickle_nested_a_hundred_thousand_deep_is_an_error_not_a_stack_overflow() {
        let dir = std::env::temp_dir().join(format!("rho-pickle-depth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("deep.pth");
        std::fs::write(&path, legacy_file(&nested_lists(100_000))).unwrap();
        let err = StateDict::read(&path).unwrap_err().to_string();
        assert!(err.contains("nests deeper than 256"), "{err}");
        assert!(err.contains("deep.pth"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
