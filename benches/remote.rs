//! Figures for the remote layer against a real test host (prints a table; no
//! assertions, not a timed test):
//!
//! ```text
//! cargo bench --profile dev --bench remote   # reuses the dev build; quick
//! cargo bench --bench remote                 # the bench (release) profile
//! ```
//!
//! Needs what the test host needs (root, util-linux, debootstrap; `bash
//! tests/run` sets it up) and OpenSSH's client for the `ssh host true` line.
//! In one run, against one Debian 12 test host (tests/support/testhost.rs):
//! OpenSSH's `ssh host true`, our connect+auth, one exec round trip, 100 execs
//! in sequence and 100 at once on one connection, and how long after the
//! host's sshd is listening again `Session::reboot` is back.
//!
//! It runs only when given `--bench` (as `cargo bench` does): under `cargo
//! test --benches` or a test runner's `--list` it does nothing.

#[path = "../tests/support/testhost.rs"]
mod testhost;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use image_provision_remote::{Cmd, ConnectOptions, Identity, RebootOptions, Session, Target};
use testhost::{Distro, TestHost};

const USER: &str = "root";
/// How long the test host's sshd stays away during a reboot.
const REBOOT_DELAY: Duration = Duration::from_secs(1);

const SSH_TRUE_REPS: usize = 10;
const CONNECT_REPS: usize = 10;
const EXEC_REPS: usize = 50;
const HUNDRED_REPS: usize = 5;
const REBOOT_REPS: usize = 5;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        // A test runner asking for tests: there are none here.
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        println!("benches/remote.rs: figures only; run `cargo bench --profile dev --bench remote`");
        return;
    }
    header(&args);

    let t = Instant::now();
    let host = TestHost::start_with(Distro::Debian12, REBOOT_DELAY);
    println!(
        "test host: Debian 12 on {} (started in {}), user {USER}, reboot delay {}",
        host.addr(),
        ms(t.elapsed()),
        ms(REBOOT_DELAY)
    );
    println!();

    let mut table = Table::default();

    // OpenSSH's client, a fresh process and connection each time.
    let mut ssh = Vec::new();
    for _ in 0..SSH_TRUE_REPS {
        let t = Instant::now();
        let out = host
            .ssh_command(USER)
            .arg("true")
            .output()
            .expect("running ssh (install openssh-client)");
        let d = t.elapsed();
        assert!(
            out.status.success(),
            "ssh host true failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        ssh.push(d);
    }
    table.row("`ssh host true` (OpenSSH client, whole process)", &ssh, "");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(measure(&host, &mut table));
    println!("{}", table.render());
}

async fn measure(host: &TestHost, table: &mut Table) {
    let target: Target = format!("{USER}@{}", host.addr()).parse().unwrap();
    let opts = ConnectOptions::new(target, host.known_hosts_file())
        .identity(Identity::key_file(&host.client_key));

    // Our connect: TCP, key exchange, host key check, key auth.
    let mut connects = Vec::new();
    for _ in 0..CONNECT_REPS {
        let t = Instant::now();
        let s = Session::connect(opts.clone()).await.expect("connect");
        connects.push(t.elapsed());
        s.close().await.unwrap();
    }
    table.row("Session::connect (TCP + kex + host key + auth)", &connects, "");

    let session = Arc::new(Session::connect(opts.clone()).await.expect("connect"));
    let t_true = Cmd::new("true");

    let mut execs = Vec::new();
    for _ in 0..EXEC_REPS {
        let t = Instant::now();
        session.exec(&t_true).await.expect("true");
        execs.push(t.elapsed());
    }
    table.row("one exec `true` on an open connection", &execs, "");

    let mut seq_total = Vec::new();
    for _ in 0..HUNDRED_REPS {
        let t = Instant::now();
        for _ in 0..100 {
            session.exec(&t_true).await.expect("true");
        }
        seq_total.push(t.elapsed());
    }
    table.row("100 execs in sequence: total", &seq_total, "");
    table.row(
        "  per command",
        &seq_total.iter().map(|d| *d / 100).collect::<Vec<_>>(),
        "",
    );

    let mut par_total = Vec::new();
    let mut par_each = Vec::new();
    for _ in 0..HUNDRED_REPS {
        let t = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..100 {
            let s = session.clone();
            set.spawn(async move {
                let t = Instant::now();
                s.exec(&Cmd::new("true")).await.expect("true");
                t.elapsed()
            });
        }
        while let Some(d) = set.join_next().await {
            par_each.push(d.expect("task"));
        }
        par_total.push(t.elapsed());
    }
    let max_channels = session.options().max_channels;
    table.row(
        "100 execs at once on one connection: total",
        &par_total,
        &format!("{max_channels} channels at a time"),
    );
    table.row(
        "  wall time / 100",
        &par_total.iter().map(|d| *d / 100).collect::<Vec<_>>(),
        "",
    );
    table.row(
        "  each, from start to done (queueing included)",
        &par_each,
        "",
    );
    drop(par_each);

    // Reboots: the supervisor kills everything, waits REBOOT_DELAY and starts
    // sshd again; sshd logs "Server listening on" once its socket listens. A
    // watcher notes that moment; the figure is from then until reboot()
    // returned (connected to the new boot, boot id read, test command run).
    let mut session = Arc::try_unwrap(session).expect("no other users of the session");
    let ropts = RebootOptions::default();
    let sshd_log = host.dir().join("ctl/sshd.log");
    let mut back = Vec::new();
    let mut totals = Vec::new();
    let mut reconnected = Vec::new();
    for _ in 0..REBOOT_REPS {
        let before = listening_count(&sshd_log);
        let watcher = ListenWatcher::start(sshd_log.clone(), before);
        let report = session.reboot(ropts.clone()).await.expect("reboot");
        let returned = Instant::now();
        let listening = watcher
            .finish()
            .expect("sshd's \"Server listening\" line did not appear during the reboot");
        back.push(returned.saturating_duration_since(listening));
        totals.push(report.elapsed);
        reconnected.push(report.reconnected_after);
    }
    table.row(
        "reboot: sshd listening again -> reboot() returned",
        &back,
        "target < 1 s",
    );
    table.row(
        "reboot: reboot() total elapsed",
        &totals,
        &format!("reboot delay {}", ms(REBOOT_DELAY)),
    );
    table.row("reboot: asked -> reconnected to the new boot", &reconnected, "");
    table.note(format!(
        "reboot probes: every {}..{} plus jitter, TCP connect limit {} (RebootOptions::default())",
        ms(ropts.probe_min_delay),
        ms(ropts.probe_max_delay),
        ms(ropts.probe_connect_timeout)
    ));
    assert_eq!(host.reboots() as usize, REBOOT_REPS);
    session.close().await.unwrap();
}

fn listening_count(sshd_log: &PathBuf) -> usize {
    std::fs::read_to_string(sshd_log)
        .unwrap_or_default()
        .matches("Server listening on")
        .count()
}

/// Polls sshd's log every millisecond on a thread of its own and notes when
/// a new "Server listening on" line appears.
struct ListenWatcher {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Option<Instant>>,
}

impl ListenWatcher {
    fn start(sshd_log: PathBuf, before: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                if listening_count(&sshd_log) > before {
                    return Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            None
        });
        ListenWatcher { stop, thread }
    }

    fn finish(self) -> Option<Instant> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("watcher thread")
    }
}

fn header(args: &[String]) {
    // cargo is our parent: its command line is what was typed.
    let cargo = std::fs::read(format!(
        "/proc/{}/cmdline",
        std::os::unix::process::parent_id()
    ))
    .map(|b| {
        b.split(|c| *c == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    })
    .unwrap_or_default();
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from(&args[0]));
    // target/<dir>/deps/remote-<hash>: "debug" for the dev profile, "release"
    // for bench, the profile's name for custom ones.
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let profile = match dir.as_str() {
        "debug" => "dev",
        "release" => "bench (release)",
        other => other,
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("image-provision remote benchmark");
    println!("command: {}", if cargo.is_empty() { args.join(" ") } else { cargo });
    println!("binary:  {}", args.join(" "));
    println!("machine: nproc {nproc}, {cpu}");
    println!(
        "profile: {profile} (target/{dir}, debug assertions {})",
        if cfg!(debug_assertions) { "on" } else { "off" }
    );
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

#[derive(Default)]
struct Table {
    rows: Vec<[String; 6]>,
    notes: Vec<String>,
}

impl Table {
    fn row(&mut self, what: &str, samples: &[Duration], note: &str) {
        let mut s = samples.to_vec();
        s.sort();
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2
        };
        self.rows.push([
            what.to_owned(),
            n.to_string(),
            ms(median),
            ms(s[0]),
            ms(s[n - 1]),
            note.to_owned(),
        ]);
    }

    fn note(&mut self, text: String) {
        self.notes.push(text);
    }

    fn render(&self) -> String {
        let head = ["", "n", "median", "min", "max", ""].map(str::to_owned);
        let all: Vec<&[String; 6]> = std::iter::once(&head).chain(&self.rows).collect();
        let width = |i: usize| all.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
        let w: Vec<usize> = (0..6).map(width).collect();
        let mut out = String::new();
        for r in all {
            let line = format!(
                "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {:>w4$}  {}",
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2],
                w3 = w[3],
                w4 = w[4],
            );
            let _ = writeln!(out, "{}", line.trim_end());
        }
        for n in &self.notes {
            let _ = writeln!(out, "{n}");
        }
        out.trim_end().to_owned()
    }
}
