//! HPACK header blocks with their Huffman-coded strings written out plain (RFC 7541 5.2 and
//! Appendix B), before authority.rs hands them to loona-hpack's decoder.
//!
//! Why: loona-hpack builds its Huffman table (nested SipHash maps of all 257 codes) for every
//! string it decodes, then walks the string bit by bit with two map lookups per bit. Every client
//! Huffman-codes its header values, so that was ~20 µs of CPU per request on the unix socket
//! (a third of a unary call's daemon time in a profile). Plain strings it only copies. The code
//! is canonical, so a table of code lengths decodes it with a few array reads per bit.

/// The code length of each symbol, 0..=255 and EOS (256), from RFC 7541 Appendix B. Codes of one
/// length are consecutive in symbol order (the code is canonical), so the lengths define them.
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, //
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, //
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, //
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, //
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, //
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, //
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, //
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, //
    30,
];
const EOS: u16 = 256;
const LONGEST: usize = 30;

/// The canonical decoding table: how many codes each length has, and the symbols in code order.
struct Table {
    count: [u16; LONGEST + 1],
    symbols: [u16; 257],
}

const fn table() -> Table {
    let mut count = [0u16; LONGEST + 1];
    let mut s = 0;
    while s < 257 {
        count[LENGTHS[s] as usize] += 1;
        s += 1;
    }
    let mut next = [0u16; LONGEST + 1];
    let mut len = 1;
    while len < LONGEST {
        next[len + 1] = next[len] + count[len];
        len += 1;
    }
    let mut symbols = [0u16; 257];
    let mut s = 0;
    while s < 257 {
        let len = LENGTHS[s] as usize;
        symbols[next[len] as usize] = s as u16;
        next[len] += 1;
        s += 1;
    }
    Table { count, symbols }
}

static TABLE: Table = table();

/// Append the Huffman-coded string `src` to `out`, decoded.
fn decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    // As zlib's puff.c: `code` holds the bits since the last symbol, `first` the first code of
    // its length, `index` where that length's symbols start.
    let (mut code, mut first, mut index, mut len) = (0u32, 0u32, 0usize, 0usize);
    for &byte in src {
        for shift in (0..8).rev() {
            code |= u32::from(byte >> shift & 1);
            len += 1;
            let count = u32::from(TABLE.count[len]);
            if code.wrapping_sub(first) < count {
                let symbol = TABLE.symbols[index + (code - first) as usize];
                if symbol == EOS {
                    return Err("EOS inside a Huffman-coded string");
                }
                out.push(symbol as u8);
                (code, first, index, len) = (0, 0, 0, 0);
            } else {
                // Only EOS is 30 bits long, and it matched above.
                index += count as usize;
                first = (first + count) << 1;
                code <<= 1;
            }
        }
    }
    // Padding: fewer than 8 bits, the start of EOS (all ones). `code` was shifted once more.
    if len > 7 || (len > 0 && code >> 1 != (1 << len) - 1) {
        return Err("bad padding of a Huffman-coded string");
    }
    Ok(())
}

/// An HPACK integer at the start of `b`, with a `prefix`-bit prefix: its value and length.
fn int(b: &[u8], prefix: u8) -> Result<(usize, usize), &'static str> {
    const SHORT: &str = "a truncated integer";
    let max = (1usize << prefix) - 1;
    let v = usize::from(*b.first().ok_or(SHORT)?) & max;
    if v < max {
        return Ok((v, 1));
    }
    let mut v = v;
    // Four continuation octets reach 2^28, more than any length or index a 1 MiB block holds.
    for (i, &octet) in b.iter().enumerate().skip(1).take(4) {
        v += usize::from(octet & 0x7f) << (7 * (i - 1));
        if octet & 0x80 == 0 {
            return Ok((v, i + 1));
        }
    }
    Err(if b.len() <= 5 {
        SHORT
    } else {
        "an integer too large"
    })
}

/// Copy the string literal at the start of `b` to `out`, plain: how many bytes it took.
fn string(b: &[u8], out: &mut Vec<u8>) -> Result<usize, &'static str> {
    let (len, n) = int(b, 7)?;
    let raw = b.get(n..n + len).ok_or("a truncated string")?;
    if b[0] & 0x80 == 0 {
        out.extend_from_slice(&b[..n + len]);
        return Ok(n + len);
    }
    let mut plain = Vec::with_capacity(len * 8 / 5 + 1);
    decode(raw, &mut plain)?;
    super::authority::put_int(out, 0, 7, plain.len());
    out.extend_from_slice(&plain);
    Ok(n + len)
}

/// `block` with every Huffman-coded string plain, field representations otherwise as they were
/// (so the decoder's dynamic table sees the same inserts and the same sizes).
pub fn plain(block: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(block.len() * 2);
    let mut at = 0;
    while at < block.len() {
        let b = &block[at..];
        let prefix = match b[0] {
            o if o & 0x80 != 0 => 7,    // indexed
            o if o & 0xc0 == 0x40 => 6, // literal with incremental indexing
            o if o & 0xe0 == 0x20 => 5, // dynamic table size update
            _ => 4,                     // literal without indexing, or never indexed
        };
        let (index, n) = int(b, prefix)?;
        out.extend_from_slice(&b[..n]);
        at += n;
        if prefix == 7 || prefix == 5 {
            continue;
        }
        if index == 0 {
            at += string(&block[at..], &mut out)?;
        }
        at += string(&block[at..], &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Huffman-code `s` (the table is canonical: build each symbol's code from the lengths).
    fn encode(s: &[u8]) -> Vec<u8> {
        let mut codes = [0u32; 257];
        let (mut code, mut len) = (0u32, 0u8);
        for &symbol in TABLE.symbols.iter() {
            let l = LENGTHS[symbol as usize];
            code <<= l - len;
            len = l;
            codes[symbol as usize] = code;
            code += 1;
        }
        let (mut acc, mut bits, mut out) = (0u64, 0u32, Vec::new());
        for &c in s {
            acc = acc << LENGTHS[c as usize] | u64::from(codes[c as usize]);
            bits += u32::from(LENGTHS[c as usize]);
            while bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        if bits > 0 {
            out.push((acc << (8 - bits)) as u8 | (0xff >> bits));
        }
        out
    }

    #[test]
    fn the_table_is_the_rfcs() {
        // RFC 7541 C.4.1: "www.example.com".
        let mut out = Vec::new();
        decode(
            &[
                0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
            ],
            &mut out,
        )
        .unwrap();
        assert_eq!(out, b"www.example.com");
        // Appendix B: '0' is 00000, 'a' 00011, 0 is 1111111111000, 255 11111111111111111111101110.
        assert_eq!(encode(b"0a"), [0x00, 0xff]);
        assert_eq!(encode(&[0]), [0xff, 0xc7]);
        assert_eq!(encode(&[255]), [0xff, 0xff, 0xfb, 0xbf]);
    }

    #[test]
    fn every_byte_round_trips_and_agrees_with_loona() {
        let all: Vec<u8> = (0..=255).chain((0..=255).rev()).collect();
        let coded = encode(&all);
        let mut out = Vec::new();
        decode(&coded, &mut out).unwrap();
        assert_eq!(out, all);
        let mut loona = loona_hpack::huffman::HuffmanDecoder::new();
        assert_eq!(loona.decode(&coded).unwrap(), all);
    }

    #[test]
    fn bad_strings_are_refused() {
        // EOS itself, then padding of 8 bits, then padding that is not ones.
        assert!(decode(&[0xff, 0xff, 0xff, 0xfc], &mut Vec::new()).is_err());
        assert!(decode(&[0x1f, 0xff], &mut Vec::new()).is_err());
        assert!(decode(&[0x1e], &mut Vec::new()).is_err());
        assert!(decode(&[0x1f], &mut Vec::new()).is_ok());
    }

    #[test]
    fn blocks_keep_their_representations() {
        // RFC 7541 C.4.1 and C.3.1: the same request, Huffman-coded and plain.
        let c41 = [
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
            0x90, 0xf4, 0xff,
        ];
        let c31 = b"\x82\x86\x84\x41\x0fwww.example.com";
        assert_eq!(plain(&c41).unwrap(), c31);
        // A literal name and value, never indexed, and a size update.
        let name = encode(b"x-a");
        let value = encode(b"hello");
        let mut coded = vec![0x3f, 0xe1, 0x1f, 0x10, 0x80 | name.len() as u8];
        coded.extend(&name);
        coded.push(0x80 | value.len() as u8);
        coded.extend(&value);
        let want = [&[0x3f, 0xe1, 0x1f, 0x10, 3][..], b"x-a", &[5], b"hello"].concat();
        assert_eq!(plain(&coded).unwrap(), want);
        // Cut anywhere after the size update (a whole field), it fails.
        for cut in 4..coded.len() {
            assert!(plain(&coded[..cut]).is_err(), "cut at {cut}");
        }
    }
}
