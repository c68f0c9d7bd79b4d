//! Every bad input gets the right code and a message naming the field.
use tend::pb;
use tonic::Code;

use crate::helper::*;

#[tokio::test]
async fn bad_starts_are_refused_with_the_field_named() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let with = |f: &dyn Fn(&mut pb::StartRequest)| {
        let mut r = pb::StartRequest {
            spec: Some(spec(&["true"])),
            ..Default::default()
        };
        f(&mut r);
        r
    };
    let cases: Vec<(pb::StartRequest, Code, &str)> = vec![
        (with(&|r| r.spec = None), Code::InvalidArgument, "spec:"),
        (
            with(&|r| r.spec = Some(spec(&[]))),
            Code::InvalidArgument,
            "spec.argv:",
        ),
        (
            with(&|r| r.spec = Some(spec(&["echo", "a\0b"]))),
            Code::InvalidArgument,
            "spec.argv[1]:",
        ),
        (
            with(&|r| {
                r.spec
                    .as_mut()
                    .unwrap()
                    .env
                    .insert("X".into(), "a\0".into());
            }),
            Code::InvalidArgument,
            "spec.env[\"X\"]:",
        ),
        (
            with(&|r| r.spec.as_mut().unwrap().cwd = "/no/such/dir".into()),
            Code::InvalidArgument,
            "spec.cwd: /no/such/dir does not exist",
        ),
        (
            with(&|r| r.spec = Some(spec(&["no-such-program-xyz"]))),
            Code::NotFound,
            "not found on PATH (looked in",
        ),
        (
            with(&|r| r.spec = Some(spec(&["/no/such/program"]))),
            Code::NotFound,
            "/no/such/program does not exist",
        ),
        (
            with(&|r| r.spec.as_mut().unwrap().pty = Some(pb::PtySize { rows: 0, cols: 80 })),
            Code::InvalidArgument,
            "spec.pty:",
        ),
        (
            with(&|r| {
                r.spec.as_mut().unwrap().pty = Some(pb::PtySize {
                    rows: 24,
                    cols: u32::MAX,
                })
            }),
            Code::InvalidArgument,
            "spec.pty:",
        ),
        (
            with(&|r| r.wait_timeout_ms = u64::MAX),
            Code::InvalidArgument,
            "wait_timeout_ms:",
        ),
        (
            with(&|r| {
                r.output = Some(pb::OutputOptions {
                    head_bytes: u32::MAX,
                    ..Default::default()
                })
            }),
            Code::InvalidArgument,
            "output.head_bytes:",
        ),
        (
            with(&|r| r.spec.as_mut().unwrap().argv.push("x".repeat(2 << 20))),
            Code::InvalidArgument,
            "spec:",
        ),
        (
            with(&|r| r.spec.as_mut().unwrap().environment_id = "mars".into()),
            Code::NotFound,
            "spec.environment_id: no environment \"mars\"",
        ),
        (
            with(&|r| r.spec.as_mut().unwrap().environment_id = "e".repeat(129)),
            Code::InvalidArgument,
            "spec.environment_id: is 129 bytes; at most 128",
        ),
        (
            with(&|r| r.spec.as_mut().unwrap().environment_id = "mars\u{7}".into()),
            Code::InvalidArgument,
            "spec.environment_id: \"mars\\u{7}\" holds control characters",
        ),
    ];
    for (req, code, msg) in cases {
        let err = c.start(req).await.unwrap_err();
        assert_eq!(err.code(), code, "{}", err.message());
        assert!(
            err.message().contains(msg),
            "{:?} does not contain {msg:?}",
            err.message()
        );
    }
}

#[tokio::test]
async fn unknown_ids_and_bad_arguments_on_every_rpc() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    fn nf<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) {
        let e = r.expect_err("an error");
        assert_eq!(e.code(), Code::NotFound, "{}", e.message());
        assert!(e.message().contains("p-999"), "{}", e.message());
    }
    let id = || "p-999".to_string();
    nf(c.get(pb::GetRequest { id: id() }).await);
    nf(c.wait(pb::WaitRequest {
        id: id(),
        timeout_ms: 1,
    })
    .await);
    nf(c.output(pb::OutputRequest {
        id: id(),
        options: None,
    })
    .await);
    nf(c.signal(pb::SignalRequest {
        id: id(),
        ..Default::default()
    })
    .await);
    nf(c.send_input(pb::SendInputRequest {
        id: id(),
        data: vec![],
    })
    .await);
    nf(c.close_input(pb::CloseInputRequest { id: id() }).await);
    nf(c.resize(pb::ResizeRequest {
        id: id(),
        size: Some(pb::PtySize { rows: 1, cols: 1 }),
    })
    .await);
    nf(c.remove(pb::RemoveRequest {
        id: id(),
        force: false,
    })
    .await);
    nf(c.connect(pb::ConnectRequest {
        id: id(),
        ..Default::default()
    })
    .await);

    let live = start(&mut c, spec(&["sleep", "1000"])).await;
    let bad = |r: Result<tonic::Response<_>, tonic::Status>, field: &str| {
        let e = r.expect_err("an error");
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        assert!(
            e.message().starts_with(field),
            "{:?} should name {field}",
            e.message()
        );
    };
    bad(
        c.get(pb::GetRequest { id: String::new() })
            .await
            .map(|_| ())
            .map(tonic::Response::new),
        "id:",
    );
    bad(
        c.signal(pb::SignalRequest {
            id: live.clone(),
            signal: "SIGNOPE".into(),
            leader_only: false,
        })
        .await
        .map(|_| tonic::Response::new(())),
        "signal:",
    );
    bad(
        c.wait(pb::WaitRequest {
            id: live.clone(),
            timeout_ms: u64::MAX,
        })
        .await
        .map(|_| tonic::Response::new(())),
        "timeout_ms:",
    );
    bad(
        c.output(pb::OutputRequest {
            id: live.clone(),
            options: Some(pb::OutputOptions {
                stream: pb::Stream::Pty as i32,
                ..Default::default()
            }),
        })
        .await
        .map(|_| tonic::Response::new(())),
        "options.stream:",
    );
    bad(
        c.output(pb::OutputRequest {
            id: live.clone(),
            options: Some(pb::OutputOptions {
                max_line_bytes: u32::MAX,
                ..Default::default()
            }),
        })
        .await
        .map(|_| tonic::Response::new(())),
        "options.max_line_bytes:",
    );
    bad(
        c.list(pb::ListRequest {
            state: 77,
            ..Default::default()
        })
        .await
        .map(|_| tonic::Response::new(())),
        "state:",
    );
}
