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
//! In one run, against one Debian 12 test host (testsupport/src/testhost.rs):
//! OpenSSH's `ssh host true`, our connect+auth, one exec round trip, 100 execs
//! in sequence and 100 at once on one connection, and how long after the
//! host's sshd is listening again `Session::reboot` is back.
//!
//! It runs only when given `--bench` (as `cargo bench` does): under `cargo
//! test --benches` or a test runner's `--list` it does nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use image_provision_remote::{Cmd, ConnectOptions, Identity, RebootOptions, Session, Target};
use image_provision_testsupport::report::{self, Table, ms, ssh_true};
use image_provision_testsupport::testhost::{Distro, TestHost};

const USER: &str = "root";
/// How long the test host's sshd stays away during a reboot.
const REBOOT_DELAY: Duration = Duration::from_secs(1);

const SSH_TRUE_REPS: usize = 10;
const CONNECT_REPS: usize = 10;
const EXEC_REPS: usize = 50;
const HUNDRED_REPS: usize = 5;
const REBOOT_REPS: usize = 5;

fn main() {
    if !report::start("remote") {
        return;
    }

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
    let ssh: Vec<Duration> = (0..SSH_TRUE_REPS).map(|_| ssh_true(&mut host.ssh_command(USER))).collect();
    table.row("`ssh host true` (OpenSSH client, whole process)", &ssh, "");

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(measure(&host, &mut table));
    println!("{}", table.render());
}

async fn measure(host: &TestHost, table: &mut Table) {
    let target: Target = format!("{USER}@{}", host.addr()).parse().unwrap();
    let opts = ConnectOptions::new(target, host.known_hosts_file()).identity(Identity::key_file(&host.client_key));

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
    table.row("  per command", &seq_total.iter().map(|d| *d / 100).collect::<Vec<_>>(), "");

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
    table.row("100 execs at once on one connection: total", &par_total, &format!("{max_channels} channels at a time"));
    table.row("  wall time / 100", &par_total.iter().map(|d| *d / 100).collect::<Vec<_>>(), "");
    table.row("  each, from start to done (queueing included)", &par_each, "");
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
        let listening = watcher.finish().expect("sshd's \"Server listening\" line did not appear during the reboot");
        back.push(returned.saturating_duration_since(listening));
        totals.push(report.elapsed);
        reconnected.push(report.reconnected_after);
    }
    table.row("reboot: sshd listening again -> reboot() returned", &back, "target < 1 s");
    table.row("reboot: reboot() total elapsed", &totals, &format!("reboot delay {}", ms(REBOOT_DELAY)));
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
    std::fs::read_to_string(sshd_log).unwrap_or_default().matches("Server listening on").count()
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
