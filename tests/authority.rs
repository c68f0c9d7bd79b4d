//! Clients that send the unix socket's path (or its %-encoding) as HTTP/2 `:authority`, as
//! grpcurl, grpc-java and grpcio do: the daemon serves them as if they said `localhost`.
use std::time::Duration;

use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::helper::Daemon;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const CHECK: &str = "/grpc.health.v1.Health/Check";
/// An empty protobuf message in a gRPC frame: not compressed, length 0.
const EMPTY: [u8; 5] = [0, 0, 0, 0, 0];

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// What came back on a stream: its header lists, and whether it was reset.
#[derive(Debug, Default)]
struct Answer {
    headers: Vec<Vec<(String, String)>>,
    reset: Option<u32>,
}

impl Answer {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .flatten()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Health checks on one connection (`refuse-me` stands for a valid authority with `te: gzip`,
/// which h2 refuses), a stream each, written frame by frame (h2's client only
/// sends an `:authority` that is a valid `http::uri::Authority`, so it cannot be used here); the
/// requests share the encoder's dynamic table, as real clients' do.
async fn checks(d: &Daemon, authorities: &[Option<&str>]) -> Vec<Answer> {
    let mut s = UnixStream::connect(d.socket()).await.unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    let mut enc = Encoder::new();
    for (i, a) in authorities.iter().enumerate() {
        let stream = 2 * i as u32 + 1;
        let mut fields = vec![(":method", "POST"), (":scheme", "http")];
        if let Some(a) = a {
            fields.push((":authority", a));
        }
        let te = if *a == Some("refuse-me") {
            "gzip"
        } else {
            "trailers"
        };
        fields.extend([
            (":path", CHECK),
            ("content-type", "application/grpc"),
            ("te", te),
        ]);
        let block = enc.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
        out.extend(frame(0x1, 0x4, stream, &block));
        out.extend(frame(0x0, 0x1, stream, &EMPTY));
    }
    s.write_all(&out).await.unwrap();

    let mut answers: Vec<Answer> = authorities.iter().map(|_| Answer::default()).collect();
    let mut done = 0;
    let mut dec = Decoder::new();
    let mut block: Vec<u8> = Vec::new();
    let read = async {
        while done < answers.len() {
            let mut h = [0u8; 9];
            s.read_exact(&mut h)
                .await
                .expect("the daemon closed the connection");
            let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
            let (kind, flags) = (h[3], h[4]);
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; len];
            s.read_exact(&mut payload).await.unwrap();
            let Some(answer) = (stream as usize)
                .checked_sub(1)
                .map(|i| i / 2)
                .and_then(|i| answers.get_mut(i))
                .filter(|_| stream % 2 == 1)
            else {
                match kind {
                    // SETTINGS: acknowledge.
                    0x4 if flags & 0x1 == 0 => s.write_all(&frame(0x4, 0x1, 0, &[])).await.unwrap(),
                    0x7 => panic!("GOAWAY: {payload:?}"),
                    _ => {}
                }
                continue;
            };
            match kind {
                0x1 | 0x9 => {
                    let mut p = &payload[..];
                    if kind == 0x1 && flags & 0x8 != 0 {
                        let pad = p[0] as usize;
                        p = &p[1..p.len() - pad];
                    }
                    if kind == 0x1 && flags & 0x20 != 0 {
                        p = &p[5..];
                    }
                    block.extend_from_slice(p);
                    if flags & 0x4 != 0 {
                        let list = dec.decode(&block).expect("the daemon's HPACK");
                        block.clear();
                        answer.headers.push(
                            list.into_iter()
                                .map(|(n, v)| {
                                    (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap())
                                })
                                .collect(),
                        );
                    }
                }
                0x3 => {
                    answer.reset = Some(u32::from_be_bytes(payload[..4].try_into().unwrap()));
                    done += 1;
                    continue;
                }
                _ => {}
            }
            if flags & 0x1 != 0 && (kind == 0x0 || kind == 0x1) {
                done += 1;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the daemon answered within 20 s");
    answers
}

fn assert_served(a: &Answer, what: &str) {
    assert_eq!(a.reset, None, "{what}: the stream was reset: {a:?}");
    assert_eq!(a.get(":status"), Some("200"), "{what}: {a:?}");
    assert_eq!(a.get("grpc-status"), Some("0"), "{what}: {a:?}");
}

#[tokio::test]
async fn a_socket_path_as_authority_is_served() {
    let d = Daemon::start().await;
    let path = d.socket().display().to_string();
    let answers = checks(&d, &[Some(&path), Some(&path)]).await;
    assert_served(&answers[0], "the socket path");
    assert_served(&answers[1], "the socket path, from the dynamic table");
}

#[tokio::test]
async fn a_percent_encoded_socket_path_as_authority_is_served() {
    let d = Daemon::start().await;
    let path = d.socket().display().to_string().replace('/', "%2F");
    let answers = checks(&d, &[Some(&path), None, Some("localhost:1234")]).await;
    assert_served(&answers[0], "the %-encoded socket path");
    assert_served(&answers[1], "no authority");
    assert_served(&answers[2], "localhost:1234");
}

/// A request that h2 still refuses (`te: gzip`) is reset, and only that one.
#[tokio::test]
async fn a_malformed_request_is_still_refused() {
    let d = Daemon::start().await;
    let answers = checks(&d, &[Some("refuse-me"), Some("/x")]).await;
    assert_eq!(
        answers[0].reset,
        Some(1),
        "PROTOCOL_ERROR: {:?}",
        answers[0]
    );
    assert_served(&answers[1], "the next request");
}

/// The h2 crate's own client (Huffman-coded, indexed headers), through the adapter.
#[tokio::test]
async fn an_h2_client_is_served() {
    let d = Daemon::start().await;
    let io = UnixStream::connect(d.socket()).await.unwrap();
    let (client, conn) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    for _ in 0..3 {
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://localhost:1234{CHECK}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (resp, mut body) = client.send_request(req, false).unwrap();
        body.send_data(bytes::Bytes::from_static(&EMPTY), true)
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(20), resp)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        let trailers = body.trailers().await.unwrap().expect("trailers");
        assert_eq!(trailers.get("grpc-status").unwrap(), "0");
        client = client.ready().await.unwrap();
    }
}
