//! TCP that is safe off loopback: plaintext refused beyond loopback, TLS with the generated
//! certificate (verified by CA or pinned fingerprint, before any request), the token still
//! required, client certificates (mTLS), and the certificate reloaded on SIGHUP.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use sha2::{Digest, Sha256};
use tend::cli::connect::{self, Addr};
use tend::cli::tls::ClientTls;
use tend::pb;

use crate::helper::*;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `sha256:<hex>` of the first certificate of a PEM file, as the daemon logs it.
fn fingerprint(pem: &Path) -> String {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_file(pem).unwrap();
    let hex: String = Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

fn token(d: &Daemon) -> String {
    std::fs::read_to_string(d.dir.join("token")).unwrap()
}

fn tls(hp: &str, tls: ClientTls) -> Addr {
    Addr::Tls(hp.to_string(), tls)
}

fn by_ca(ca: &Path) -> ClientTls {
    ClientTls {
        ca: Some(ca.to_path_buf()),
        ..Default::default()
    }
}

fn by_fingerprint(fp: &str) -> ClientTls {
    ClientTls {
        fingerprint: Some(fp.to_string()),
        ..Default::default()
    }
}

async fn echo(addr: &Addr, token: Option<String>, what: &str) -> Result<Vec<u8>, tonic::Status> {
    let mut c = connect::process_client(addr, token)
        .await
        .map_err(|e| tonic::Status::unavailable(format!("{e:#}")))?;
    c.list(pb::ListRequest::default()).await?;
    Ok(run(&mut c, spec(&["echo", what])).await.stdout)
}

/// A CA made here, and certificates it signs.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, self.issuer.pem()).unwrap();
        path
    }

    /// A certificate for `cn` (a client, or a server for `names`): its files (cert, key).
    fn issue(&self, dir: &Path, cn: &str, names: &[&str], client: bool) -> (PathBuf, PathBuf) {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &*self.issuer).unwrap();
        let (c, k) = (
            dir.join(format!("{cn}.pem")),
            dir.join(format!("{cn}-key.pem")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

#[tokio::test]
async fn plaintext_tcp_beyond_loopback_is_refused_saying_to_use_tls() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tend"))
        .args(["serve", "--listen", "tcp://0.0.0.0:0", "--state-dir"])
        .arg(dir.path().join("state"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--listen tls://0.0.0.0:0"), "{err}");
    assert!(err.contains("--insecure-plaintext"), "{err}");

    // Said out loud, it is served, with a warning at start.
    let log = dir.path().join("log");
    let d = Daemon::in_tempdir(
        &["--listen", "tcp://0.0.0.0:0", "--insecure-plaintext"],
        |cmd| {
            cmd.stderr(std::fs::File::create(&log).unwrap());
        },
    )
    .await;
    drop(d);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("--insecure-plaintext"), "{log}");
}

#[tokio::test]
async fn the_generated_certificate_is_verified_by_ca_or_fingerprint_and_the_token_still_counts() {
    let hp = format!("127.0.0.1:{}", free_port());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let mut d = Daemon::spawn_in(&dir, &["--listen", &format!("tls://{hp}")]).await;
    let cert = d.dir.join("tls-cert.pem");
    let key = d.dir.join("tls-key.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let fp = fingerprint(&cert);
    let t = Some(token(&d));

    assert_eq!(
        echo(&tls(&hp, by_ca(&cert)), t.clone(), "by ca")
            .await
            .unwrap(),
        b"by ca\n"
    );
    assert_eq!(
        echo(&tls(&hp, by_fingerprint(&fp)), t.clone(), "pinned")
            .await
            .unwrap(),
        b"pinned\n"
    );
    // Spelled as openssl prints it.
    let openssl = fp.as_bytes()[7..]
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap().to_uppercase())
        .collect::<Vec<_>>()
        .join(":");
    assert!(echo(&tls(&hp, by_fingerprint(&openssl)), t.clone(), "x")
        .await
        .is_ok());

    // Without the token: the handshake works, the call does not.
    let ch = connect::channel(&tls(&hp, by_ca(&cert))).await.unwrap();
    let err = pb::process_service_client::ProcessServiceClient::new(ch)
        .list(pb::ListRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    // A wrong fingerprint, or another CA: refused in `connect`, before any request.
    let wrong = format!("sha256:{}", "00".repeat(32));
    let e = connect::channel(&tls(&hp, by_fingerprint(&wrong)))
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("not the pinned"), "{e:#}");
    let other = tempfile::tempdir().unwrap();
    let other_ca = Ca::new("another CA").write(other.path(), "ca");
    let e = connect::channel(&tls(&hp, by_ca(&other_ca)))
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("certificate"), "{e:#}");
    // Plaintext to a TLS listener gets nowhere either.
    assert!(echo(&Addr::Tcp(hp.clone()), t.clone(), "x").await.is_err());

    // Restarted, the daemon serves the same certificate.
    d.terminate();
    drop(d);
    let d = Daemon::spawn_in(&dir, &["--listen", &format!("tls://{hp}")]).await;
    assert_eq!(fingerprint(&cert), fp);
    assert!(
        echo(&tls(&hp, by_fingerprint(&fp)), Some(token(&d)), "again")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn the_cli_connects_over_tls_with_the_ca_or_the_fingerprint_and_refuses_a_wrong_one() {
    let hp = format!("127.0.0.1:{}", free_port());
    let d = Daemon::with_args(&["--listen", &format!("tls://{hp}")]).await;
    let cert = d.dir.join("tls-cert.pem");
    let fp = fingerprint(&cert);
    let cli = |envs: &[(&str, &str)], args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tend"));
        cmd.env_remove("TEND_TLS_CA")
            .env_remove("TEND_TLS_FINGERPRINT")
            .env("TEND_STATE_DIR", "/nonexistent")
            .env("TEND_TOKEN", token(&d))
            .envs(envs.iter().copied())
            .args(["--connect", &format!("tls://{hp}")])
            .args(args)
            .stdin(Stdio::null());
        cmd.output().unwrap()
    };
    let out = cli(&[], &["--tls-fingerprint", &fp, "run", "echo", "pinned"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pinned\n", "{out:?}");
    let out = cli(
        &[("TEND_TLS_CA", cert.to_str().unwrap())],
        &["run", "echo", "by ca"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "by ca\n", "{out:?}");
    let out = cli(
        &[(
            "TEND_TLS_FINGERPRINT",
            &format!("sha256:{}", "ab".repeat(32)),
        )],
        &["ps"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not the pinned"), "{err}");
    // Neither a CA nor a fingerprint (and no daemon's certificate in the state dir): says what
    // to give.
    let out = cli(&[], &["ps"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TEND_TLS_FINGERPRINT"), "{err}");
}

#[tokio::test]
async fn serve_prints_the_client_command_line_that_works() {
    let hp = format!("127.0.0.1:{}", free_port());
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let d = Daemon::in_tempdir(&["--listen", &format!("tls://{hp}")], |cmd| {
        cmd.stderr(std::fs::File::create(&log).unwrap());
    })
    .await;
    let printed = std::fs::read_to_string(&log).unwrap();
    let line = printed
        .lines()
        .find_map(|l| l.strip_prefix("tend: connect with: "))
        .unwrap_or_else(|| panic!("no client command line in {printed}"));
    let command = line.split("    (").next().unwrap();
    assert!(
        command.contains(&fingerprint(&d.dir.join("tls-cert.pem"))),
        "{command}"
    );
    let exe = env!("CARGO_BIN_EXE_tend");
    let out = Command::new("sh")
        .arg("-c")
        .arg(command.replacen("tend ", &format!("{exe} "), 1))
        .env_remove("TEND_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{command}: {out:?}");
}

#[tokio::test]
async fn a_client_certificate_of_the_ca_needs_no_token_and_another_cas_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("tend clients");
    let ca_file = ca.write(tmp.path(), "clients-ca");
    let (alice, alice_key) = ca.issue(tmp.path(), "alice", &[], true);
    let (mallory, mallory_key) =
        Ca::new("not the clients' CA").issue(tmp.path(), "mallory", &[], true);

    let hp = format!("127.0.0.1:{}", free_port());
    let log = tmp.path().join("log");
    let d = Daemon::in_tempdir(
        &[
            "--listen",
            &format!("tls://{hp}"),
            "--tls-client-ca",
            ca_file.to_str().unwrap(),
        ],
        |cmd| {
            cmd.env("TEND_LOG", "info")
                .stderr(std::fs::File::create(&log).unwrap());
        },
    )
    .await;
    let cert = d.dir.join("tls-cert.pem");
    let with = |c: &Path, k: &Path| ClientTls {
        ca: Some(cert.clone()),
        cert: Some(c.to_path_buf()),
        key: Some(k.to_path_buf()),
        ..Default::default()
    };
    let none = Some(String::new());

    // alice, without a token: in, and her subject is in the log of her Start.
    let addr = tls(&hp, with(&alice, &alice_key));
    let mut c = connect::process_client(&addr, none.clone()).await.unwrap();
    start(&mut c, spec(&["true"])).await;
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged
            .lines()
            .any(|l| l.contains("Start by a client certificate") && l.contains("CN=alice")),
        "{logged}"
    );
    // No certificate: the token is required, as on any TCP listener.
    let err = echo(&tls(&hp, by_ca(&cert)), none.clone(), "x")
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert!(echo(&tls(&hp, by_ca(&cert)), Some(token(&d)), "x")
        .await
        .is_ok());
    // Another CA's certificate: refused by the handshake (with TLS 1.3 the client hears of it
    // at its first call), token or not.
    let err = echo(
        &tls(&hp, with(&mallory, &mallory_key)),
        Some(token(&d)),
        "x",
    )
    .await
    .unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);
    assert_ne!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
}

#[tokio::test]
async fn with_tls_require_client_cert_the_token_alone_is_not_enough() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("tend clients");
    let ca_file = ca.write(tmp.path(), "clients-ca");
    let (bob, bob_key) = ca.issue(tmp.path(), "bob", &[], true);
    let hp = format!("127.0.0.1:{}", free_port());
    let d = Daemon::with_args(&[
        "--listen",
        &format!("tls://{hp}"),
        "--tls-client-ca",
        ca_file.to_str().unwrap(),
        "--tls-require-client-cert",
    ])
    .await;
    let cert = d.dir.join("tls-cert.pem");
    assert!(echo(&tls(&hp, by_ca(&cert)), Some(token(&d)), "x")
        .await
        .is_err());
    let bob = ClientTls {
        ca: Some(cert),
        cert: Some(bob),
        key: Some(bob_key),
        ..Default::default()
    };
    assert_eq!(
        echo(&tls(&hp, bob), Some(String::new()), "bob")
            .await
            .unwrap(),
        b"bob\n"
    );
}

#[tokio::test]
async fn sighup_reloads_the_operators_certificate_without_dropping_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("operator CA");
    let ca_file = ca.write(tmp.path(), "ca");
    let (first, first_key) = ca.issue(tmp.path(), "first", &["127.0.0.1"], false);
    let (cert, key) = (
        tmp.path().join("server.pem"),
        tmp.path().join("server-key.pem"),
    );
    std::fs::copy(&first, &cert).unwrap();
    std::fs::copy(&first_key, &key).unwrap();
    let hp = format!("127.0.0.1:{}", free_port());
    let d = Daemon::with_args(&[
        "--listen",
        &format!("tls://{hp}"),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
    .await;
    assert!(!d.dir.join("tls-cert.pem").exists());
    let fp1 = fingerprint(&first);
    let t = Some(token(&d));
    let mut open = connect::process_client(&tls(&hp, by_ca(&ca_file)), t.clone())
        .await
        .unwrap();
    assert!(echo(&tls(&hp, by_fingerprint(&fp1)), t.clone(), "x")
        .await
        .is_ok());

    let (second, second_key) = ca.issue(tmp.path(), "second", &["127.0.0.1"], false);
    let fp2 = fingerprint(&second);
    std::fs::copy(&second, &cert).unwrap();
    std::fs::copy(&second_key, &key).unwrap();
    // SAFETY: kill(2) of the daemon this test started.
    unsafe { libc::kill(d.pid() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while echo(&tls(&hp, by_fingerprint(&fp2)), t.clone(), "x")
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(echo(&tls(&hp, by_fingerprint(&fp1)), t.clone(), "x")
        .await
        .is_err());
    // The connection made before the reload goes on.
    assert_eq!(
        run(&mut open, spec(&["echo", "still"])).await.stdout,
        b"still\n"
    );

    // A broken file is reported and the certificate in use stays.
    std::fs::write(&key, "not a key").unwrap();
    unsafe { libc::kill(d.pid() as i32, libc::SIGHUP) };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(echo(&tls(&hp, by_fingerprint(&fp2)), t.clone(), "x")
        .await
        .is_ok());
}
