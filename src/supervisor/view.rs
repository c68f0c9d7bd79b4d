//! The bounded text view of a stream made for LLM tools (coder's agentproc head+tail): the first
//! and last bytes, an omission marker between them, long lines cut, and counts of what was left out.
use super::output::{Output, StreamKind};

/// Sizes of the view; zero fields take coder's defaults.
#[derive(Debug, Clone, Copy)]
pub struct ViewOptions {
    pub head_bytes: usize,
    pub tail_bytes: usize,
    pub max_line_bytes: usize,
}

impl Default for ViewOptions {
    fn default() -> Self {
        ViewOptions {
            head_bytes: 16 << 10,
            tail_bytes: 16 << 10,
            max_line_bytes: 2048,
        }
    }
}

/// The view of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamView {
    pub kind: StreamKind,
    pub text: String,
    pub total_bytes: u64,
    pub omitted_bytes: u64,
    pub cut_lines: u64,
    pub cut_line_bytes: u64,
}

impl StreamView {
    /// Whether anything was left out or cut.
    pub fn truncated(&self) -> bool {
        self.omitted_bytes > 0 || self.cut_lines > 0
    }
}

/// Build the view of one stream.
pub fn view(output: &Output, kind: StreamKind, opts: ViewOptions) -> StreamView {
    let Some(stats) = output.stats().into_iter().find(|s| s.kind == kind) else {
        return StreamView {
            kind,
            text: String::new(),
            total_bytes: 0,
            omitted_bytes: 0,
            cut_lines: 0,
            cut_line_bytes: 0,
        };
    };
    let total = stats.total;
    // Bytes between the retained head and the ring are gone; neither part may span them.
    let lost = stats.tail_offset > stats.head_len;
    let mut head_end = total.min(opts.head_bytes as u64);
    if lost {
        head_end = head_end.min(stats.head_len);
    }
    let mut tail_start = total.saturating_sub(opts.tail_bytes as u64).max(head_end);
    if lost {
        tail_start = tail_start.max(stats.tail_offset);
    }
    let (head, _) = output.slice(kind, 0, head_end);
    let (tail, _) = output.slice(kind, tail_start, total);
    let omitted = total - (head.len() + tail.len()) as u64;

    let mut cut = Cut::default();
    let mut text = cut.lines(&head, opts.max_line_bytes);
    if omitted > 0 {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("[... {omitted} bytes omitted ...]\n"));
    }
    text.push_str(&cut.lines(&tail, opts.max_line_bytes));
    StreamView {
        kind,
        text,
        total_bytes: total,
        omitted_bytes: omitted,
        cut_lines: cut.lines_cut,
        cut_line_bytes: cut.bytes_cut,
    }
}

#[derive(Default)]
struct Cut {
    lines_cut: u64,
    bytes_cut: u64,
}

impl Cut {
    fn lines(&mut self, bytes: &[u8], max: usize) -> String {
        let mut out = String::with_capacity(bytes.len().min(1 << 20));
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                out.push('\n');
            }
            if line.len() > max {
                let dropped = line.len() - max;
                self.lines_cut += 1;
                self.bytes_cut += dropped as u64;
                out.push_str(&String::from_utf8_lossy(&line[..max]));
                out.push_str(&format!(" [... {dropped} bytes cut]"));
            } else {
                out.push_str(&String::from_utf8_lossy(line));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(head: usize, tail: usize, line: usize) -> ViewOptions {
        ViewOptions {
            head_bytes: head,
            tail_bytes: tail,
            max_line_bytes: line,
        }
    }

    #[test]
    fn short_output_is_whole() {
        let out = Output::new(&[StreamKind::Stdout], 1024, 1024);
        out.append(StreamKind::Stdout, b"a\nb\n");
        let v = view(&out, StreamKind::Stdout, ViewOptions::default());
        assert_eq!(v.text, "a\nb\n");
        assert!(!v.truncated());
    }

    #[test]
    fn long_output_keeps_head_and_tail_and_counts_the_middle() {
        let out = Output::new(&[StreamKind::Stdout], 1024, 1024);
        let data: String = (0..100).map(|i| format!("{i:03}\n")).collect();
        out.append(StreamKind::Stdout, data.as_bytes());
        let v = view(&out, StreamKind::Stdout, opts(8, 8, 100));
        assert_eq!(v.text, "000\n001\n[... 384 bytes omitted ...]\n098\n099\n");
        assert_eq!(v.omitted_bytes, 384);
        assert_eq!(v.total_bytes, 400);
    }

    #[test]
    fn long_lines_are_cut_with_a_marker() {
        let out = Output::new(&[StreamKind::Stdout], 1024, 1024);
        out.append(StreamKind::Stdout, b"0123456789\nok\n");
        let v = view(&out, StreamKind::Stdout, opts(100, 100, 4));
        assert_eq!(v.text, "0123 [... 6 bytes cut]\nok\n");
        assert_eq!((v.cut_lines, v.cut_line_bytes), (1, 6));
        assert!(v.truncated());
    }

    #[test]
    fn bytes_the_ring_lost_count_as_omitted() {
        let out = Output::new(&[StreamKind::Stdout], 2, 4);
        out.append(StreamKind::Stdout, b"abcdefghij");
        let v = view(&out, StreamKind::Stdout, opts(100, 100, 100));
        assert_eq!(v.text, "ab\n[... 4 bytes omitted ...]\nghij");
        assert_eq!(v.omitted_bytes, 4);
    }
}
