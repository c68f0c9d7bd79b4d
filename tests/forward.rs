//! Calls forwarded through tend to a loaded plugin by the `tend-plugin` header (issue 11, item
//! 5), against the real daemon and the test plugins of tests/fixtures/plugins (built by
//! `scripts/build-test-plugins`): unary calls and their errors, server-streaming and bidi calls,
//! deadlines, cancellation seen by the plugin, reflection of the plugin's services, TCP's token.
use std::path::{Path, PathBuf};
use std::time::Duration;

use tend::cli::connect::{self, Addr, LoaderClient};
use tend::pb;
use tokio_stream::StreamExt;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helper::Daemon;

/// kv.proto's messages (tests/fixtures/plugins/kv.proto).
mod kv {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetRequest {
        #[prost(string, tag = "1")]
        pub key: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetResponse {
        #[prost(string, tag = "1")]
        pub value: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutRequest {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutResponse {}
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WatchRequest {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(uint32, tag = "2")]
        pub count: u32,
        #[prost(uint32, tag = "3")]
        pub interval_ms: u32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WatchResponse {
        #[prost(uint64, tag = "1")]
        pub seq: u64,
        #[prost(string, tag = "2")]
        pub value: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EchoRequest {
        #[prost(string, tag = "1")]
        pub text: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EchoResponse {
        #[prost(string, tag = "1")]
        pub text: String,
    }
}

/// The plugin binary `var` (`KVPLUGIN_PY`, `KVPLUGIN_GO`), or `None` with a SKIP line (a
/// failure under `CI=true`).
fn plugin_binary(var: &str, _test: &str) -> Option<PathBuf> {
    let file = var.trim_start_matches("KVPLUGIN_").to_lowercase();
    crate::helper::test_plugin(var, &format!("kvplugin-{file}"))
}

/// A daemon with the plugin `binary` loaded as `name`, a channel to the daemon's socket and a
/// LoaderClient.
async fn with_plugin(
    d: &Daemon,
    name: &str,
    binary: &Path,
) -> (Channel, LoaderClient, pb::PluginInfo) {
    let mut loader = connect::loader_client(&Addr::Unix(d.socket()), None)
        .await
        .expect("connect to tend");
    let info = loader
        .load(pb::LoadRequest {
            spec: Some(pb::PluginSpec {
                name: name.into(),
                binary: binary.display().to_string(),
                ..Default::default()
            }),
        })
        .await
        .expect("load the plugin")
        .into_inner()
        .plugin
        .unwrap();
    assert_eq!(info.state, pb::PluginState::Serving as i32, "{info:?}");
    let ch = connect::channel(&Addr::Unix(d.socket())).await.unwrap();
    (ch, loader, info)
}

/// `msg` for the plugin `plugin`.
fn to<T>(plugin: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("tend-plugin", plugin.parse().unwrap());
    r
}

async fn unary<Q, R>(ch: &Channel, path: &'static str, r: tonic::Request<Q>) -> Result<R, Status>
where
    Q: prost::Message + Send + Sync + 'static,
    R: prost::Message + Default + Send + Sync + 'static,
{
    let mut g = tonic::client::Grpc::new(ch.clone());
    g.ready().await.unwrap();
    g.unary(
        r,
        PathAndQuery::from_static(path),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .map(|r| r.into_inner())
}

async fn watch(
    ch: &Channel,
    r: tonic::Request<kv::WatchRequest>,
) -> Result<tonic::Streaming<kv::WatchResponse>, Status> {
    let mut g = tonic::client::Grpc::new(ch.clone());
    g.ready().await.unwrap();
    g.server_streaming(
        r,
        PathAndQuery::from_static("/kv.KV/Watch"),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .map(|r| r.into_inner())
}

/// The plugin's stderr so far.
async fn stderr(loader: &mut LoaderClient, name: &str) -> String {
    let mut logs = loader
        .logs(pb::LogsRequest {
            name: name.into(),
            stream: pb::Stream::Stderr as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(ev) = logs.next().await {
        if let Some(pb::process_event::Kind::Data(d)) = ev.unwrap().event.unwrap().kind {
            out.extend_from_slice(&d.data);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Wait until the plugin's stderr contains `want`; the log.
async fn logged(loader: &mut LoaderClient, name: &str, want: &str) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        last = stderr(loader, name).await;
        if last.contains(want) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the plugin never logged {want:?}; its stderr:\n{last}");
}

/// The services that reflection (v1alpha, which every test plugin serves) lists over `ch`,
/// asked with the header `plugin` when given.
async fn reflected(ch: &Channel, plugin: Option<&str>) -> Result<Vec<String>, Status> {
    use tonic_reflection::pb::v1alpha::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut r = tonic::Request::new(tokio_stream::iter([ask]));
    if let Some(p) = plugin {
        r.metadata_mut().insert("tend-plugin", p.parse().unwrap());
    }
    let mut answers = ServerReflectionClient::new(ch.clone())
        .server_reflection_info(r)
        .await?
        .into_inner();
    let mut names = Vec::new();
    while let Some(a) = answers.next().await {
        if let Some(MessageResponse::ListServicesResponse(l)) = a?.message_response {
            names.extend(l.service.into_iter().map(|s| s.name));
        }
    }
    names.sort();
    Ok(names)
}

/// grpcurl, for the commands an operator types (the project's venv, which scripts/test fills).
fn grpcurl() -> Option<PathBuf> {
    Some(Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/grpcurl")).filter(|p| p.exists())
}

#[tokio::test]
async fn unary_calls_their_errors_and_reflection_reach_the_plugin_through_tend() {
    let test = "unary_calls_their_errors_and_reflection_reach_the_plugin_through_tend";
    let Some(bin) = plugin_binary("KVPLUGIN_PY", test) else {
        return;
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let tcp = format!("127.0.0.1:{port}");
    let d = Daemon::with_args(&["--listen", &format!("tcp://{tcp}")]).await;
    let (ch, _loader, _) = with_plugin(&d, "kv", &bin).await;

    // Put, then Get, through tend.
    let put: kv::PutResponse = unary(
        &ch,
        "/kv.KV/Put",
        to(
            "kv",
            kv::PutRequest {
                key: "a".into(),
                value: "1".into(),
            },
        ),
    )
    .await
    .unwrap();
    assert_eq!(put, kv::PutResponse {});
    let got: kv::GetResponse = unary(
        &ch,
        "/kv.KV/Get",
        to("kv", kv::GetRequest { key: "a".into() }),
    )
    .await
    .unwrap();
    assert_eq!(got.value, "1");

    // The plugin's own error, with its message.
    let e = unary::<_, kv::GetResponse>(
        &ch,
        "/kv.KV/Get",
        to(
            "kv",
            kv::GetRequest {
                key: "nokey".into(),
            },
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert_eq!(e.message(), "no key 'nokey'");

    // A plugin that is not loaded: tend's NotFound, naming it.
    let e = unary::<_, kv::GetResponse>(
        &ch,
        "/kv.KV/Get",
        to("nope", kv::GetRequest { key: "a".into() }),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(
        e.message().contains("\"nope\"") && e.message().contains("tend plugin ls"),
        "{}",
        e.message()
    );
    // Without the header, kv.KV is no service of tend's.
    let e = unary::<_, kv::GetResponse>(
        &ch,
        "/kv.KV/Get",
        tonic::Request::new(kv::GetRequest { key: "a".into() }),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented, "{e:?}");

    // Reflection with the header is the plugin's; without, tend's.
    let theirs = reflected(&ch, Some("kv")).await.unwrap();
    assert!(theirs.contains(&"kv.KV".to_string()), "{theirs:?}");
    assert!(
        !theirs.iter().any(|s| s.starts_with("tend.v1.Process")),
        "{theirs:?}"
    );
    let ours = reflected(&ch, None).await.unwrap();
    assert!(
        ours.contains(&"tend.v1.ProcessService".to_string()),
        "{ours:?}"
    );
    assert!(!ours.contains(&"kv.KV".to_string()), "{ours:?}");

    // On TCP a forwarded call needs tend's token like any other.
    let tcp_ch = connect::channel(&Addr::Tcp(tcp.clone())).await.unwrap();
    let e = unary::<_, kv::GetResponse>(
        &tcp_ch,
        "/kv.KV/Get",
        to("kv", kv::GetRequest { key: "a".into() }),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let token = std::fs::read_to_string(d.dir.join("token")).unwrap();
    let mut r = to("kv", kv::GetRequest { key: "a".into() });
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", token.trim()).parse().unwrap(),
    );
    let got: kv::GetResponse = unary(&tcp_ch, "/kv.KV/Get", r).await.unwrap();
    assert_eq!(got.value, "1");

    // What an operator types: grpcurl on the unix socket, which sends the socket's path as
    // :authority.
    let grpcurl = grpcurl();
    let missing = grpcurl
        .is_none()
        .then(|| "no .venv/bin/grpcurl (scripts/install-deps)".into());
    let (true, Some(grpcurl)) = (crate::helper::require("grpcurl", missing), grpcurl) else {
        return;
    };
    let sock = d.socket().display().to_string();
    let run = |args: &[&str]| {
        let o = std::process::Command::new(&grpcurl)
            .args(["-H", "tend-plugin: kv", "-plaintext"])
            .args(args)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let (ok, out) = run(&["-unix", &sock, "list"]);
    assert!(ok && out.lines().any(|l| l == "kv.KV"), "{out}");
    let (ok, out) = run(&["-d", r#"{"key":"a"}"#, "-unix", &sock, "kv.KV/Get"]);
    assert!(ok && out.contains(r#""value": "1""#), "{out}");
}

#[tokio::test]
async fn streams_deadlines_and_cancellation_pass_through() {
    let test = "streams_deadlines_and_cancellation_pass_through";
    let Some(bin) = plugin_binary("KVPLUGIN_PY", test) else {
        return;
    };
    let d = Daemon::start().await;
    let (ch, mut loader, _) = with_plugin(&d, "kv", &bin).await;

    // A server-streaming call, to its end.
    let all: Vec<kv::WatchResponse> = watch(
        &ch,
        to(
            "kv",
            kv::WatchRequest {
                key: "w".into(),
                count: 3,
                interval_ms: 10,
            },
        ),
    )
    .await
    .unwrap()
    .collect::<Result<_, _>>()
    .await
    .unwrap();
    let got: Vec<_> = all.iter().map(|m| (m.seq, m.value.as_str())).collect();
    assert_eq!(got, [(1, "w-1"), (2, "w-2"), (3, "w-3")]);

    // Cancelled by the client midway: the plugin sees its call cancelled.
    let mut s = watch(
        &ch,
        to(
            "kv",
            kv::WatchRequest {
                key: "gone".into(),
                count: 0,
                interval_ms: 20,
            },
        ),
    )
    .await
    .unwrap();
    for want in 1..=2 {
        assert_eq!(s.next().await.unwrap().unwrap().seq, want);
    }
    drop(s);
    logged(&mut loader, "kv", "Watch 'gone' cancelled after seq").await;

    // The client's deadline goes to the plugin, which ends the call with DEADLINE_EXCEEDED.
    let mut r = to(
        "kv",
        kv::WatchRequest {
            key: "late".into(),
            count: 0,
            interval_ms: 20,
        },
    );
    r.set_timeout(Duration::from_millis(400));
    let mut s = watch(&ch, r).await.unwrap();
    let mut seen = 0;
    let end = loop {
        match s.next().await {
            Some(Ok(_)) => seen += 1,
            Some(Err(e)) => break e,
            None => panic!("the stream ended without the deadline's status after {seen}"),
        }
    };
    assert_eq!(end.code(), Code::DeadlineExceeded, "{end:?}");
    assert!(seen >= 3, "{seen} messages before the deadline");

    // Bidi: every message answered in order, then the end when the client closes its side.
    // (The first message goes before the call is awaited: the Python plugin sends its response
    // headers with its first answer, and tonic's call returns on the headers.)
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(kv::EchoRequest { text: "one".into() })
        .await
        .unwrap();
    let mut g = tonic::client::Grpc::new(ch.clone());
    g.ready().await.unwrap();
    let mut echo = g
        .streaming::<_, kv::EchoRequest, kv::EchoResponse, _>(
            to("kv", tokio_stream::wrappers::ReceiverStream::new(rx)),
            PathAndQuery::from_static("/kv.KV/Echo"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap()
        .into_inner();
    for text in ["one", "two", "three"] {
        if text != "one" {
            tx.send(kv::EchoRequest { text: text.into() })
                .await
                .unwrap();
        }
        assert_eq!(echo.next().await.unwrap().unwrap().text, text);
    }
    drop(tx);
    assert!(echo.next().await.is_none());
    logged(&mut loader, "kv", "Echo done after 3 messages").await;
}

/// gRPC's length-prefixed message.
fn grpc_frame(m: &impl prost::Message) -> bytes::Bytes {
    let body = m.encode_to_vec();
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(0);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out.into()
}

/// A bidi call whose client resets its stream (RST_STREAM CANCEL, what a gRPC client sends on
/// cancel, with its side still open) is cancelled in the plugin. With the Go plugin, whose Echo
/// logs how it ended: a Recv that fails, not EOF (the client never half-closed).
#[tokio::test]
async fn a_bidi_call_reset_by_its_client_is_cancelled_in_the_plugin() {
    let test = "a_bidi_call_reset_by_its_client_is_cancelled_in_the_plugin";
    let Some(bin) = plugin_binary("KVPLUGIN_GO", test) else {
        return;
    };
    let d = Daemon::start().await;
    let (_ch, mut loader, _) = with_plugin(&d, "kvgo", &bin).await;

    let io = tokio::net::UnixStream::connect(d.socket()).await.unwrap();
    let (client, conn) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = http::Request::post("http://localhost/kv.KV/Echo")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("tend-plugin", "kvgo")
        .body(())
        .unwrap();
    let (resp, mut send) = client.send_request(req, false).unwrap();
    send.send_data(grpc_frame(&kv::EchoRequest { text: "a".into() }), false)
        .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = Vec::new();
    let mut sent = 1;
    // Two answers (frames may split or join messages: count bytes of whole messages).
    let one = grpc_frame(&kv::EchoResponse { text: "a".into() }).len();
    while got.len() < 2 * one {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.data())
            .await
            .expect("an echo within 10 s")
            .expect("the stream open")
            .unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
        if got.len() >= one && sent == 1 {
            send.send_data(grpc_frame(&kv::EchoRequest { text: "a".into() }), false)
                .unwrap();
            sent += 1;
        }
    }
    assert_eq!(got.len(), 2 * one);
    send.send_reset(h2::Reason::CANCEL);
    let log = logged(&mut loader, "kvgo", "Echo done after 2 messages").await;
    assert!(!log.contains("Echo done after 3"), "{log}");
    // The daemon still forwards.
    let ch = connect::channel(&Addr::Unix(d.socket())).await.unwrap();
    let e = unary::<_, kv::GetResponse>(
        &ch,
        "/kv.KV/Get",
        to("kvgo", kv::GetRequest { key: "x".into() }),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
}

/// The daemon's bound on silent calls (`--first-message-ms`) applies to forwarded calls too: a
/// bidi call that sends nothing ends with tend's DEADLINE_EXCEEDED and its reason, not a bare
/// reset.
#[tokio::test]
async fn a_forwarded_call_that_sends_nothing_gets_the_daemons_first_message_status() {
    let test = "a_forwarded_call_that_sends_nothing_gets_the_daemons_first_message_status";
    let Some(bin) = plugin_binary("KVPLUGIN_PY", test) else {
        return;
    };
    let d = Daemon::with_args(&["--first-message-ms", "300"]).await;
    let (ch, _loader, _) = with_plugin(&d, "kv", &bin).await;
    let (_tx, rx) = tokio::sync::mpsc::channel::<kv::EchoRequest>(1);
    let mut g = tonic::client::Grpc::new(ch.clone());
    g.ready().await.unwrap();
    let t0 = std::time::Instant::now();
    let e = g
        .streaming::<_, kv::EchoRequest, kv::EchoResponse, _>(
            to("kv", tokio_stream::wrappers::ReceiverStream::new(rx)),
            PathAndQuery::from_static("/kv.KV/Echo"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(
        e.message().contains("no message within 300 ms"),
        "{}",
        e.message()
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}
