//! The log probe: read the process's output from its start, line by line, until a line matches.
use tokio::sync::watch;

use super::Readiness;
use crate::supervisor::output::{Chunk, Cursor, Read, StreamKind};
use crate::supervisor::Process;

/// The most of one line that is matched; the rest of a longer line is not looked at.
pub const LINE_MAX: usize = 64 << 10;
/// The longest pattern accepted.
pub const PATTERN_MAX: usize = 1024;
/// Output read per wake-up.
const BATCH: usize = 1 << 20;

/// Compile a probe's pattern, bounded in what the compiled form may take.
pub fn compile(pattern: &str) -> Result<regex::bytes::Regex, String> {
    if pattern.is_empty() {
        return Err("is empty; give a regular expression".into());
    }
    if pattern.len() > PATTERN_MAX {
        return Err(format!("{} bytes; at most {PATTERN_MAX}", pattern.len()));
    }
    regex::bytes::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|e| {
            e.to_string()
                .lines()
                .last()
                .unwrap_or("invalid")
                .trim()
                .to_string()
        })
}

/// One stream's line being read.
struct Line {
    kind: StreamKind,
    bytes: Vec<u8>,
    /// Already counted as a match (as an unfinished line that matched while the process
    /// paused): not counted again when it ends.
    counted: bool,
}

/// Read `p`'s output until `successes` lines have matched: then the position just after the
/// last one, or `None` once the output ended (the process exited) first. A line the process
/// has not ended yet (a prompt) is matched when the output pauses.
pub async fn until_match(
    p: &Process,
    state: &watch::Sender<Readiness>,
    pattern: &str,
    stream: Option<StreamKind>,
    successes: u32,
) -> Option<(StreamKind, u64)> {
    let re = match compile(pattern) {
        Ok(re) => re,
        Err(why) => {
            state.send_if_modified(|r| {
                r.last_error = Some(format!("pattern: {why}"));
                false
            });
            return None;
        }
    };
    let kinds = match stream {
        Some(k) => vec![k],
        None => p.output.kinds(),
    };
    let mut lines: Vec<Line> = kinds
        .iter()
        .map(|&kind| Line {
            kind,
            bytes: Vec::new(),
            counted: false,
        })
        .collect();
    let mut cursor = Cursor::new(&kinds, 0);
    let mut changed = p.output.subscribe();
    let mut matched = 0u32;
    loop {
        changed.borrow_and_update();
        let read = p.output.read(&mut cursor, BATCH);
        let mut ended = 0u64;
        match read {
            Read::Chunks(chunks) => {
                for chunk in chunks {
                    match chunk {
                        Chunk::Data {
                            stream,
                            offset,
                            data,
                        } => {
                            let Some(line) = lines.iter_mut().find(|l| l.kind == stream) else {
                                continue;
                            };
                            let mut start = 0;
                            for (i, _) in data.iter().enumerate().filter(|(_, b)| **b == b'\n') {
                                take(line, &data[start..i]);
                                ended += 1;
                                if !line.counted && re.is_match(trim_cr(&line.bytes)) {
                                    matched += 1;
                                }
                                line.bytes.clear();
                                line.counted = false;
                                start = i + 1;
                                if matched >= successes {
                                    count(state, ended);
                                    return Some((stream, offset + start as u64));
                                }
                            }
                            take(line, &data[start..]);
                        }
                        // What was lost breaks the line it fell in.
                        Chunk::Gap { stream, .. } => {
                            if let Some(line) = lines.iter_mut().find(|l| l.kind == stream) {
                                line.bytes.clear();
                                line.counted = true;
                            }
                        }
                    }
                }
                count(state, ended);
            }
            Read::Pending | Read::Done(_) => {
                let done = matches!(read, Read::Done(_));
                for line in lines
                    .iter_mut()
                    .filter(|l| !l.counted && !l.bytes.is_empty())
                {
                    if re.is_match(trim_cr(&line.bytes)) {
                        line.counted = true;
                        matched += 1;
                        if matched >= successes {
                            let at = p
                                .output
                                .stats()
                                .iter()
                                .find(|s| s.kind == line.kind)
                                .map_or(0, |s| s.total);
                            return Some((line.kind, at));
                        }
                    }
                }
                if done {
                    return None;
                }
                if changed.changed().await.is_err() {
                    return None;
                }
            }
        }
    }
}

/// Add bytes to a line, up to `LINE_MAX`.
fn take(line: &mut Line, bytes: &[u8]) {
    let room = LINE_MAX.saturating_sub(line.bytes.len());
    line.bytes
        .extend_from_slice(&bytes[..bytes.len().min(room)]);
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Lines read are the log probe's checks.
fn count(state: &watch::Sender<Readiness>, lines: u64) {
    if lines > 0 {
        state.send_if_modified(|r| {
            r.checks += lines;
            false
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_bounded_and_explained() {
        assert!(compile("listening on .*:\\d+").is_ok());
        assert!(compile("").unwrap_err().contains("empty"));
        assert!(compile(&"a".repeat(2000))
            .unwrap_err()
            .contains("at most 1024"));
        let err = compile("(unclosed").unwrap_err();
        assert!(err.contains("unclosed"), "{err}");
        assert!(compile("(?=look-ahead)").is_err());
    }
}
