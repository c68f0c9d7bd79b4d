//! Unix connections: a request whose HTTP/2 `:authority` is the socket's path is served as if it
//! said `localhost`.
//!
//! grpcurl, grpc-java and grpcio (>= 1.57) send the unix socket's path (`/tmp/x/tend.sock`), or
//! its %-encoding, as `:authority`. The `h2` crate parses `:authority` as an
//! `http::uri::Authority`, and resets such a stream with PROTOCOL_ERROR before tonic sees it
//! (hyperium/h2 PR 487, which would relax that, is still open).
//!
//! Why an adapter on the byte stream rather than a patched h2: a fork of h2 (through
//! `[patch.crates-io]`) would have to be carried, rebased and audited with every h2 release that
//! tonic and hyper pull in, and it would relax the check for TCP listeners too, where the strict
//! validation should stay. The adapter is confined to unix connections, is independent of h2's
//! internals (it only speaks the wire format, RFC 9113 and RFC 7541), and goes away by deleting
//! one `map` in `server/mod.rs` once h2 accepts such authorities.
//!
//! How: [`LocalAuthority`] wraps an accepted connection and parses what the client sends: the
//! 24-byte preface, then frames. Every frame but HEADERS and CONTINUATION is forwarded untouched
//! (for DATA: the 9-byte header is parsed, the payload copied straight through, or read directly
//! into h2's buffer when it is larger than that). A header block (HEADERS plus CONTINUATIONs up to
//! END_HEADERS) is unpadded, decoded with a stateful HPACK decoder that mirrors the client's
//! encoder (dynamic table, size updates, Huffman: huffman.rs makes the strings plain first, as
//! loona-hpack's own Huffman decoding costs more than the rest of a call), given `:authority: localhost` where it is a
//! path, anything else that is not an `Authority`, or absent from a request, and re-encoded as
//! literals without indexing: so h2's decoder never has a dynamic table entry that we would have
//! to keep in step with, and every block is re-encoded (not only changed ones) because the client's
//! indexed references only make sense to our decoder. The block goes out as one HEADERS frame
//! (keeping END_STREAM and PRIORITY) and CONTINUATIONs of at most 16384 bytes, the smallest
//! SETTINGS_MAX_FRAME_SIZE any peer accepts. A header block over 1 MiB, a decoding error or a
//! broken frame fails the read, which closes the connection, as h2 itself would.
//!
//! What the server sends back is parsed too, only for frame headers: when h2 resets a stream
//! with PROTOCOL_ERROR (a request it still refuses) or ends the connection with an error, a
//! warning names the stream and, where the request's headers show it, the reason (h2 itself only
//! says so at debug level, as `h2=debug`).
use std::borrow::Cow;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use loona_hpack::Decoder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// The client connection preface, `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
/// The largest frame we emit: the smallest SETTINGS_MAX_FRAME_SIZE (RFC 9113, 6.5.2).
const MAX_FRAME_OUT: usize = 16_384;
/// The largest header block (as sent, or decoded) we hold; past it the connection is closed.
const MAX_BLOCK: usize = 1 << 20;
/// SETTINGS_HEADER_TABLE_SIZE as h2 announces it (its default, which hyper and tonic keep): the
/// client's encoder may not size its dynamic table beyond it.
const HEADER_TABLE_SIZE: usize = 4096;
/// How much we ask of the socket at a time when we need protocol bytes.
const READ_CHUNK: usize = 16 * 1024;
/// How many refused requests' diagnoses a connection remembers until h2's answer.
const DIAGNOSES: usize = 32;

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

const PROTOCOL_ERROR: u32 = 0x1;

/// What `:authority` becomes.
const LOCALHOST: &[u8] = b"localhost";

/// A connection whose requests' `:authority` is made acceptable to h2; see the module docs.
pub struct LocalAuthority<S> {
    inner: S,
    /// Bytes read from the client and not yet looked at.
    input: BytesMut,
    /// Bytes for h2: frame headers and rewritten header blocks.
    output: BytesMut,
    /// Bytes to forward untouched (the preface, then a frame's payload) before the next frame.
    pass: usize,
    /// The header block being gathered.
    block: Option<Block>,
    decoder: Decoder<'static>,
    /// Set once a read failed: later reads fail too.
    failed: bool,
    /// Why h2 will likely refuse a request, by stream, for the warning when it does.
    diagnoses: VecDeque<(u32, String)>,
    /// The server-to-client direction, parsed for RST_STREAM and GOAWAY.
    tx: Sent,
}

struct Block {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

/// Where the parser of what the server sends is.
#[derive(Default)]
struct Sent {
    header: [u8; FRAME_HEADER_LEN],
    got: usize,
    /// Payload bytes to skip.
    skip: usize,
    /// The start of a RST_STREAM or GOAWAY payload being captured.
    capture: Option<Capture>,
}

struct Capture {
    kind: u8,
    stream: u32,
    bytes: [u8; 8],
    need: usize,
    got: usize,
    /// Payload bytes after the captured ones.
    rest: usize,
}

impl<S> LocalAuthority<S> {
    pub fn new(inner: S) -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        LocalAuthority {
            inner,
            input: BytesMut::new(),
            output: BytesMut::new(),
            pass: PREFACE_LEN,
            block: None,
            decoder,
            failed: false,
            diagnoses: VecDeque::new(),
            tx: Sent::default(),
        }
    }

    /// Look at the next frame in `input`: true if that moved anything on, false if more input is
    /// needed first.
    fn process(&mut self) -> io::Result<bool> {
        if self.pass > 0 || self.input.len() < FRAME_HEADER_LEN {
            return Ok(false);
        }
        let h = &self.input[..FRAME_HEADER_LEN];
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        let (kind, flags) = (h[3], h[4]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        match &self.block {
            // A CONTINUATION out of place goes to h2 untouched, which reports it.
            None if kind != HEADERS => {
                self.output
                    .extend_from_slice(&self.input[..FRAME_HEADER_LEN]);
                self.input.advance(FRAME_HEADER_LEN);
                self.pass = len;
                return Ok(true);
            }
            Some(b) if kind != CONTINUATION || stream != b.stream => {
                return Err(invalid(format!(
                    "a frame of type {kind} on stream {stream} inside the header block of \
                     stream {}",
                    b.stream
                )));
            }
            _ => {}
        }
        let gathered = self.block.as_ref().map_or(0, |b| b.fragment.len());
        if gathered.saturating_add(len) > MAX_BLOCK {
            return Err(invalid(format!(
                "a header block over {MAX_BLOCK} bytes on stream {stream}"
            )));
        }
        if self.input.len() < FRAME_HEADER_LEN + len {
            self.input
                .reserve(FRAME_HEADER_LEN + len - self.input.len());
            return Ok(false);
        }
        let frame = self.input.split_to(FRAME_HEADER_LEN + len);
        let payload = &frame[FRAME_HEADER_LEN..];
        match self.block.as_mut() {
            Some(b) => b.fragment.extend_from_slice(payload),
            None => self.block = Some(unpad(stream, flags, payload)?),
        }
        if flags & END_HEADERS != 0 {
            if let Some(b) = self.block.take() {
                self.finish(b)?;
            }
        }
        Ok(true)
    }

    /// Decode a whole header block, fix its `:authority` and queue it re-encoded.
    fn finish(&mut self, b: Block) -> io::Result<()> {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut size = 0usize;
        let plain = super::huffman::plain(&b.fragment)
            .map_err(|e| invalid(format!("HPACK on stream {}: {e}", b.stream)))?;
        self.decoder
            .decode_with_cb(&plain, |name: Cow<[u8]>, value: Cow<[u8]>| {
                // RFC 7541's size of a header list; the cap keeps a block of indexed references
                // to a large table entry from growing without bound.
                size = size.saturating_add(name.len() + value.len() + 32);
                if size <= MAX_BLOCK {
                    fields.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(|e| invalid(format!("HPACK on stream {}: {e}", b.stream)))?;
        if size > MAX_BLOCK {
            return Err(invalid(format!(
                "a header list over {MAX_BLOCK} bytes on stream {}",
                b.stream
            )));
        }
        let rewritten = fix_authority(&mut fields);
        if rewritten {
            tracing::trace!(
                stream = b.stream,
                "unix socket: :authority served as localhost"
            );
        }
        if fields.iter().any(|(n, _)| n == b":method") {
            if let Some(why) = diagnose(&fields) {
                if self.diagnoses.len() == DIAGNOSES {
                    self.diagnoses.pop_front();
                }
                self.diagnoses.push_back((b.stream, why));
            }
        }
        let mut block = Vec::with_capacity(b.fragment.len() + 64);
        for (name, value) in &fields {
            put_literal(&mut block, name, value);
        }
        emit(&mut self.output, &b, &block);
        Ok(())
    }

    /// Look at bytes the server has sent.
    fn sent(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let tx = &mut self.tx;
            if tx.skip > 0 {
                let n = tx.skip.min(bytes.len());
                tx.skip -= n;
                bytes = &bytes[n..];
            } else if let Some(c) = tx.capture.as_mut() {
                let n = (c.need - c.got).min(bytes.len());
                c.bytes[c.got..c.got + n].copy_from_slice(&bytes[..n]);
                c.got += n;
                bytes = &bytes[n..];
                if c.got == c.need {
                    tx.skip = c.rest;
                    if let Some(c) = tx.capture.take() {
                        self.report(&c);
                    }
                }
            } else {
                let n = (FRAME_HEADER_LEN - tx.got).min(bytes.len());
                tx.header[tx.got..tx.got + n].copy_from_slice(&bytes[..n]);
                tx.got += n;
                bytes = &bytes[n..];
                if tx.got == FRAME_HEADER_LEN {
                    tx.got = 0;
                    let h = tx.header;
                    let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                    let need = match h[3] {
                        RST_STREAM => 4,
                        GOAWAY => 8,
                        _ => usize::MAX,
                    };
                    if len >= need {
                        tx.capture = Some(Capture {
                            kind: h[3],
                            stream,
                            bytes: [0; 8],
                            need,
                            got: 0,
                            rest: len - need,
                        });
                    } else {
                        tx.skip = len;
                    }
                }
            }
        }
    }

    /// Warn of a request that h2 refused, or of a connection it ended with an error.
    fn report(&mut self, c: &Capture) {
        let b = c.bytes;
        if c.kind == RST_STREAM {
            let code = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            if code != PROTOCOL_ERROR {
                return;
            }
            let why = self
                .diagnoses
                .iter()
                .position(|(s, _)| *s == c.stream)
                .and_then(|i| self.diagnoses.remove(i))
                .map(|(_, why)| why);
            let why = why.as_deref().unwrap_or(
                "not a malformed header block that tend recognizes (TEND_LOG=h2=debug names it)",
            );
            tracing::warn!(
                stream = c.stream,
                reason = why,
                "unix socket: refused a request (HTTP/2 stream reset with PROTOCOL_ERROR)"
            );
        } else {
            let code = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
            if code != 0 {
                tracing::warn!(
                    error = error_name(code),
                    "unix socket: closing a client's connection on an HTTP/2 error \
                     (TEND_LOG=h2=debug names it)"
                );
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LocalAuthority<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(Err(invalid("the connection failed before".into())));
        }
        let start = buf.filled().len();
        loop {
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                continue;
            }
            if this.pass > 0 && !this.input.is_empty() {
                let n = this.pass.min(this.input.len()).min(buf.remaining());
                buf.put_slice(&this.input[..n]);
                this.input.advance(n);
                this.pass -= n;
                continue;
            }
            match this.process() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    this.failed = true;
                    return Poll::Ready(Err(e));
                }
            }
            // Nothing more without reading; hand over what we have first.
            if buf.filled().len() > start {
                return Poll::Ready(Ok(()));
            }
            if this.pass > 0 && buf.remaining() <= this.pass {
                // A payload at least as large as the caller's room: read it there directly.
                ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                this.pass -= buf.filled().len() - start;
                return Poll::Ready(Ok(()));
            }
            if this.input.capacity() - this.input.len() < READ_CHUNK {
                this.input.reserve(READ_CHUNK);
            }
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut this.input
            ))?;
            if n == 0 {
                // The client is gone; a partial frame left behind is h2's to notice (as EOF).
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LocalAuthority<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.sent(&buf[..n.min(buf.len())]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        let mut left = n;
        for b in bufs {
            if left == 0 {
                break;
            }
            let k = left.min(b.len());
            this.sent(&b[..k]);
            left -= k;
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: Connected> Connected for LocalAuthority<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// A HEADERS frame's payload less its padding and priority fields.
fn unpad(stream: u32, flags: u8, payload: &[u8]) -> io::Result<Block> {
    let mut p = payload;
    let mut pad = 0;
    if flags & PADDED != 0 {
        let (&n, rest) = p.split_first().ok_or_else(|| {
            invalid(format!(
                "a padded HEADERS without its pad length, stream {stream}"
            ))
        })?;
        pad = usize::from(n);
        p = rest;
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        let (fields, rest) = p
            .split_first_chunk::<5>()
            .ok_or_else(|| invalid(format!("HEADERS too short for PRIORITY, stream {stream}")))?;
        priority = Some(*fields);
        p = rest;
    }
    let end = p
        .len()
        .checked_sub(pad)
        .ok_or_else(|| invalid(format!("HEADERS padding past its frame, stream {stream}")))?;
    Ok(Block {
        stream,
        end_stream: flags & END_STREAM != 0,
        priority,
        fragment: p[..end].to_vec(),
    })
}

/// Make every `:authority` acceptable to h2, and give a request without one `localhost`. True if
/// anything changed.
fn fix_authority(fields: &mut Vec<(Vec<u8>, Vec<u8>)>) -> bool {
    let mut changed = false;
    let mut present = false;
    for (name, value) in fields.iter_mut() {
        if name == b":authority" {
            present = true;
            if http::uri::Authority::try_from(value.as_slice()).is_err() {
                *value = LOCALHOST.to_vec();
                changed = true;
            }
        }
    }
    if !present && fields.iter().any(|(n, _)| n == b":method") {
        fields.insert(0, (b":authority".to_vec(), LOCALHOST.to_vec()));
        changed = true;
    }
    changed
}

/// Why h2 would refuse this request's header list, if we can tell (its checks in
/// `frame::headers` and `server::convert`).
fn diagnose(fields: &[(Vec<u8>, Vec<u8>)]) -> Option<String> {
    let show = |b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        s.chars().take(100).collect::<String>()
    };
    let mut regular = false;
    let mut seen: Vec<&[u8]> = Vec::new();
    let (mut method, mut scheme, mut path, mut protocol) = (None, None, None, false);
    for (name, value) in fields {
        if name.first() == Some(&b':') {
            if regular {
                return Some(format!(
                    "pseudo-header {} after a regular header",
                    show(name)
                ));
            }
            if seen.contains(&name.as_slice()) {
                return Some(format!("repeated pseudo-header {}", show(name)));
            }
            seen.push(name);
            match name.as_slice() {
                b":method" => method = Some(value),
                b":scheme" => scheme = Some(value),
                b":path" => path = Some(value),
                b":protocol" => protocol = true,
                b":authority" => {
                    if http::uri::Authority::try_from(value.as_slice()).is_err() {
                        return Some(format!("malformed :authority {:?}", show(value)));
                    }
                }
                b":status" => return Some(":status on a request".into()),
                _ => return Some(format!("unknown pseudo-header {}", show(name))),
            }
            continue;
        }
        regular = true;
        if name.iter().any(u8::is_ascii_uppercase) || http::HeaderName::from_bytes(name).is_err() {
            return Some(format!("invalid header name {:?}", show(name)));
        }
        if http::HeaderValue::from_bytes(value).is_err() {
            return Some(format!("invalid value of header {}", show(name)));
        }
        match name.as_slice() {
            b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding"
            | b"upgrade" => {
                return Some(format!("connection-specific header {}", show(name)));
            }
            b"te" if value != b"trailers" => {
                return Some(format!(
                    "te: {:?} (only \"trailers\" is allowed)",
                    show(value)
                ));
            }
            _ => {}
        }
    }
    let Some(method) = method else {
        return Some("missing :method".into());
    };
    if http::Method::from_bytes(method).is_err() {
        return Some(format!("malformed :method {:?}", show(method)));
    }
    let connect = method == b"CONNECT";
    if protocol && !connect {
        return Some(":protocol on a request other than CONNECT".into());
    }
    match scheme {
        Some(_) if connect && !protocol => return Some(":scheme in CONNECT".into()),
        Some(s) if http::uri::Scheme::try_from(s.as_slice()).is_err() => {
            return Some(format!("malformed :scheme {:?}", show(s)));
        }
        None if !connect || protocol => return Some("missing :scheme".into()),
        _ => {}
    }
    match path {
        Some(_) if connect && !protocol => return Some(":path in CONNECT".into()),
        Some(p) if p.is_empty() => return Some("empty :path".into()),
        Some(p) if http::uri::PathAndQuery::try_from(p.as_slice()).is_err() => {
            return Some(format!("malformed :path {:?}", show(p)));
        }
        None if connect && protocol => return Some("missing :path in extended CONNECT".into()),
        _ => {}
    }
    None
}

/// An HPACK integer with an `prefix`-bit prefix, the octet's other bits `first`.
pub(super) fn put_int(out: &mut Vec<u8>, first: u8, prefix: u8, mut v: usize) {
    let max = (1usize << prefix) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 0x80 {
        out.push(0x80 | (v & 0x7f) as u8);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A literal header field without indexing, with a literal name, neither Huffman-coded.
fn put_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0);
    put_int(out, 0, 7, name.len());
    out.extend_from_slice(name);
    put_int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

fn put_frame_header(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: u32) {
    out.put_slice(&(len as u32).to_be_bytes()[1..]);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream);
}

/// Queue `block` as one HEADERS frame and as many CONTINUATIONs as it takes.
fn emit(out: &mut BytesMut, b: &Block, block: &[u8]) {
    let prio = b.priority.as_ref().map_or(&[][..], |p| &p[..]);
    let (first, mut rest) = block.split_at(block.len().min(MAX_FRAME_OUT - prio.len()));
    let mut flags = 0;
    if b.end_stream {
        flags |= END_STREAM;
    }
    if b.priority.is_some() {
        flags |= PRIORITY;
    }
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    out.reserve(block.len() + prio.len() + FRAME_HEADER_LEN * (1 + block.len() / MAX_FRAME_OUT));
    put_frame_header(out, prio.len() + first.len(), HEADERS, flags, b.stream);
    out.put_slice(prio);
    out.put_slice(first);
    while !rest.is_empty() {
        let (chunk, r) = rest.split_at(rest.len().min(MAX_FRAME_OUT));
        rest = r;
        let flags = if rest.is_empty() { END_HEADERS } else { 0 };
        put_frame_header(out, chunk.len(), CONTINUATION, flags, b.stream);
        out.put_slice(chunk);
    }
}

fn error_name(code: u32) -> String {
    let name = match code {
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        _ => return format!("error code {code:#x}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use loona_hpack::Encoder;
    use rand::{Rng, SeedableRng};
    use std::task::Waker;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const DATA: u8 = 0x0;
    const SETTINGS: u8 = 0x4;

    /// A client that hands over `data` in pieces of the sizes in `chunks` (in turn), and never
    /// blocks; what is written to it is dropped.
    struct Feed {
        data: Vec<u8>,
        pos: usize,
        chunks: Vec<usize>,
        turn: usize,
    }

    impl AsyncRead for Feed {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let chunk = this.chunks[this.turn % this.chunks.len()].max(1);
            this.turn += 1;
            let n = chunk.min(buf.remaining()).min(this.data.len() - this.pos);
            buf.put_slice(&this.data[this.pos..this.pos + n]);
            this.pos += n;
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Feed {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// What h2 would read through the adapter from a client that sends `input`, in pieces of
    /// `chunks`, read `out_chunk` bytes at a time.
    fn drive(input: &[u8], chunks: &[usize], out_chunk: usize) -> io::Result<Vec<u8>> {
        let feed = Feed {
            data: input.to_vec(),
            pos: 0,
            chunks: chunks.to_vec(),
            turn: 0,
        };
        let mut a = LocalAuthority::new(feed);
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        let mut buf = vec![0u8; out_chunk.max(1)];
        loop {
            let mut rb = ReadBuf::new(&mut buf);
            match Pin::new(&mut a).poll_read(&mut cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => return Ok(out),
                Poll::Ready(Ok(())) => out.extend_from_slice(rb.filled()),
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => panic!("the feed never blocks"),
            }
        }
    }

    fn all(input: &[u8]) -> io::Result<Vec<u8>> {
        drive(input, &[1 << 20], 1 << 20)
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.push(kind);
        f.push(flags);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn hpack(enc: &mut Encoder<'_>, fields: &[(&str, &str)]) -> Vec<u8> {
        enc.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    type Frame = (u8, u8, u32, Vec<u8>);

    /// The frames after the preface.
    fn frames(out: &[u8]) -> Vec<Frame> {
        assert_eq!(&out[..PREFACE.len()], PREFACE);
        let mut rest = &out[PREFACE.len()..];
        let mut v = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]);
            v.push((rest[3], rest[4], stream, rest[9..9 + len].to_vec()));
            rest = &rest[9 + len..];
        }
        v
    }

    /// Header lists as h2 would decode them (a fresh decoder: we never index), with each
    /// block's stream and its HEADERS frame's flags.
    /// A header block as h2 gets it: its stream, its HEADERS frame's flags, its fields.
    type List = (u32, u8, Vec<(String, String)>);

    fn header_lists(out: &[u8]) -> Vec<List> {
        let mut dec = Decoder::new();
        let mut lists = Vec::new();
        let mut block: Option<(u32, u8, Vec<u8>)> = None;
        for (kind, flags, stream, payload) in frames(out) {
            match kind {
                HEADERS => {
                    assert!(block.is_none());
                    assert_eq!(flags & PADDED, 0, "no padding goes out");
                    assert!(payload.len() <= MAX_FRAME_OUT);
                    let skip = if flags & PRIORITY != 0 { 5 } else { 0 };
                    block = Some((stream, flags, payload[skip..].to_vec()));
                }
                CONTINUATION => {
                    assert!(payload.len() <= MAX_FRAME_OUT);
                    let b = block.as_mut().expect("CONTINUATION in a block");
                    assert_eq!(b.0, stream);
                    b.2.extend_from_slice(&payload);
                }
                _ => {
                    assert!(block.is_none());
                    continue;
                }
            }
            if flags & END_HEADERS != 0 {
                let (stream, first_flags, bytes) = block.take().unwrap();
                let list = dec.decode(&bytes).expect("h2 can decode it");
                dec_table_is_empty(&mut dec);
                let list = list
                    .into_iter()
                    .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
                    .collect();
                lists.push((stream, first_flags, list));
            }
        }
        assert!(block.is_none());
        lists
    }

    /// Index 62 (the first dynamic entry) does not decode: nothing was indexed.
    fn dec_table_is_empty(dec: &mut Decoder<'_>) {
        assert!(dec.decode(&[0x80 | 62]).is_err());
    }

    fn request(authority: Option<&str>) -> Vec<(&str, &str)> {
        let mut v = vec![(":method", "POST"), (":scheme", "http")];
        if let Some(a) = authority {
            v.push((":authority", a));
        }
        v.push((":path", "/grpc.health.v1.Health/Check"));
        v.push(("content-type", "application/grpc"));
        v.push(("te", "trailers"));
        v
    }

    fn owned(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn with_authority(v: &[(&str, &str)], a: &str) -> Vec<(String, String)> {
        let mut v = owned(v);
        for (n, val) in v.iter_mut() {
            if n == ":authority" {
                *val = a.to_string();
            }
        }
        v
    }

    /// A connection's first bytes: the preface and an empty SETTINGS.
    fn start() -> Vec<u8> {
        let mut v = PREFACE.to_vec();
        v.extend(frame(SETTINGS, 0, 0, &[]));
        v
    }

    #[test]
    fn a_path_authority_becomes_localhost() {
        for a in [
            "/tmp/x/tend.sock",
            "%2Ftmp%2Fx%2Ftend.sock",
            "",
            "a b",
            "[zz",
        ] {
            let req = request(Some(a));
            let mut input = start();
            input.extend(frame(
                HEADERS,
                END_HEADERS,
                1,
                &hpack(&mut Encoder::new(), &req),
            ));
            let lists = header_lists(&all(&input).unwrap());
            assert_eq!(lists.len(), 1);
            assert_eq!(lists[0].2, with_authority(&req, "localhost"), "{a:?}");
        }
    }

    #[test]
    fn a_valid_authority_is_kept() {
        for a in ["localhost:1234", "localhost", "127.0.0.1:80", "[::1]:5"] {
            let req = request(Some(a));
            let mut input = start();
            input.extend(frame(
                HEADERS,
                END_HEADERS,
                1,
                &hpack(&mut Encoder::new(), &req),
            ));
            assert_eq!(header_lists(&all(&input).unwrap())[0].2, owned(&req));
        }
    }

    #[test]
    fn an_absent_authority_is_added_to_requests_only() {
        let req = request(None);
        let trailers = [("grpc-status", "0")];
        let mut enc = Encoder::new();
        let mut input = start();
        input.extend(frame(HEADERS, END_HEADERS, 1, &hpack(&mut enc, &req)));
        input.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &hpack(&mut enc, &trailers),
        ));
        let lists = header_lists(&all(&input).unwrap());
        let mut want = vec![(":authority".to_string(), "localhost".to_string())];
        want.extend(owned(&req));
        assert_eq!(lists[0].2, want);
        assert_eq!(lists[1].2, owned(&trailers));
        assert_eq!(lists[1].1 & END_STREAM, END_STREAM);
    }

    #[test]
    fn data_and_other_frames_pass_through_byte_identical() {
        let mut input = start();
        input.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &hpack(&mut Encoder::new(), &request(Some("localhost"))),
        ));
        let mut big = vec![0u8; 100_000];
        rand::rngs::StdRng::seed_from_u64(1).fill(&mut big[..]);
        let mut tail = Vec::new();
        tail.extend(frame(DATA, 0, 1, &[0, 0, 0, 0, 5, 1, 2, 3, 4, 5]));
        tail.extend(frame(DATA, PADDED, 1, &[3, 9, 9, 0, 0, 0]));
        tail.extend(frame(DATA, 0, 1, &big));
        tail.extend(frame(0x8, 0, 0, &[0, 0, 1, 0])); // WINDOW_UPDATE
        tail.extend(frame(0x6, 0, 0, &[1; 8])); // PING
        tail.extend(frame(DATA, END_STREAM, 1, &[]));
        tail.extend(frame(0xfa, 0xff, 7, b"unknown type")); // unknown: ignored by h2
        input.extend_from_slice(&tail);
        for (chunks, out) in [
            (&[1 << 20][..], 1 << 20),
            (&[1][..], 1),
            (&[7, 1000, 3][..], 8192),
            (&[65536][..], 100),
        ] {
            let out = drive(&input, chunks, out).unwrap();
            assert!(out.ends_with(&tail), "chunks {chunks:?}");
            assert_eq!(&out[..start().len()], &start()[..]);
        }
    }

    #[test]
    fn byte_by_byte_gives_the_same_as_all_at_once() {
        let mut enc = Encoder::new();
        let mut input = start();
        let req = request(Some("/tmp/x/tend.sock"));
        input.extend(frame(HEADERS, END_HEADERS, 1, &hpack(&mut enc, &req)));
        input.extend(frame(DATA, END_STREAM, 1, &[0, 0, 0, 0, 0]));
        // The same again on stream 3: now mostly references to the dynamic table.
        let block = hpack(&mut enc, &req);
        let (a, b) = block.split_at(block.len() / 2);
        input.extend(frame(HEADERS, 0, 3, a));
        input.extend(frame(CONTINUATION, END_HEADERS, 3, b));
        input.extend(frame(DATA, END_STREAM, 3, &[0, 0, 0, 0, 0]));
        let once = all(&input).unwrap();
        assert_eq!(drive(&input, &[1], 1).unwrap(), once);
        assert_eq!(drive(&input, &[1], 1 << 16).unwrap(), once);
        assert_eq!(drive(&input, &[2, 3, 5], 7).unwrap(), once);
        let lists = header_lists(&once);
        assert_eq!(lists.len(), 2);
        assert_eq!(lists[0].2, with_authority(&req, "localhost"));
        assert_eq!(lists[1].2, with_authority(&req, "localhost"));
        assert_eq!(lists[1].0, 3);
    }

    #[test]
    fn padding_is_stripped() {
        let req = request(Some("/tmp/x/tend.sock"));
        let block = hpack(&mut Encoder::new(), &req);
        let mut payload = vec![7];
        payload.extend_from_slice(&block);
        payload.extend_from_slice(&[0; 7]);
        let mut input = start();
        input.extend(frame(
            HEADERS,
            END_HEADERS | PADDED | END_STREAM,
            1,
            &payload,
        ));
        let lists = header_lists(&all(&input).unwrap());
        assert_eq!(lists[0].2, with_authority(&req, "localhost"));
        assert_eq!(lists[0].1, END_HEADERS | END_STREAM);
    }

    #[test]
    fn priority_is_kept() {
        let req = request(Some("/tmp/x/tend.sock"));
        let block = hpack(&mut Encoder::new(), &req);
        let prio = [0x80, 0, 0, 0, 42];
        let mut payload = vec![2];
        payload.extend_from_slice(&prio);
        payload.extend_from_slice(&block);
        payload.extend_from_slice(&[0; 2]);
        let mut input = start();
        input.extend(frame(HEADERS, END_HEADERS | PADDED | PRIORITY, 1, &payload));
        let out = all(&input).unwrap();
        let f = &frames(&out)[1];
        assert_eq!((f.0, f.1), (HEADERS, END_HEADERS | PRIORITY));
        assert_eq!(&f.3[..5], &prio);
        assert_eq!(header_lists(&out)[0].2, with_authority(&req, "localhost"));
    }

    #[test]
    fn continuations_are_joined_and_large_blocks_split() {
        let big = "v".repeat(40_000);
        let mut req = request(Some("/tmp/x/tend.sock"));
        req.push(("x-big", &big));
        let block = hpack(&mut Encoder::new(), &req);
        let mut input = start();
        let mut first = vec![1];
        first.extend_from_slice(&block[..10]);
        first.push(0);
        input.extend(frame(HEADERS, PADDED | END_STREAM, 1, &first));
        input.extend(frame(CONTINUATION, 0, 1, &block[10..20]));
        input.extend(frame(CONTINUATION, 0, 1, &[]));
        input.extend(frame(CONTINUATION, END_HEADERS, 1, &block[20..]));
        input.extend(frame(DATA, END_STREAM, 1, b"x"));
        let out = all(&input).unwrap();
        let fs = frames(&out);
        let kinds: Vec<_> = fs.iter().map(|f| (f.0, f.1)).collect();
        assert_eq!(
            kinds,
            [
                (SETTINGS, 0),
                (HEADERS, END_STREAM),
                (CONTINUATION, 0),
                (CONTINUATION, END_HEADERS),
                (DATA, END_STREAM)
            ]
        );
        assert_eq!(fs[1].3.len(), MAX_FRAME_OUT);
        assert_eq!(header_lists(&out)[0].2, with_authority(&req, "localhost"));
    }

    #[test]
    fn dynamic_table_size_updates() {
        let req = request(Some("/tmp/x/tend.sock"));
        let mut enc = Encoder::new();
        let mut input = start();
        input.extend(frame(HEADERS, END_HEADERS, 1, &hpack(&mut enc, &req)));
        // Size updates to 0 (emptying the table) and back to 4096 (0x3f 0xe1 0x1f), then
        // literals that are indexed anew.
        let mut block = vec![0x20, 0x3f, 0xe1, 0x1f];
        let mut enc2 = Encoder::new();
        block.extend(hpack(&mut enc2, &req));
        input.extend(frame(HEADERS, END_HEADERS, 3, &block));
        // References to what the second block indexed.
        input.extend(frame(HEADERS, END_HEADERS, 5, &hpack(&mut enc2, &req)));
        let lists = header_lists(&all(&input).unwrap());
        assert_eq!(lists.len(), 3);
        for l in &lists {
            assert_eq!(l.2, with_authority(&req, "localhost"));
        }
        // Over SETTINGS_HEADER_TABLE_SIZE (4096): 0x3f 0xe2 0x1f is 4097.
        let mut input = start();
        let mut block = vec![0x3f, 0xe2, 0x1f];
        block.extend(hpack(&mut Encoder::new(), &req));
        input.extend(frame(HEADERS, END_HEADERS, 1, &block));
        assert!(all(&input).is_err());
    }

    #[test]
    fn huffman_coded_values() {
        // RFC 7541 C.4.1 and C.4.2: Huffman-coded, the second referring to the dynamic table.
        let c41 = [
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
            0x90, 0xf4, 0xff,
        ];
        let c42 = [
            0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
        ];
        // :method POST, :scheme http, :path /, :authority "/a" Huffman-coded (0x60 0x7f).
        let path = [0x83, 0x86, 0x84, 0x01, 0x82, 0x60, 0x7f];
        let mut input = start();
        input.extend(frame(HEADERS, END_HEADERS, 1, &c41));
        input.extend(frame(HEADERS, END_HEADERS, 3, &c42));
        input.extend(frame(HEADERS, END_HEADERS, 5, &path));
        let lists = header_lists(&all(&input).unwrap());
        let get = |n: usize| -> Vec<(&str, &str)> {
            lists[n]
                .2
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect()
        };
        let base = [(":method", "GET"), (":scheme", "http"), (":path", "/")];
        let mut want = base.to_vec();
        want.push((":authority", "www.example.com"));
        assert_eq!(get(0), want);
        want.push(("cache-control", "no-cache"));
        assert_eq!(get(1), want);
        assert_eq!(
            get(2),
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "localhost")
            ]
        );
    }

    #[test]
    fn broken_input_fails_the_read() {
        let block = hpack(&mut Encoder::new(), &request(Some("x")));
        let cases: Vec<Vec<u8>> = vec![
            // Another frame inside a header block.
            [frame(HEADERS, 0, 1, &block), frame(DATA, 0, 1, b"x")].concat(),
            // A CONTINUATION of another stream.
            [
                frame(HEADERS, 0, 1, &block),
                frame(CONTINUATION, END_HEADERS, 3, &[]),
            ]
            .concat(),
            // An index nobody has.
            frame(HEADERS, END_HEADERS, 1, &[0x80 | 100]),
            // Padding longer than the frame.
            frame(HEADERS, END_HEADERS | PADDED, 1, &[200, 0x82]),
            frame(HEADERS, END_HEADERS | PADDED, 1, &[]),
            frame(HEADERS, END_HEADERS | PRIORITY, 1, &[0, 0]),
            // Bad Huffman padding.
            frame(
                HEADERS,
                END_HEADERS,
                1,
                &[0x83, 0x86, 0x84, 0x01, 0x82, 0x60, 0x7e],
            ),
            // A block over the limit, in CONTINUATIONs.
            [
                frame(HEADERS, 0, 1, &[]),
                (0..70)
                    .flat_map(|_| frame(CONTINUATION, 0, 1, &[0x82; 16_000]))
                    .collect(),
            ]
            .concat(),
        ];
        for (i, c) in cases.iter().enumerate() {
            let mut input = start();
            input.extend_from_slice(c);
            assert!(all(&input).is_err(), "case {i}");
        }
    }

    #[test]
    fn a_decoded_list_is_bounded() {
        // One 4000-byte entry, then 300 references to it: 1.2 MB decoded from 300 bytes.
        let mut enc = Encoder::new();
        let big = "v".repeat(4000);
        let mut block = hpack(&mut enc, &[("x-big", big.as_str())]);
        block.extend(std::iter::repeat_n(0x80 | 62, 300));
        let mut input = start();
        input.extend(frame(HEADERS, END_HEADERS, 1, &block));
        assert!(all(&input).is_err());
    }

    #[test]
    fn refusals_are_diagnosed() {
        let d = |v: &[(&str, &str)]| {
            let f: Vec<_> = v
                .iter()
                .map(|(a, b)| (a.as_bytes().to_vec(), b.as_bytes().to_vec()))
                .collect();
            diagnose(&f)
        };
        assert_eq!(d(&request(Some("localhost"))), None);
        assert!(d(&[(":method", "GET"), (":path", "/")])
            .unwrap()
            .contains(":scheme"));
        assert!(d(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            ("te", "gzip")
        ])
        .unwrap()
        .contains("te"));
        assert!(d(&[(":method", "GET"), ("a", "b"), (":path", "/")])
            .unwrap()
            .contains("after a regular header"));
        assert!(d(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            ("Up", "b")
        ])
        .unwrap()
        .contains("invalid header name"));
    }

    #[test]
    fn what_the_server_sends_is_followed() {
        let mut a = LocalAuthority::new(Feed {
            data: vec![],
            pos: 0,
            chunks: vec![1],
            turn: 0,
        });
        a.diagnoses.push_back((1, "why".into()));
        let mut sent = frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
        sent.extend(frame(RST_STREAM, 0, 3, &8u32.to_be_bytes()));
        sent.extend(frame(RST_STREAM, 0, 1, &1u32.to_be_bytes()));
        sent.extend(frame(GOAWAY, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 1, b'x']));
        for b in sent.chunks(1) {
            a.sent(b);
        }
        assert!(
            a.diagnoses.is_empty(),
            "stream 1's reset was matched with its diagnosis"
        );
        assert_eq!((a.tx.got, a.tx.skip), (0, 0));
        assert!(a.tx.capture.is_none());
    }

    /// Random and mutated frame sequences: the adapter returns bytes or an error, never panics.
    #[test]
    fn fuzz_never_panics() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x7e9d);
        let (mut ok, mut err) = (0, 0);
        for i in 0..12_000 {
            let mut input = PREFACE.to_vec();
            if i % 2 == 0 {
                let n = rng.random_range(0..600);
                input.extend((0..n).map(|_| rng.random::<u8>()));
            } else {
                let mut enc = Encoder::new();
                let mut frames = Vec::new();
                for s in 0..rng.random_range(1..6u32) {
                    let req = request(Some(["/tmp/x", "localhost:1", "%2F"][s as usize % 3]));
                    let block = hpack(&mut enc, &req);
                    let cut = rng.random_range(0..=block.len());
                    let flags = rng.random::<u8>() & (PADDED | PRIORITY | END_STREAM);
                    let mut p = Vec::new();
                    if flags & PADDED != 0 {
                        p.push(3);
                    }
                    if flags & PRIORITY != 0 {
                        p.extend_from_slice(&[0, 0, 0, 1, 16]);
                    }
                    p.extend_from_slice(&block[..cut]);
                    if flags & PADDED != 0 {
                        p.extend_from_slice(&[0; 3]);
                    }
                    frames.extend(frame(HEADERS, flags, 2 * s + 1, &p));
                    frames.extend(frame(CONTINUATION, END_HEADERS, 2 * s + 1, &block[cut..]));
                    frames.extend(frame(DATA, END_STREAM, 2 * s + 1, &[0, 0, 0, 0, 0]));
                }
                for _ in 0..rng.random_range(1..8) {
                    let at = rng.random_range(0..frames.len());
                    match rng.random_range(0..4) {
                        0 => frames[at] = rng.random(),
                        1 => frames[at] ^= 1 << rng.random_range(0..8),
                        2 => frames.truncate(at),
                        _ => frames.insert(at, rng.random()),
                    }
                    if frames.is_empty() {
                        break;
                    }
                }
                input.extend(frames);
            }
            let chunks: Vec<usize> = (0..3).map(|_| rng.random_range(1..64)).collect();
            let out_chunk = rng.random_range(1..4096);
            match drive(&input, &chunks, out_chunk) {
                Ok(out) => {
                    assert!(out.starts_with(PREFACE));
                    ok += 1;
                }
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                    err += 1;
                }
            }
            // And the server direction, with random bytes.
            let mut a = LocalAuthority::new(Feed {
                data: vec![],
                pos: 0,
                chunks: vec![1],
                turn: 0,
            });
            a.sent(&input[PREFACE.len()..]);
        }
        assert!(ok > 1000 && err > 1000, "ok {ok}, err {err}");
    }
}
