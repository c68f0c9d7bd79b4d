//! Resource hints: niceness and OOM score set before the program runs (what /proc says of the
//! process, its child, and of a PTY process), the daemon's own lower OOM score that its children
//! do not inherit, the memory and pids limits in the process's cgroup and holding there, and
//! the errors: out of range, a host that cannot honour a limit, a Docker environment.
use std::path::PathBuf;

use tend::cli::connect::{self, Addr, ProcessClient};
use tend::pb;

use crate::helper::*;

/// Niceness and oom_score_adj of `pid`, from /proc.
fn hints_of(pid: u32) -> (i32, i32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After "(comm)": state is field 3, nice field 19.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let nice = rest.split_whitespace().nth(16).unwrap().parse().unwrap();
    let oom = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap();
    (nice, oom.trim().parse().unwrap())
}

/// Whether this process has capability `cap` in its effective set (the daemon it starts too).
fn capable(cap: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap() & (1 << cap) != 0
}

const CAP_SYS_NICE: u32 = 23;
const CAP_SYS_RESOURCE: u32 = 24;

fn own_oom_score_adj() -> i32 {
    hints_of(std::process::id()).1
}

/// A script printing its shell's own niceness and OOM score first thing, then its child's.
const REPORT: &str = "echo $(cut -d' ' -f19 /proc/$$/stat) $(cat /proc/$$/oom_score_adj); \
                      sh -c 'echo $(cut -d\" \" -f19 /proc/$$/stat) $(cat /proc/$$/oom_score_adj)'";

fn hinted(mut spec: pb::ProcessSpec, nice: i32, oom: i32) -> pb::ProcessSpec {
    spec.nice = Some(nice);
    spec.oom_score_adj = Some(oom);
    spec
}

async fn get(c: &mut ProcessClient, id: &str) -> pb::ProcessInfo {
    c.get(pb::GetRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .process
        .unwrap()
}

#[tokio::test]
async fn nice_and_oom_score_adj_hold_from_the_first_instruction_and_are_inherited() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let out = run(&mut c, hinted(sh(REPORT), 10, 500)).await;
    assert_eq!(out.exit.as_ref().unwrap().exit_code, Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "10 500\n10 500\n");

    // Seen from outside, on a running leader and its child; and given back by Get.
    let id = start(&mut c, hinted(sh("sleep 1000 & exec sleep 1000"), 7, 321)).await;
    let p = get(&mut c, &id).await;
    assert_eq!((p.nice, p.oom_score_adj), (Some(7), Some(321)));
    assert_eq!(p.limits, None);
    eventually(10, "the leader and its child", || group(p.pid).len() == 2).await;
    for pid in group(p.pid) {
        assert_eq!(hints_of(pid), (7, 321), "pid {pid}");
    }
    c.remove(pb::RemoveRequest { id, force: true })
        .await
        .unwrap();

    // A PTY process too; with the privilege, below 0 as well.
    let nice = if capable(CAP_SYS_NICE) { -5 } else { 3 };
    let oom = if capable(CAP_SYS_RESOURCE) { -200 } else { 200 };
    let mut spec = hinted(sh(REPORT), nice, oom);
    spec.pty = Some(pb::PtySize { rows: 24, cols: 80 });
    let out = run(&mut c, spec).await;
    let text = String::from_utf8_lossy(&out.pty).replace('\r', "");
    assert_eq!(text, format!("{nice} {oom}\n{nice} {oom}\n"));
}

#[tokio::test]
async fn hints_the_daemon_may_not_set_are_refused_saying_what_it_needs() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let mut cases = Vec::new();
    if !capable(CAP_SYS_NICE) {
        cases.push((
            hinted(sh("true"), -5, 0),
            "spec.nice: -5 is below 0",
            "CAP_SYS_NICE",
        ));
    }
    if !capable(CAP_SYS_RESOURCE) {
        let mut s = sh("true");
        s.oom_score_adj = Some(-500);
        s.pty = Some(pb::PtySize { rows: 24, cols: 80 });
        cases.push((s, "spec.oom_score_adj: -500", "CAP_SYS_RESOURCE"));
    }
    if cases.is_empty() {
        eprintln!("SKIP hints_the_daemon_may_not_set: tend has CAP_SYS_NICE and CAP_SYS_RESOURCE");
        return;
    }
    for (spec, starts, needs) in cases {
        let err = c
            .start(pb::StartRequest {
                spec: Some(spec),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
        assert!(err.message().starts_with(starts), "{}", err.message());
        assert!(err.message().contains(needs), "{}", err.message());
    }
    // Nothing of them is left, and the daemon goes on.
    let listed = c
        .list(pb::ListRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.processes.is_empty(), "{listed:?}");
    assert_eq!(run(&mut c, sh("echo on")).await.stdout, b"on\n");
}

#[tokio::test]
async fn the_daemon_protects_itself_and_its_children_get_the_original_score() {
    let original = own_oom_score_adj();
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let daemon = hints_of(d.pid()).1;
    // Lowered where it may be (CAP_SYS_RESOURCE), never raised.
    if capable(CAP_SYS_RESOURCE) && original > -900 {
        assert_eq!(daemon, -900);
    } else {
        assert!(daemon <= original, "{daemon} > {original}");
    }
    let want = format!("{original}\n");
    let piped = run(&mut c, sh("cat /proc/$$/oom_score_adj")).await;
    assert_eq!(String::from_utf8_lossy(&piped.stdout), want);
    let mut spec = sh("cat /proc/$$/oom_score_adj");
    spec.pty = Some(pb::PtySize { rows: 24, cols: 80 });
    let tty = run(&mut c, spec).await;
    assert_eq!(String::from_utf8_lossy(&tty.pty).replace('\r', ""), want);
    // And the daemon keeps its own.
    assert_eq!(hints_of(d.pid()).1, daemon);
}

#[tokio::test]
async fn hints_out_of_range_are_invalid_arguments_naming_the_field() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    type Edit = Box<dyn Fn(&mut pb::ProcessSpec)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|s| s.nice = Some(20)),
            "spec.nice: 20 is outside -20 to 19",
        ),
        (Box::new(|s| s.nice = Some(-21)), "spec.nice:"),
        (
            Box::new(|s| s.oom_score_adj = Some(1001)),
            "spec.oom_score_adj: 1001 is outside -1000 to 1000",
        ),
        (
            Box::new(|s| s.oom_score_adj = Some(-1001)),
            "spec.oom_score_adj:",
        ),
        (
            Box::new(|s| {
                s.limits = Some(pb::ResourceLimits {
                    pids_max: u64::MAX,
                    ..Default::default()
                })
            }),
            "spec.limits.pids_max:",
        ),
    ];
    for (edit, want) in cases {
        let mut spec = sh("true");
        edit(&mut spec);
        let err = c
            .start(pb::StartRequest {
                spec: Some(spec),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().starts_with(want),
            "{} !~ {want}",
            err.message()
        );
    }
}

/// The cgroup v2 directory of `pid`.
fn cgroup_dir(pid: u32) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 path");
    let mount = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .find(|m| std::path::Path::new(m).join("cgroup.controllers").exists())
        .expect("a cgroup2 mount");
    PathBuf::from(mount).join(path.trim_start_matches('/'))
}

/// The group of `pid` in the cgroup v1 hierarchy of `controller` (a hybrid host's), from
/// /proc/<pid>/cgroup and the hierarchy's mount; `None` where there is no such hierarchy.
fn v1_dir(pid: u32, controller: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        list.split(',').any(|c| c == controller).then_some(path)
    })?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let (root, mount) = info.lines().find_map(|l| {
        let (head, tail) = l.split_once(" - ")?;
        let mut tail = tail.split_whitespace();
        (tail.next()? == "cgroup" && tail.nth(1)?.split(',').any(|o| o == controller))
            .then_some(())?;
        let mut head = head.split_whitespace().skip(3);
        Some((head.next()?, head.next()?))
    })?;
    let below = path
        .strip_prefix(root.trim_end_matches('/'))
        .unwrap_or(path);
    Some(PathBuf::from(mount).join(below.trim_start_matches('/')))
}

/// Where the limit of `controller` of `pid` is: its v2 cgroup's `v2_file` where that exists,
/// else `v1_file` of its group in the controller's cgroup v1 hierarchy, which must be one of
/// the daemon's (`.../tend.<pid>.<start>/<id>`).
fn limit_file(pid: u32, id: &str, controller: &str, v2_file: &str, v1_file: &str) -> PathBuf {
    let v2 = cgroup_dir(pid).join(v2_file);
    if v2.exists() {
        return v2;
    }
    let dir = v1_dir(pid, controller).expect("the limit in a v2 or a v1 hierarchy");
    assert!(dir.ends_with(id), "{}", dir.display());
    let root = dir.parent().unwrap().file_name().unwrap().to_string_lossy();
    assert!(root.starts_with("tend."), "{}", dir.display());
    dir.join(v1_file)
}

fn limited(spec: pb::ProcessSpec, memory: u64, pids: u64) -> pb::ProcessSpec {
    pb::ProcessSpec {
        limits: Some(pb::ResourceLimits {
            memory_max_bytes: memory,
            pids_max: pids,
        }),
        ..spec
    }
}

/// Whether limits must be honoured here: CI runs on hosts that can (cgroup v2 with the
/// controllers, or a hybrid host's v1 hierarchies), or with TEND_REQUIRE_CGROUP_LIMITS=1.
fn limits_required() -> bool {
    std::env::var("TEND_REQUIRE_CGROUP_LIMITS").as_deref() == Ok("1")
        || std::env::var("CI").as_deref() == Ok("true")
}

#[tokio::test]
async fn limits_are_in_the_process_cgroup_and_hold_or_are_refused_saying_why() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let started = c
        .start(pb::StartRequest {
            spec: Some(limited(spec(&["sleep", "1000"]), 64 << 20, 16)),
            ..Default::default()
        })
        .await;
    let p = match started {
        Ok(r) => r.into_inner().process.unwrap(),
        Err(e) => {
            // This host cannot honour them (no cgroup of tend's, no controller in v2 nor a v1
            // hierarchy of it): said, with the field, why, and what to do.
            assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
            let m = e.message();
            assert!(m.starts_with("spec.limits"), "{m}");
            assert!(m.contains("cgroup"), "{m}");
            assert!(
                !limits_required(),
                "limits are required here (CI=true or TEND_REQUIRE_CGROUP_LIMITS=1) but: {m}"
            );
            eprintln!("SKIP limits_are_in_the_process_cgroup: {m}");
            // Nothing was left running, and a spec without limits still starts.
            assert!(c
                .list(pb::ListRequest::default())
                .await
                .unwrap()
                .into_inner()
                .processes
                .is_empty());
            let out = run(&mut c, sh("echo fine")).await;
            assert_eq!(out.stdout, b"fine\n");
            return;
        }
    };
    let limits = p.limits.unwrap();
    assert_eq!((limits.memory_max_bytes, limits.pids_max), (64 << 20, 16));
    // Whichever hierarchy holds them, the process is in its group there, and it holds them.
    let memory = limit_file(
        p.pid,
        &p.id,
        "memory",
        "memory.max",
        "memory.limit_in_bytes",
    );
    let pids = limit_file(p.pid, &p.id, "pids", "pids.max", "pids.max");
    let read = |f: &PathBuf| std::fs::read_to_string(f).unwrap().trim().to_string();
    assert_eq!(
        read(&memory),
        (64u64 << 20).to_string(),
        "{}",
        memory.display()
    );
    assert_eq!(read(&pids), "16", "{}", pids.display());
    // Still in a v2 cgroup of its own, which contains and kills it.
    assert!(cgroup_dir(p.pid).ends_with(&p.id));
    let groups: Vec<PathBuf> = [&memory, &pids]
        .iter()
        .map(|f| f.parent().unwrap().to_path_buf())
        .collect();
    c.remove(pb::RemoveRequest {
        id: p.id,
        force: true,
    })
    .await
    .unwrap();
    // Its groups go with it (v1 ones too).
    eventually(10, "the process's limit groups removed", || {
        groups.iter().all(|g| !g.exists())
    })
    .await;

    // A terminal process is in them too (the same child, another stdio).
    let mut tty = limited(sh("cat /proc/self/cgroup"), 64 << 20, 16);
    tty.pty = Some(pb::PtySize { rows: 24, cols: 80 });
    let out = run(&mut c, tty).await;
    let text = String::from_utf8_lossy(&out.pty).replace('\r', "");
    let id = out.started.as_ref().unwrap().id.clone();
    for controller in ["memory", "pids"] {
        let line = text
            .lines()
            .find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|c| c == controller))
            })
            .or_else(|| text.lines().find(|l| l.starts_with("0::")))
            .unwrap_or_else(|| panic!("no cgroup line for {controller}: {text}"));
        assert!(line.ends_with(&format!("/{id}")), "{controller}: {text}");
    }

    // Eight at most: forks of the tree past that fail (EAGAIN), inside the tree; the shell
    // says so and stops there (a non-interactive dash exits on a failed fork).
    let out = run(
        &mut c,
        limited(
            sh("for i in $(seq 20); do sleep 2 </dev/null >/dev/null 2>&1 & done; wait"),
            0,
            8,
        ),
    )
    .await;
    let text = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        text.contains("fork") || text.contains("resource temporarily unavailable"),
        "{text} {out:?}"
    );
    assert_ne!(out.exit.as_ref().unwrap().exit_code, Some(0), "{out:?}");

    // 32 MiB of memory, and a program that wants 200: the kernel's OOM killer ends it (where
    // there is no swap to take the rest: swap is left as the host has it, memory.swap.max or
    // memory.memsw.limit_in_bytes alike).
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    if swaps.lines().count() > 1 {
        eprintln!("SKIP the memory limit's OOM kill: this host swaps");
        return;
    }
    let out = run(
        &mut c,
        limited(
            spec(&[
                "python3",
                "-c",
                "x = bytearray(200 << 20); print('survived')",
            ]),
            32 << 20,
            0,
        ),
    )
    .await;
    let exit = out.exit.clone().unwrap();
    assert_eq!(exit.signal, Some(libc::SIGKILL), "{exit:?} {out:?}");
}

#[tokio::test]
async fn a_dead_daemons_cgroup_v1_root_is_swept_at_start() {
    // Where tend's v1 roots would be (beside the daemon's own v1 pids cgroup, which is this
    // test's): a root named after a daemon that cannot be running (no such pid), with an
    // empty group of a process.
    let Some(parent) = v1_dir(std::process::id(), "pids") else {
        eprintln!("SKIP a_dead_daemons_cgroup_v1_root: no cgroup v1 pids hierarchy");
        return;
    };
    let dead = parent.join(format!("tend.{}.1", u32::MAX));
    if let Err(e) = std::fs::create_dir_all(dead.join("p-gone")) {
        eprintln!(
            "SKIP a_dead_daemons_cgroup_v1_root: cannot make {}: {e}",
            dead.display()
        );
        return;
    }
    let d = Daemon::start().await;
    let mut c = d.c().await;
    // Whether this daemon uses the v1 hierarchy: where a process's pids limit goes says.
    let started = c
        .start(pb::StartRequest {
            spec: Some(limited(spec(&["sleep", "1000"]), 0, 4)),
            ..Default::default()
        })
        .await;
    let in_v1 = match started {
        Ok(r) => {
            let p = r.into_inner().process.unwrap();
            let in_v1 = !cgroup_dir(p.pid).join("pids.max").exists();
            c.remove(pb::RemoveRequest {
                id: p.id,
                force: true,
            })
            .await
            .unwrap();
            in_v1
        }
        Err(_) => false,
    };
    if !in_v1 {
        let _ = std::fs::remove_dir(dead.join("p-gone"));
        let _ = std::fs::remove_dir(&dead);
        eprintln!("SKIP a_dead_daemons_cgroup_v1_root: tend does not use cgroup v1 here");
        return;
    }
    eventually(10, "the dead daemon's v1 root swept", || !dead.exists()).await;
}

#[tokio::test]
async fn a_docker_environment_refuses_hints_saying_where_to_set_them() {
    if !require("docker", docker_missing()) {
        return;
    }
    let d = Daemon::start().await;
    let mut r = connect::runner_client(&Addr::Unix(d.socket()), None)
        .await
        .unwrap();
    let env = r
        .create_environment(pb::CreateEnvironmentRequest {
            kind: pb::EnvironmentKind::Docker.into(),
            docker: Some(pb::DockerSettings {
                image: BUSYBOX_IMAGE.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .environment
        .unwrap();
    let mut init = r
        .init_environment(pb::InitEnvironmentRequest {
            environment_id: env.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    while let Some(ev) = tokio_stream::StreamExt::next(&mut init).await {
        ev.unwrap();
    }
    let mut c = d.c().await;
    let in_box = |mut s: pb::ProcessSpec| {
        s.environment_id = env.id.clone();
        s
    };
    for (spec, field) in [
        (
            in_box(hinted(sh("true"), 5, 0)),
            "spec.nice, spec.oom_score_adj",
        ),
        (in_box(limited(sh("true"), 0, 10)), "spec.limits"),
    ] {
        let err = c
            .start(pb::StartRequest {
                spec: Some(spec),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
        assert!(err.message().starts_with(field), "{}", err.message());
        assert!(err.message().contains("docker update"), "{}", err.message());
    }
    // Without hints it runs.
    let out = run(&mut c, in_box(sh("echo boxed"))).await;
    assert_eq!(out.stdout, b"boxed\n");
    let _ = r
        .shutdown_environment(pb::ShutdownEnvironmentRequest {
            environment_id: env.id,
            grace_ms: None,
        })
        .await;
}
