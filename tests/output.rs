//! Output logs: stream separation, byte-exact replay, gaps, concurrent and stalled readers, Output.
use std::time::Duration;

use sha2::{Digest, Sha256};
use tend::pb;
use tokio_stream::StreamExt;

use crate::helper::*;

#[tokio::test]
async fn stdout_and_stderr_are_separate_streams() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let got = run(&mut c, sh("echo out; echo err >&2; echo out2")).await;
    assert_eq!(got.stdout, b"out\nout2\n");
    assert_eq!(got.stderr, b"err\n");
    assert!(got.started.is_some());
    assert_eq!(got.exit.unwrap().exit_code, Some(0));
}

#[tokio::test]
async fn fifty_megabytes_replay_byte_exact_from_offset_zero() {
    let d = Daemon::with_args(&["--tail-bytes", "67108864"]).await;
    let mut c = d.c().await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("data");
    let data: Vec<u8> = (0..(50u32 << 20) + 12345)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let id = start(&mut c, spec(&["cat", file.to_str().unwrap()])).await;
    c.wait(pb::WaitRequest {
        id: id.clone(),
        timeout_ms: 60_000,
    })
    .await
    .unwrap();
    let got = connect(&mut c, &id, 0).await;
    assert!(got.gaps.is_empty(), "{:?}", got.gaps);
    assert_eq!(got.stdout.len(), data.len());
    assert_eq!(Sha256::digest(&got.stdout), Sha256::digest(&data));
    // And from an offset in the middle.
    let off = 33_000_000u64;
    let got = connect(&mut c, &id, off).await;
    assert_eq!(
        Sha256::digest(&got.stdout),
        Sha256::digest(&data[off as usize..])
    );
}

#[tokio::test]
async fn an_overrun_ring_gives_a_gap_of_the_exact_size() {
    let d = Daemon::with_args(&["--head-bytes", "1000", "--tail-bytes", "4000"]).await;
    let mut c = d.c().await;
    let id = start(&mut c, sh("head -c 100000 /dev/zero | tr '\\0' x")).await;
    c.wait(pb::WaitRequest {
        id: id.clone(),
        timeout_ms: 30_000,
    })
    .await
    .unwrap();
    let got = connect(&mut c, &id, 0).await;
    assert_eq!(got.gaps.len(), 1, "{:?}", got.gaps);
    let g = &got.gaps[0];
    assert_eq!((g.offset, g.length), (1000, 95_000));
    assert_eq!(got.stdout.len(), 5000);
    // A reader asking from inside the lost range gets the rest of it as a gap.
    let got = connect(&mut c, &id, 50_000).await;
    assert_eq!((got.gaps[0].offset, got.gaps[0].length), (50_000, 46_000));
    assert_eq!(got.stdout.len(), 4000);
}

#[tokio::test]
async fn two_concurrent_readers_see_the_same_bytes() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let id = start(
        &mut c,
        sh("i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done"),
    )
    .await;
    let (mut c1, mut c2) = (d.c().await, d.c().await);
    let (a, b) = tokio::join!(connect(&mut c1, &id, 0), connect(&mut c2, &id, 0));
    assert_eq!(a.stdout, b.stdout);
    let text = String::from_utf8(a.stdout).unwrap();
    assert!(text.starts_with("line 0\n") && text.ends_with("line 1999\n"));
    assert_eq!(a.exit.unwrap().exit_code, Some(0));
}

#[tokio::test]
async fn a_stalled_reader_does_not_hold_the_process_back() {
    let d = Daemon::with_args(&["--head-bytes", "0", "--tail-bytes", "65536"]).await;
    let mut c = d.c().await;
    let id = start(&mut c, sh("sleep 0.5; head -c 200000000 /dev/zero")).await;
    // Open a stream and read nothing from it while 200 MB go by.
    let mut stalled = d
        .c()
        .await
        .connect(pb::ConnectRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let w = c
        .wait(pb::WaitRequest {
            id: id.clone(),
            timeout_ms: 120_000,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        !w.timed_out,
        "the process was held back by a stalled reader"
    );
    // Now read: the reader skipped what the ring lost, and was told so.
    let mut got = Collected::default();
    while let Some(ev) = stalled.next().await {
        got.add(ev.unwrap().event);
    }
    let lost: u64 = got.gaps.iter().map(|g| g.length).sum();
    assert!(lost > 0);
    assert_eq!(lost + got.stdout.len() as u64, 200_000_000);
    assert!(got.exit.is_some());
}

#[tokio::test]
async fn output_view_has_head_tail_and_counts() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    // 100 KB of numbered lines plus one 5000-byte line.
    let id = start(
        &mut c,
        sh("i=0; while [ $i -lt 10000 ]; do printf '%09d\\n' $i; i=$((i+1)); done; head -c 5000 /dev/zero | tr '\\0' y; echo"),
    )
    .await;
    c.wait(pb::WaitRequest {
        id: id.clone(),
        timeout_ms: 60_000,
    })
    .await
    .unwrap();
    let r = c
        .output(pb::OutputRequest {
            id: id.clone(),
            options: Some(pb::OutputOptions {
                stream: pb::Stream::Stdout as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let o = &r.output[0];
    assert_eq!(o.total_bytes, 100_000 + 5001);
    assert_eq!(o.omitted_bytes, 105_001 - 2 * 16_384);
    assert!(o.truncated);
    assert_eq!((o.cut_lines, o.cut_line_bytes), (1, 5000 - 2048));
    assert!(o.text.starts_with("000000000\n000000001\n"));
    assert!(o
        .text
        .contains(&format!("[... {} bytes omitted ...]", o.omitted_bytes)));
    assert!(o.text.contains("bytes cut]"));
}

#[tokio::test]
async fn foreground_start_returns_the_exit_and_output() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let r = c
        .start(pb::StartRequest {
            spec: Some(sh("echo hi; exit 4")),
            wait_timeout_ms: 30_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.timed_out);
    let p = r.process.unwrap();
    assert_eq!(p.state, pb::ProcessState::Exited as i32);
    assert_eq!(p.exit.unwrap().exit_code, Some(4));
    let stdout = r
        .output
        .iter()
        .find(|o| o.stream == pb::Stream::Stdout as i32)
        .unwrap();
    assert_eq!(stdout.text, "hi\n");
}

#[tokio::test]
async fn connect_without_follow_stops_at_what_is_retained() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let id = start(&mut c, sh("echo first; sleep 1000")).await;
    let mut got = Collected::default();
    // Poll until the first line is there, without following.
    for _ in 0..500 {
        let mut s = c
            .connect(pb::ConnectRequest {
                id: id.clone(),
                no_follow: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        got = Collected::default();
        while let Some(ev) = tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("a no_follow stream must end by itself")
        {
            got.add(ev.unwrap().event);
        }
        if !got.stdout.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(got.stdout, b"first\n");
    assert!(got.exit.is_none());
}
