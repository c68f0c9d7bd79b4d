//! (l) Usage: `List` with `with_usage` of 1,000 running processes (state, CPU, memory, process
//! count and listening ports of each tree), against the raw baseline of reading the same
//! processes' `/proc/<pid>/stat` once each, measured in the same rounds, interleaved.
use std::path::Path;
use std::time::{Duration, Instant};

use tend::cli::connect::{process_client, Addr};
use tend::pb;

pub const PROCESSES: usize = 1000;
const ROUNDS: usize = 20;
const WARMUP: usize = 3;

pub struct UsageResult {
    list: Vec<f64>,
    raw: Vec<f64>,
    listed: usize,
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Start `PROCESSES` sleeps on the daemon at `socket` (run with `--max-running` above it), then
/// time the two, interleaved; the sleeps are removed at the end.
pub async fn bench_usage(socket: &Path) -> UsageResult {
    let mut c = process_client(&Addr::Unix(socket.to_path_buf()), None)
        .await
        .expect("connect");
    let mut pids = Vec::with_capacity(PROCESSES);
    for i in 0..PROCESSES {
        let p = c
            .start(pb::StartRequest {
                spec: Some(pb::ProcessSpec {
                    argv: vec!["sleep".into(), "1000".into()],
                    tags: [("bench".to_string(), "usage".to_string())].into(),
                    name: format!("u{i}"),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("start a sleep")
            .into_inner()
            .process
            .unwrap();
        pids.push(p.pid);
    }
    let mut r = UsageResult {
        list: Vec::new(),
        raw: Vec::new(),
        listed: 0,
    };
    for round in 0..WARMUP + ROUNDS {
        let t = Instant::now();
        let list = c
            .list(pb::ListRequest {
                with_usage: true,
                tags: [("bench".to_string(), "usage".to_string())].into(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        let list_us = t.elapsed().as_secs_f64() * 1e6;
        let pids2 = pids.clone();
        let t = Instant::now();
        let read = tokio::task::spawn_blocking(move || {
            pids2
                .iter()
                .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok())
                .count()
        })
        .await
        .unwrap();
        let raw_us = t.elapsed().as_secs_f64() * 1e6;
        assert_eq!(read, PROCESSES, "every sleep is alive");
        if round >= WARMUP {
            r.listed = list.processes.iter().filter(|p| p.usage.is_some()).count();
            r.list.push(list_us);
            r.raw.push(raw_us);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..PROCESSES {
        let _ = c
            .remove(pb::RemoveRequest {
                id: format!("u{i}"),
                force: true,
            })
            .await;
    }
    r
}

pub fn report_usage(r: &UsageResult) {
    println!(
        "\n(l) List with usage of {PROCESSES} running processes vs reading their /proc/<pid>/stat \
         once each; {ROUNDS} rounds after {WARMUP} warm-up, interleaved"
    );
    println!("{:<40} {:>10} {:>10}", "", "median ms", "p90 ms");
    println!(
        "    {:<36} {:>10.1} {:>10.1}",
        "tend List (with_usage)",
        pct(&r.list, 0.5) / 1000.0,
        pct(&r.list, 0.9) / 1000.0
    );
    println!(
        "    {:<36} {:>10.1} {:>10.1}",
        "raw /proc/<pid>/stat reads",
        pct(&r.raw, 0.5) / 1000.0,
        pct(&r.raw, 0.9) / 1000.0
    );
    let median = pct(&r.list, 0.5) / 1000.0;
    println!(
        "    {} of {PROCESSES} with usage; List {median:.1} ms, {:.1}x the raw reads  (target <= 50 ms)  {}",
        r.listed,
        pct(&r.list, 0.5) / pct(&r.raw, 0.5).max(1.0),
        if median <= 50.0 && r.listed == PROCESSES {
            "PASS"
        } else {
            "MISS"
        }
    );
}
