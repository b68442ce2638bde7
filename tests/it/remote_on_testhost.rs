//! The remote layer (image-provision-remote) against a real OpenSSH sshd
//! serving a real Debian 12 root: testsupport/src/testhost.rs. Users: root,
//! admin (passwordless sudo), pwuser (sudo wants a password).

use std::sync::Arc;
use std::time::{Duration, Instant};

use image_provision_remote::{
    Cmd, ConnectOptions, Error, ExitStatus, HostKeyError, HostKeyPolicy, Identity, PublicKey, RebootOptions, Session,
    Target, fingerprint,
};
use image_provision_testsupport::testhost::{Distro, TestHost};

/// Options for `user` on `host`, trusting the host key the harness made.
fn opts(host: &TestHost, user: &str) -> ConnectOptions {
    let target: Target = format!("{user}@{}", host.addr()).parse().unwrap();
    ConnectOptions::new(target, host.known_hosts_file()).identity(Identity::key_file(&host.client_key))
}

async fn connect(host: &TestHost, user: &str) -> Session {
    Session::connect(opts(host, user)).await.unwrap_or_else(|e| panic!("connect as {user}: {e}\n{}", host.logs()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_stderr_big_output_concurrency_and_silence_on_one_connection() {
    let host = TestHost::start(Distro::Debian12);
    let mut o = opts(&host, "root");
    // Short keepalive, so the silent command below outlasts several pings.
    o.keepalive_interval = Duration::from_secs(1);
    o.keepalive_max = 2;
    let s = Arc::new(Session::connect(o).await.unwrap());

    // Exit codes and stderr.
    let out = s.exec(&Cmd::new("sh").args(["-c", "echo out; echo err >&2"])).await.unwrap();
    assert_eq!((out.stdout_str().as_ref(), out.stderr_str().as_ref()), ("out\n", "err\n"));
    let e = s.exec(&Cmd::script("echo 'E: Unable to locate package nope' >&2\nexit 100")).await.unwrap_err();
    match &e {
        Error::CommandFailed { status, stderr_tail, .. } => {
            assert_eq!(*status, ExitStatus::Code(100));
            assert_eq!(stderr_tail, "E: Unable to locate package nope");
        }
        other => panic!("{other:?}"),
    }
    let out = s.exec(&Cmd::script("exit 100").ok_codes(&[0, 100])).await.unwrap();
    assert_eq!(out.code(), Some(100));
    let out = s.exec_unchecked(&Cmd::script("kill -KILL $$")).await.unwrap();
    assert_eq!(out.status, ExitStatus::Signal("KILL".into()));

    // 50 MB of output.
    let t = Instant::now();
    let out = s.exec(&Cmd::new("head").args(["-c", "52428800", "/dev/urandom"])).await.unwrap();
    assert_eq!(out.stdout.len(), 52_428_800);
    eprintln!("50 MB of stdout in {:?}", t.elapsed());

    // 20 commands at once on this one connection (more than sshd's
    // MaxSessions of 10: the session queues them).
    let t = Instant::now();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.exec(&Cmd::script("sleep 1; echo \"$N\"").env("N", i.to_string())).await })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap().unwrap().stdout_str().trim(), i.to_string());
    }
    eprintln!("20 concurrent 1 s commands in {:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(10));

    // Silent for 5 s, five keepalive intervals: still fine.
    let out = s.exec(&Cmd::new("sh").args(["-c", "sleep 5; echo awake"])).await.unwrap();
    assert_eq!(out.stdout, b"awake\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sudo_as_admin_works_and_as_pwuser_says_what_to_do() {
    let host = TestHost::start(Distro::Debian12);
    let admin = connect(&host, "admin").await;
    let out = admin.exec(&Cmd::script("id -un; echo \"$X\"").sudo().env("X", "kept through sudo")).await.unwrap();
    assert_eq!(out.stdout_str(), "root\nkept through sudo\n");
    assert_eq!(admin.exec(&Cmd::new("id").arg("-un")).await.unwrap().stdout, b"admin\n");

    let pw = connect(&host, "pwuser").await;
    let e = pw.exec(&Cmd::new("true").sudo()).await.unwrap_err();
    assert!(matches!(e, Error::SudoNeedsPassword { .. }), "{e:?}");
    let (msg, hint) = (e.to_string(), e.hint().unwrap_or_default());
    assert!(msg.contains("pwuser") && hint.contains("NOPASSWD"), "{msg} / {hint}");
    // Without sudo pwuser is fine.
    assert_eq!(pw.exec(&Cmd::new("id").arg("-un")).await.unwrap().stdout, b"pwuser\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_of_a_0600_secret_as_a_sudo_user() {
    let host = TestHost::start(Distro::Debian12);
    let s = connect(&host, "admin").await;
    let secret = b"GITHUB_TOKEN=ghp_not_a_real_token\n";
    s.upload("/etc/image/secrets.env", secret, 0o600, Some("root:root"), true).await.unwrap();
    let stat = host.sh_ok("stat -c '%a %U %G' /etc/image/secrets.env; stat -c %a /etc/image");
    assert_eq!(stat, "600 root root\n755\n");
    assert_eq!(host.read("/etc/image/secrets.env"), secret);

    // Overwrite, handing the file to admin; nothing left beside it.
    s.upload("/etc/image/secrets.env", b"v2\n", 0o640, Some("admin"), true).await.unwrap();
    assert_eq!(host.sh_ok("stat -c '%a %U' /etc/image/secrets.env; ls -A /etc/image"), "640 admin\nsecrets.env\n");
    assert_eq!(host.read("/etc/image/secrets.env"), b"v2\n");

    // pwuser cannot sudo: a clear error, and no file.
    let pw = connect(&host, "pwuser").await;
    let e = pw.upload("/etc/image/other", b"x", 0o600, None, true).await.unwrap_err();
    assert!(matches!(e, Error::SudoNeedsPassword { .. }), "{e:?}");
    assert!(!host.exists("/etc/image/other"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_keys_first_time_refused_unless_accepted_and_changed_refused() {
    let host = TestHost::start(Distro::Debian12);
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("state/known_hosts");
    let with_kh = |policy| opts(&host, "root").policy(policy);
    let mut o = with_kh(HostKeyPolicy::Strict);
    o.known_hosts = kh.clone();
    let host_key = PublicKey::from_openssh(&host.host_key_pub).unwrap();

    // First time, not accepted: refused, showing the fingerprint and the flag.
    let e = Session::connect(o.clone()).await.unwrap_err();
    assert!(matches!(e, Error::HostKey(HostKeyError::Unknown { .. })), "{e:?}");
    let (msg, hint) = (e.to_string(), e.hint().unwrap_or_default());
    assert!(msg.contains(&fingerprint(&host_key)) && hint.contains("--accept-new-host-key"), "{msg} / {hint}");
    assert!(!kh.exists(), "nothing recorded");

    // Accepted when told; then known.
    let mut accept = o.clone();
    accept.policy = HostKeyPolicy::AcceptNew;
    Session::connect(accept.clone()).await.unwrap().close().await.unwrap();
    assert!(std::fs::read_to_string(&kh).unwrap().starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", host.port)));
    Session::connect(o.clone()).await.unwrap();

    // The host gets a new key (a reinstall, or someone in the middle).
    host.sh_ok("rm -f /etc/ssh/ssh_host_ed25519_key*; ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key");
    let new_pub = String::from_utf8(host.read("/etc/ssh/ssh_host_ed25519_key.pub")).unwrap();
    host.restart_sshd();
    let new_key = PublicKey::from_openssh(new_pub.trim()).unwrap();
    let e = Session::connect(accept).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::HostKey(HostKeyError::Changed { line: 1, .. })), "{e:?}");
    assert!(msg.contains(&fingerprint(&host_key)) && msg.contains(&fingerprint(&new_key)), "{msg}");
    assert!(msg.contains(&kh.display().to_string()), "{msg}");

    // Known another way (as EC2 hands it over): accepted and recorded.
    let mut expect = o.clone();
    expect.policy = HostKeyPolicy::expect_openssh(&new_pub).unwrap();
    Session::connect(expect).await.unwrap();
    Session::connect(o).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sshd_killed_mid_command_is_an_error_within_seconds() {
    let host = Arc::new(TestHost::start(Distro::Debian12));
    let s = connect(&host, "root").await;
    let long = Cmd::new("sleep").arg("300");
    let run = s.exec(&long);
    let kill = {
        let host = host.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                while !host.sh("pgrep -x sleep").status.success() {
                    assert!(t.elapsed() < Duration::from_secs(10), "the command never started");
                    std::thread::sleep(Duration::from_millis(20));
                }
                host.kill_sshd();
                Instant::now()
            })
            .await
            .unwrap()
        }
    };
    let (r, killed_at) = tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(run, kill) })
        .await
        .expect("exec hung after sshd was killed");
    let noticed = killed_at.elapsed();
    let e = r.unwrap_err();
    assert!(matches!(e, Error::ConnectionLost { .. }), "{e:?}");
    assert!(e.to_string().contains("sleep 300"), "{e}");
    eprintln!("connection loss noticed {noticed:?} after kill");
    assert!(noticed < Duration::from_secs(5), "{noticed:?}");
    assert!(matches!(s.exec(&Cmd::new("true")).await, Err(Error::ConnectionLost { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_is_ridden_through_as_a_sudo_user() {
    let delay = Duration::from_secs(2);
    let host = TestHost::start_with(Distro::Debian12, delay);
    let mut s = connect(&host, "admin").await;
    let before = host.boot_id();
    assert_eq!(s.boot_id().await.unwrap(), before);

    let report = s
        .reboot(RebootOptions {
            timeout: Duration::from_secs(60),
            test_command: Cmd::new("test").args(["-d", "/etc/ssh"]).sudo(),
            ..RebootOptions::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", host.logs()));
    eprintln!("{report:?}");
    assert_eq!(report.old_boot_id, before);
    assert_ne!(report.new_boot_id, before);
    assert_eq!(report.new_boot_id, host.boot_id());
    assert_eq!(host.reboots(), 1);
    let calls = String::from_utf8(host.read("/var/log/standin/calls.log")).unwrap();
    assert!(calls.trim_end().ends_with("uid=0 reboot"), "{calls}");
    // Back within about a second of sshd (which returns after `delay`).
    assert!(report.reconnected_after >= delay, "{report:?}");
    assert!(report.reconnected_after < delay + Duration::from_secs(3), "{report:?}");

    // The same session keeps working on the new boot.
    assert_eq!(s.boot_id().await.unwrap(), report.new_boot_id);
    assert_eq!(s.exec(&Cmd::new("id").arg("-un").sudo()).await.unwrap().stdout, b"root\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_that_never_comes_back_times_out_clearly() {
    let host = Arc::new(TestHost::start_with(Distro::Debian12, Duration::from_millis(200)));
    let mut s = connect(&host, "root").await;
    // Ask for a reboot with a command that only kills the connection: the
    // boot id never changes.
    let e = s
        .reboot(RebootOptions {
            timeout: Duration::from_secs(4),
            command: Cmd::script("kill -9 $PPID"),
            ..RebootOptions::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(e, Error::RebootTimeout { .. }), "{e:?}");
    assert!(e.to_string().contains("boot"), "{e}");
    assert_eq!(host.reboots(), 0);
}
