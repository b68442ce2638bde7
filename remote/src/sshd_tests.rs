//! Tests against a real OpenSSH sshd started on 127.0.0.1 with a throwaway
//! host key and authorized_keys, running as this (root) user. They cover
//! what needs no other users and no reboot; the shared test host
//! (tests/it/remote_on_testhost.rs in the root package) covers sudo users and
//! reboots. The sshd harness is image-provision-testsupport's `sshd` module.
//! They need root and OpenSSH (openssh-server for sshd,
//! openssh-client for ssh-keygen, ssh-agent and ssh-add); without them they
//! fail with a message naming what to install (`bash tests/run` installs
//! it all). Never a skip.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

// The sshd itself (start, restart, kill, keys) is the shared harness's;
// only what builds this crate's types is here.
use image_provision_testsupport::sshd::{Sshd, descendants, keygen};

use crate::*;

/// This crate's options for logging in to the harness's sshd as root with
/// its client key.
trait Connect {
    fn opts(&self, known_hosts: &Path) -> ConnectOptions;
    /// Options with the host key already trusted.
    fn trusted(&self) -> ConnectOptions;
}

impl Connect for Sshd {
    fn opts(&self, known_hosts: &Path) -> ConnectOptions {
        let t: Target = format!("root@127.0.0.1:{}", self.port).parse().unwrap();
        ConnectOptions::new(t, known_hosts).identity(Identity::key_file(&self.client_key))
    }

    fn trusted(&self) -> ConnectOptions {
        let kh = self.dir.join("known_hosts");
        std::fs::write(&kh, self.known_hosts_line() + "\n").unwrap();
        self.opts(&kh)
    }
}

#[tokio::test]
async fn exec_exit_codes_stderr_stdin_signals() {
    let sshd = Sshd::start("exec");
    let s = Session::connect(sshd.trusted()).await.unwrap();

    let out = s.exec(&Cmd::new("echo").arg("hello world")).await.unwrap();
    assert_eq!(out.stdout, b"hello world\n");
    assert_eq!(out.status, ExitStatus::Code(0));

    let e = s.exec(&Cmd::script("echo oops >&2; exit 3")).await.unwrap_err();
    match &e {
        Error::CommandFailed { status, stderr_tail, .. } => {
            assert_eq!(*status, ExitStatus::Code(3));
            assert_eq!(stderr_tail, "oops");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("exit code 3") && e.to_string().contains("oops"), "{e}");

    let out = s.exec(&Cmd::script("exit 3").ok_codes(&[0, 3])).await.unwrap();
    assert_eq!(out.code(), Some(3));

    let out = s.exec(&Cmd::new("cat").stdin(b"from stdin\n".to_vec())).await.unwrap();
    assert_eq!(out.stdout, b"from stdin\n");
    // No stdin given: cat sees EOF instead of hanging.
    let out = s.exec(&Cmd::new("cat")).await.unwrap();
    assert!(out.stdout.is_empty());

    let out = s.exec_unchecked(&Cmd::script("kill -TERM $$")).await.unwrap();
    assert_eq!(out.status, ExitStatus::Signal("TERM".into()));

    // A script gets its inputs from the environment, and a command in it
    // that reads stdin does not eat the rest of the script.
    let out = s
        .exec(&Cmd::script("cat; echo \"got $WHO\"\necho \"arg $1\"\n").env("WHO", "it's $me").arg("a b"))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "got it's $me\narg a b\n");

    // Quoting survives the remote shell.
    let nasty = "a 'b' \"c\" $d `e` \\f\ng;h|i&j*";
    let out = s.exec(&Cmd::new("printf").arg("%s").arg(nasty)).await.unwrap();
    assert_eq!(out.stdout_str(), nasty);
    s.close().await.unwrap();
}

/// A secret goes to the command (environment and arguments, with the
/// command's own stdin intact, through sudo too) but never on the command
/// line sshd receives: sudo and the host's process list would show it.
#[tokio::test]
async fn secrets_reach_the_command_but_not_its_command_line() {
    let sshd = Sshd::start("secrets");
    let s = Session::connect(sshd.trusted()).await.unwrap();
    let cmd = Cmd::new("sh")
        .arg("-c")
        .arg("printf '%s|%s|' \"$TOKEN\" \"$1\"; cat; printf '|%s' \"$PLAIN\"")
        .arg("name")
        .secret_arg("arg secret 'quoted'")
        .secret_env("TOKEN", "env $ecret")
        .env("PLAIN", "shown")
        .stdin(b"own stdin".to_vec())
        .sudo();
    assert!(!cmd.render(true).contains("ecret"), "{}", cmd.render(true));
    let out = s.exec(&cmd).await.unwrap();
    assert_eq!(out.stdout_str(), "env $ecret|arg secret 'quoted'|own stdin|shown");
    // A script with a secret in its environment still gets its body.
    let out = s.exec(&Cmd::script("echo \"${#KEY}\"").secret_env("KEY", "0123456789")).await.unwrap();
    assert_eq!(out.stdout_str().trim(), "10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabytes_and_twenty_at_once() {
    let sshd = Sshd::start("big");
    let s = Arc::new(Session::connect(sshd.trusted()).await.unwrap());
    let t0 = Instant::now();
    let out = s.exec(&Cmd::new("head").args(["-c", "52428800", "/dev/zero"])).await.unwrap();
    assert_eq!(out.stdout.len(), 50 * 1024 * 1024);
    eprintln!("50 MB in {:?}", t0.elapsed());

    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(
            async move { s.exec(&Cmd::script("sleep 0.5; echo $I").env("I", i.to_string())).await },
        ));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let out = t.await.unwrap().unwrap();
        assert_eq!(out.stdout_str().trim(), i.to_string());
    }
    eprintln!("20 concurrent in {:?}", t0.elapsed());
    // 8 channels at a time: three rounds of 0.5 s, not twenty.
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn silent_command_outlives_keepalive_interval() {
    let sshd = Sshd::start("silent");
    let mut o = sshd.trusted();
    o.keepalive_interval = Duration::from_millis(500);
    o.keepalive_max = 2;
    let s = Session::connect(o).await.unwrap();
    let out = s.exec(&Cmd::new("sh").args(["-c", "sleep 4; echo done"])).await.unwrap();
    assert_eq!(out.stdout, b"done\n");
}

/// A command past its time limit: an error naming it and the limit, in
/// bounded time; the session goes on. The session's default holds for a
/// command without a limit of its own.
#[tokio::test]
async fn a_command_past_its_time_limit_is_stopped_and_named() {
    let sshd = Sshd::start("limit");
    let mut o = sshd.trusted();
    o.command_time_limit = Duration::from_secs(2);
    let s = Session::connect(o).await.unwrap();
    // (sshd passes a signal on only for a non-root login, with privilege
    // separation; these tests log in as root, so only the wait is tested.)
    let hang = Cmd::new("sh").args(["-c", "sleep 30"]);
    let t0 = Instant::now();
    let e = s.exec(&hang.clone().time_limit(Duration::from_secs(1))).await.unwrap_err();
    assert!(matches!(e, Error::TimedOut { .. }), "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    let said = e.to_string();
    assert!(said.contains("sleep 30") && said.contains("time limit of 1 s"), "{said}");
    assert!(e.hint().unwrap().contains("--command-timeout"), "{:?}", e.hint());
    let t0 = Instant::now();
    let e = s.exec(&hang).await.unwrap_err();
    assert!(matches!(e, Error::TimedOut { .. }) && e.to_string().contains("time limit of 2 s"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
    assert_eq!(s.exec(&Cmd::new("echo").arg("on")).await.unwrap().stdout, b"on\n", "the session goes on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sshd_killed_mid_command_is_an_error_not_a_hang() {
    let mut sshd = Sshd::start("kill");
    let s = Session::connect(sshd.trusted()).await.unwrap();
    let t0 = Instant::now();
    let sleep = Cmd::new("sleep").arg("60");
    let run = s.exec(&sleep);
    let killer = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        sshd.kill_all();
    };
    let (r, ()) = tokio::join!(run, killer);
    let e = r.unwrap_err();
    assert!(matches!(e, Error::ConnectionLost { .. }), "{e:?}");
    assert!(e.to_string().contains("sleep 60"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // Later commands fail fast too.
    let e = s.exec(&Cmd::new("true")).await.unwrap_err();
    assert!(matches!(e, Error::ConnectionLost { .. }), "{e:?}");
    // And the session can be brought back once sshd is.
    let mut s = s;
    tokio::task::block_in_place(|| sshd.spawn());
    s.reconnect().await.unwrap();
    s.exec(&Cmd::new("true")).await.unwrap();
}

/// Connections open at the sshd listening on `port`: its side of each
/// (local port `port`, state ESTABLISHED) in /proc/net/tcp.
fn established_at(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local_port =
                f.get(1).and_then(|a| a.rsplit_once(':')).and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            local_port == Some(port) && f.get(3) == Some(&"01")
        })
        .count()
}

/// What a caller that lost its connection needs: the same session works
/// again, and the old connection does not linger at the server.
#[tokio::test]
async fn reconnect_replaces_the_connection_and_closes_the_old_one() {
    let sshd = Sshd::start("reconnect");
    let mut s = Session::connect(sshd.trusted()).await.unwrap();
    s.exec(&Cmd::new("true")).await.unwrap();
    assert_eq!(established_at(sshd.port), 1);
    s.reconnect().await.unwrap();
    assert_eq!(s.exec(&Cmd::new("whoami")).await.unwrap().stdout, b"root\n");
    let t0 = Instant::now();
    while established_at(sshd.port) != 1 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the old connection is still open: {} connections",
            established_at(sshd.port)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn host_keys_unknown_accepted_changed_expected() {
    let sshd = Sshd::start("hostkeys");
    let kh = sshd.dir.join("kh/known_hosts");
    let host_key = PublicKey::from_openssh(sshd.host_pub.trim()).unwrap();
    let fp = fingerprint(&host_key);

    // Unknown host, strict: refused, with the fingerprint, and the flag in
    // the hint.
    let e = Session::connect(sshd.opts(&kh)).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::HostKey(HostKeyError::Unknown { .. })), "{e:?}");
    assert!(msg.contains(&fp), "{msg}");
    let hint = e.hint().unwrap_or_default();
    assert!(hint.contains("--accept-new-host-key"), "{hint}");
    assert!(!kh.exists());

    // Accepted when told, and recorded.
    let s = Session::connect(sshd.opts(&kh).policy(HostKeyPolicy::AcceptNew)).await.unwrap();
    s.close().await.unwrap();
    let text = std::fs::read_to_string(&kh).unwrap();
    assert_eq!(
        text,
        format!(
            "[127.0.0.1]:{} {}\n",
            sshd.port,
            sshd.host_pub.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
        )
    );
    Session::connect(sshd.opts(&kh)).await.unwrap();

    // A changed key: refused even with AcceptNew, naming both fingerprints.
    let other = sshd.dir.join("other");
    keygen(&other, "ed25519", "");
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let other_key = PublicKey::from_openssh(other_pub.trim()).unwrap();
    std::fs::write(&kh, format!("# mine\n[127.0.0.1]:{} {}", sshd.port, other_pub.trim())).unwrap();
    let e = Session::connect(sshd.opts(&kh).policy(HostKeyPolicy::AcceptNew)).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::HostKey(HostKeyError::Changed { line: 2, .. })), "{e:?}");
    assert!(msg.contains(&fp) && msg.contains(&fingerprint(&other_key)), "{msg}");
    assert!(msg.contains(&format!("{}:2", kh.display())), "{msg}");

    // Expect a key that is not the host's: refused.
    let e = Session::connect(sshd.opts(&kh).policy(HostKeyPolicy::Expect(vec![other_key]))).await.unwrap_err();
    assert!(matches!(e, Error::HostKey(HostKeyError::NotExpected { .. })), "{e:?}");
    // Expect the host's key (as EC2 would hand it over): accepted, and it
    // replaces the stale line.
    let expect = HostKeyPolicy::expect_openssh(&sshd.host_pub).unwrap();
    Session::connect(sshd.opts(&kh).policy(expect)).await.unwrap();
    Session::connect(sshd.opts(&kh)).await.unwrap();
    let text = std::fs::read_to_string(&kh).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
}

#[tokio::test]
async fn key_types_agent_and_auth_errors() {
    let sshd = Sshd::start("keys");
    let mut auth = std::fs::read_to_string(sshd.dir.join("authorized_keys")).unwrap();
    for kind in ["rsa", "ecdsa"] {
        let p = sshd.dir.join(format!("client_{kind}"));
        keygen(&p, kind, "");
        auth.push_str(&std::fs::read_to_string(p.with_extension("pub")).unwrap());
    }
    let enc = sshd.dir.join("client_encrypted");
    keygen(&enc, "ed25519", "secret passphrase");
    std::fs::write(sshd.dir.join("authorized_keys"), auth).unwrap();

    for kind in ["rsa", "ecdsa"] {
        let o = sshd.trusted().identity(Identity::key_file(sshd.dir.join(format!("client_{kind}"))));
        let s = Session::connect(o).await.unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(s.exec(&Cmd::new("whoami")).await.unwrap().stdout, b"root\n");
    }

    // Encrypted key without a terminal to ask on: a clear error naming the
    // file (whether or not these tests run on a terminal)...
    let e = crate::identity::read_key(&enc, false).unwrap_err();
    assert!(matches!(e, Error::KeyEncrypted { .. }), "{e:?}");
    assert!(e.to_string().contains(&enc.display().to_string()), "{e}");
    let hint = e.hint().unwrap_or_default();
    assert!(hint.contains("ssh-add"), "{hint}");
    // ...and through connect when stdin is not a terminal (under a test
    // runner it is not; on a terminal connect would prompt instead).
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let e = Session::connect(sshd.trusted().identity(Identity::key_file(&enc))).await.unwrap_err();
        assert!(matches!(e, Error::KeyEncrypted { .. }), "{e:?}");
    }

    // A key the host does not know: auth error, not retried.
    let stranger = sshd.dir.join("stranger");
    keygen(&stranger, "ed25519", "");
    let t0 = Instant::now();
    let e = Session::connect(sshd.trusted().identity(Identity::key_file(&stranger))).await.unwrap_err();
    assert!(matches!(e, Error::AuthFailed { .. }), "{e:?}");
    let hint = e.hint().unwrap_or_default();
    assert!(hint.contains("authorized_keys"), "{hint}");
    assert!(t0.elapsed() < Duration::from_secs(3));

    // The agent (check_prerequisites made sure ssh-agent and ssh-add exist).
    {
        let sock = sshd.dir.join("agent.sock");
        let mut agent = Command::new("ssh-agent").arg("-D").arg("-a").arg(&sock).stdout(Stdio::null()).spawn().unwrap();
        let t0 = Instant::now();
        while !sock.exists() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let agent_opts = || sshd.trusted().identity(Identity::AgentSocket(sock.clone()));
        let e = Session::connect(agent_opts()).await.unwrap_err();
        assert!(matches!(e, Error::AgentEmpty { .. }), "{e:?}");
        let st = Command::new("ssh-add")
            .arg(&stranger)
            .arg(&sshd.client_key)
            .env("SSH_AUTH_SOCK", &sock)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        let s = Session::connect(agent_opts()).await.unwrap();
        assert_eq!(s.exec(&Cmd::new("whoami")).await.unwrap().stdout, b"root\n");
        let _ = agent.kill();
        let _ = agent.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_retries_until_sshd_is_up_but_not_forever() {
    let mut sshd = Sshd::start("retry");
    sshd.kill_all();
    let mut o = sshd.trusted();
    o.retries = 2;
    o.retry_min_delay = Duration::from_millis(100);
    let e = Session::connect(o.clone()).await.unwrap_err();
    assert!(matches!(e, Error::Unreachable { attempts: 3, .. }), "{e:?}");

    o.retries = 20;
    let (s, ()) = tokio::join!(Session::connect(o), async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        tokio::task::block_in_place(|| sshd.spawn());
    });
    s.unwrap();
}

#[tokio::test]
async fn upload_is_atomic_with_mode_and_owner() {
    let sshd = Sshd::start("upload");
    let s = Session::connect(sshd.trusted()).await.unwrap();
    let path = sshd.dir.join("etc/app/secret.env");
    let p = path.to_str().unwrap();
    s.upload(p, b"TOKEN=abc\n", 0o600, Some("root:root"), true).await.unwrap();
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(&path).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o600);
    assert_eq!(std::fs::read(&path).unwrap(), b"TOKEN=abc\n");
    // Parent made 0755, not 0700 from the secret's umask.
    assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777, 0o755);

    // Overwrite with a bigger, non-secret file; no temp files left.
    let big = vec![b'x'; 3 * 1024 * 1024];
    s.upload(p, &big, 0o644, None, false).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), big);
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);
    let left: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert_eq!(left.len(), 1);

    let e = s.upload("relative/path", b"", 0o644, None, false).await.unwrap_err();
    assert!(matches!(e, Error::BadUpload { .. }), "{e:?}");
    let e = s.upload(p, b"x", 0o644, Some("nosuchuser"), false).await.unwrap_err();
    assert!(e.to_string().contains("nosuchuser"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), big, "a failed upload leaves the old file");
}

/// Collects formatted log output.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn output_lines_stream_into_tracing_and_secrets_do_not() {
    let sshd = Sshd::start("tracing");
    // A global subscriber: tracing caches per-callsite interest process-wide,
    // so a thread-local one misses events while other tests run.
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    let logs = LOGS
        .get_or_init(|| {
            let logs = Captured::default();
            let w = logs.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_ansi(false)
                .with_writer(move || w.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
            logs
        })
        .clone();

    let s = Session::connect(sshd.trusted()).await.unwrap();
    s.exec(&Cmd::script("printf 'one\\ntwo\\r\\n'; echo err-line >&2; printf 'no newline'")).await.unwrap();
    s.exec(&Cmd::new("true").secret_arg("hunter2-arg").secret_env("TOKEN", "hunter2-env")).await.unwrap();
    s.exec(&Cmd::new("sh").arg("-c").arg("echo hunt''er2-quiet").quiet()).await.unwrap();
    s.exec(&Cmd::new("cat").stdin(b"hunter2-stdin\n".to_vec()).quiet()).await.unwrap();
    s.upload(sshd.dir.join("s").to_str().unwrap(), b"hunter2-upload", 0o600, None, true).await.unwrap();

    // Only this test's host (the port tells them apart).
    let port = format!(":{}", sshd.port);
    let all = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let text: String = all.lines().filter(|l| l.contains(&port)).map(|l| format!("{l}\n")).collect();
    for want in [
        "one host=\"root@127.0.0.1:PORT\" stream=\"stdout\"",
        "two host=\"root@127.0.0.1:PORT\" stream=\"stdout\"",
        "err-line host=\"root@127.0.0.1:PORT\" stream=\"stderr\"",
        "no newline host=\"root@127.0.0.1:PORT\" stream=\"stdout\"",
        "command=env TOKEN=<redacted> true <redacted>",
        "upload to /tmp",
    ] {
        let want = want.replace("PORT", &sshd.port.to_string());
        assert!(text.contains(&want), "missing {want:?} in:\n{text}");
    }
    assert!(!text.contains("two\r"), "{text}");
    assert!(!text.contains("hunter2"), "a secret reached the logs:\n{text}");
}

#[tokio::test]
async fn a_frozen_peer_is_noticed_by_keepalive() {
    let sshd = Sshd::start("frozen");
    let mut o = sshd.trusted();
    o.keepalive_interval = Duration::from_millis(500);
    o.keepalive_max = 2;
    let s = Session::connect(o).await.unwrap();
    s.exec(&Cmd::new("true")).await.unwrap();
    // Freeze the per-connection sshd processes: TCP stays up (the kernel
    // still ACKs) but nothing answers, like a host that hung or a network
    // path that went dark.
    let mut pids = Vec::new();
    descendants(sshd.child.as_ref().unwrap().id(), &mut pids);
    assert!(!pids.is_empty());
    for p in &pids {
        Command::new("kill").args(["-STOP", &p.to_string()]).status().unwrap();
    }
    let t0 = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(20), s.exec(&Cmd::new("sleep").arg("60"))).await;
    let e = r.expect("a frozen peer must not hang exec").unwrap_err();
    assert!(matches!(e, Error::ConnectionLost { .. }), "{e:?}");
    eprintln!("frozen peer noticed after {:?}", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    for p in &pids {
        let _ = Command::new("kill").args(["-CONT", &p.to_string()]).status();
    }
}
