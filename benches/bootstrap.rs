//! Figures for `image-provision bootstrap --host` (with the IMAGE steps)
//! against real test hosts (prints a table; no assertions on the figures, not
//! a timed test):
//!
//! ```text
//! cargo bench --profile dev --bench bootstrap   # reuses the dev build; quick
//! cargo bench --bench bootstrap                 # the bench (release) profile
//! ```
//!
//! Needs what the test host needs (root, util-linux, debootstrap; `bash
//! tests/run` sets it up) and OpenSSH's client for the `ssh host true` line.
//! In one run (issue 5's "Benchmark"):
//!
//! 1. A converged re-run of the whole bootstrap on a finished Debian 12 test
//!    host: wall time (median of CONVERGED_REPS runs of the CLI binary) and its
//!    SSH round trips, beside OpenSSH's `ssh host true` against the same host.
//!    Round trips are counted from the test host's sshd log (LogLevel DEBUG1,
//!    set by a drop-in before these runs): one per channel request that runs
//!    something (`exec`, `subsystem`, `shell`), plus the connections opened
//!    (`Accepted publickey`). The product is not instrumented.
//! 2. A fresh bootstrap with the stand-ins given realistic relative durations
//!    (driver install 3 units, image pull 10 units, reboot 1 unit; UNIT below),
//!    beside the critical path. The same fresh bootstrap measured on another
//!    host with every hook at zero (reboot delay 0) gives the non-hooked work,
//!    step by step (the summary's TIME column); the critical path is the
//!    longer of the two chains that cannot overlap:
//!    - the steps in order: all non-hooked work + driver 3 + reboot 1 units;
//!    - the pull: all non-hooked work except the steps that run while the
//!      images pull in the background (nvidia, gpu-check, traefik), + pull 10 +
//!      reboot 1 units (nothing on the host progresses while it is down: a
//!      reboot interrupts the pull; the stand-in keeps its progress).
//!
//! It runs only when given `--bench` (as `cargo bench` does): under `cargo
//! test --benches` or a test runner's `--list` it does nothing.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use image_provision_testsupport::cli::{self, state_for};
use image_provision_testsupport::report::{self, Table, median, ms, ssh_true};
use image_provision_testsupport::testhost::{Distro, TestHost};

/// The binary measured.
const BIN: &str = env!("CARGO_BIN_EXE_image-provision");

const DOMAIN: &str = "image.example.org";

/// One unit of the relative durations, in seconds.
const UNIT_SECS: u64 = 1;
const DRIVER_UNITS: u64 = 3;
const PULL_UNITS: u64 = 10;
const REBOOT_UNITS: u64 = 1;

/// The steps that run while the images pull in the background.
const OVERLAP_PULL: &[&str] = &["nvidia", "gpu-check", "traefik"];

const SSH_TRUE_REPS: usize = 10;
const CONVERGED_REPS: usize = 5;

fn main() {
    if !report::start("bootstrap") {
        return;
    }
    let unit = Duration::from_secs(UNIT_SECS);
    let local = tempfile::tempdir().unwrap();
    let extra = image_args(local.path());
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();

    // The non-hooked part: a fresh bootstrap with every duration at zero.
    let t = Instant::now();
    let zero = TestHost::start_with(Distro::Debian12, Duration::ZERO);
    let zero_started = t.elapsed();
    zero.enable_pinned_bootstrap_standins();
    zero.enable_image_server_standins();
    let zero_state = state_for(&zero);
    let (zero_out, zero_fresh) = bootstrap(&zero, zero_state.path(), &extra);
    let zero_steps = step_times(&zero_out);
    let zero_reboots = zero.reboots();
    drop(zero);

    // The host with realistic durations: fresh, then converged re-runs.
    let t = Instant::now();
    let host = TestHost::start_with(Distro::Debian12, unit * REBOOT_UNITS as u32);
    println!(
        "test hosts: Debian 12 (started in {} and {}), user {} (passwordless sudo) for ssh and bootstrap alike; unit {}: driver install {DRIVER_UNITS}, image pull {PULL_UNITS}, reboot {REBOOT_UNITS}",
        ms(zero_started),
        ms(t.elapsed()),
        host.default_user(),
        ms(unit)
    );
    println!();
    host.enable_pinned_bootstrap_standins();
    host.enable_image_server_standins();
    host.write("/var/lib/standin/hooks/slow-postinst", format!("{}\n", DRIVER_UNITS * UNIT_SECS).as_bytes());
    host.write("/var/lib/standin/hooks/pull-seconds-image", format!("{}\n", PULL_UNITS * UNIT_SECS).as_bytes());
    let state = state_for(&host);
    let (first, fresh) = bootstrap(&host, state.path(), &extra);
    let fresh_reboots = host.reboots();

    // sshd at DEBUG1 from here on (a drop-in read before the distribution's
    // settings; the restart keeps nothing else from changing).
    host.write("/etc/ssh/sshd_config.d/00-bench-loglevel.conf", b"LogLevel DEBUG1\n");
    host.restart_sshd();
    let sshd_log = host.dir().join("ctl/sshd.log");

    let mut ssh = Vec::new();
    let mut ssh_counts = Vec::new();
    for _ in 0..SSH_TRUE_REPS {
        let before = log_len(&sshd_log);
        ssh.push(ssh_true(&mut host.ssh_command(host.default_user())));
        ssh_counts.push(count_since(&sshd_log, before));
    }

    let mut converged = Vec::new();
    let mut counts = Vec::new();
    let mut outcomes_seen = String::new();
    let mut phases: [Vec<Duration>; 4] = Default::default();
    for _ in 0..CONVERGED_REPS {
        let before = log_len(&sshd_log);
        let watcher = Watcher::start(sshd_log.clone(), before);
        let t0 = Instant::now();
        let (out, d) = bootstrap(&host, state.path(), &extra);
        let end = t0 + d;
        if let [Some(auth), Some(exec), Some(exit)] = watcher.finish() {
            phases[0].push(auth.saturating_duration_since(t0));
            phases[1].push(exec.saturating_duration_since(auth));
            phases[2].push(exit.saturating_duration_since(exec));
            phases[3].push(end.saturating_duration_since(exit));
        }
        converged.push(d);
        counts.push(count_since(&sshd_log, before));
        outcomes_seen = summary(&out);
    }
    assert_eq!(host.reboots(), fresh_reboots, "a converged run rebooted");

    let mut table = Table::default();
    table.row("`ssh host true` (OpenSSH client, whole process)", &ssh, "");
    let ssh_median = median(&ssh);
    let conv_median = median(&converged);
    table.row(
        "converged re-run, whole bootstrap with the IMAGE steps",
        &converged,
        &format!("{:.1}x `ssh host true`", ratio(conv_median, ssh_median)),
    );
    if phases[0].len() == CONVERGED_REPS {
        table.row("  CLI start -> sshd accepted the key (connect + auth)", &phases[0], "");
        table.row("  auth -> first exec request", &phases[1], "");
        table.row("  first exec request -> its command exited (on the host)", &phases[2], "");
        table.row("  command exited -> CLI exited", &phases[3], "");
    }
    table.row("fresh bootstrap, hooks at zero (non-hooked part)", &[zero_fresh], &format!("{zero_reboots} reboot(s)"));
    let in_order = zero_fresh + unit * ((DRIVER_UNITS + REBOOT_UNITS) as u32);
    let beside_pull: Duration =
        OVERLAP_PULL.iter().map(|s| *zero_steps.get(*s).unwrap_or_else(|| panic!("no step {s} in the summary"))).sum();
    let pull_chain = zero_fresh.saturating_sub(beside_pull) + unit * ((PULL_UNITS + REBOOT_UNITS) as u32);
    let critical = in_order.max(pull_chain);
    table.row("  chain: the steps in order + driver + reboot", &[in_order], "");
    table.row(
        "  chain: the steps not beside the pull + pull + reboot",
        &[pull_chain],
        &format!("{} beside the pull", ms(beside_pull)),
    );
    table.row("critical path: the longer chain", &[critical], "");
    table.row(
        "fresh bootstrap, driver 3 / pull 10 / reboot 1 units",
        &[fresh],
        &format!("{:.2}x the critical path; {fresh_reboots} reboot(s)", ratio(fresh, critical)),
    );
    table.note(format!(
        "critical path: max(zero-hook run + {DRIVER_UNITS} + {REBOOT_UNITS} units, zero-hook run - its {} steps + {PULL_UNITS} + {REBOOT_UNITS} units); \
         nothing progresses while the host is down",
        OVERLAP_PULL.join("/")
    ));
    println!("{}", table.render());
    println!();

    let rt = |c: &Counts| c.channels();
    let ssh_rt: Vec<u64> = ssh_counts.iter().map(rt).collect();
    let conv_rt: Vec<u64> = counts.iter().map(rt).collect();
    let last = counts.last().expect("converged runs");
    println!(
        "round trips (sshd DEBUG1 log): `ssh host true` {} channel request(s) over {} connection(s); converged re-run {:?} per run ({} exec, {} subsystem, {} shell) over {} connection(s)",
        ssh_rt[0], ssh_counts[0].connections, conv_rt, last.exec, last.subsystem, last.shell, last.connections,
    );
    println!("converged steps (last run): {outcomes_seen}");
    println!("fresh steps: {}", summary(&first));
    let times: Vec<String> =
        cli::summary_rows(&zero_out).iter().filter_map(|w| Some(format!("{}={}", w.first()?, w.get(2)?))).collect();
    println!("fresh steps, hooks at zero (time each): {}", times.join(" "));
    println!();
    let within = conv_median.as_secs_f64() <= 2.0 * ssh_median.as_secs_f64();
    let max_rt = *conv_rt.iter().max().unwrap();
    let ratio_fresh = ratio(fresh, critical);
    println!("targets (issue 5):");
    println!(
        "  converged re-run within 2x of one `ssh host true`: {} vs {} (limit {}): {}",
        ms(conv_median),
        ms(ssh_median),
        ms(ssh_median * 2),
        met(within)
    );
    println!("  converged re-run in at most 3 round trips: {max_rt}: {}", met(max_rt <= 3));
    println!(
        "  fresh bootstrap within 1.15x of the critical path: {} vs {} = {ratio_fresh:.2}x: {}",
        ms(fresh),
        ms(critical),
        met(ratio_fresh <= 1.15)
    );
}

fn image_args(dir: &Path) -> Vec<String> {
    std::fs::write(
        dir.join("llm.env"),
        "LLM_URL=https://llm.example.org/v1\nLLM_API_KEY=sk-bench\nLLM_MODEL=Qwen/Qwen2.5-VL-7B-Instruct\n",
    )
    .unwrap();
    std::fs::write(dir.join("maps.env"), "GOOGLE_PLACES_API_KEY=maps-placeholder\n").unwrap();
    vec![
        "--domain".into(),
        DOMAIN.into(),
        "--acme-email".into(),
        "ops@example.org".into(),
        "--env-file".into(),
        format!("llm.env={}", dir.join("llm.env").display()),
        "--env-file".into(),
        format!("maps.env={}", dir.join("maps.env").display()),
        "--imageup-timeout".into(),
        "3m".into(),
    ]
}

/// One bootstrap as the host tests run it (testsupport/src/cli.rs's
/// `on_host`), timed from start to exit; panics if it fails.
fn bootstrap(host: &TestHost, state: &Path, extra: &[&str]) -> (Output, Duration) {
    let args: Vec<&str> = std::iter::once("bootstrap").chain(extra.iter().copied()).collect();
    let mut cmd = cli::on_host(BIN, host, host.default_user(), state, &args);
    let started = Instant::now();
    let out = cmd.output().expect("running image-provision");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "bootstrap failed ({}):\n--- stdout\n{}--- stderr\n{}",
        out.status,
        cli::stdout(&out),
        cli::stderr(&out)
    );
    (out, took)
}

/// Each step's TIME from the summary table (0.1 s resolution).
fn step_times(o: &Output) -> std::collections::BTreeMap<String, Duration> {
    cli::summary_rows(o)
        .into_iter()
        .filter_map(|w| {
            let secs: f64 = w.get(2)?.strip_suffix('s')?.parse().ok()?;
            Some((w[0].clone(), Duration::from_secs_f64(secs)))
        })
        .collect()
}

/// "step=outcome ..." from the summary table.
fn summary(o: &Output) -> String {
    cli::outcomes(o).iter().map(|(step, outcome)| format!("{step}={outcome}")).collect::<Vec<_>>().join(" ")
}

#[derive(Default, Debug)]
struct Counts {
    connections: u64,
    exec: u64,
    subsystem: u64,
    shell: u64,
}

impl Counts {
    fn channels(&self) -> u64 {
        self.exec + self.subsystem + self.shell
    }
}

fn log_len(p: &Path) -> usize {
    std::fs::read(p).map(|b| b.len()).unwrap_or(0)
}

/// What sshd logged since byte `from`: connections authenticated and the
/// channel requests that run something (OpenSSH's serverloop.c logs
/// "server_input_channel_req: channel N request TYPE reply R" at DEBUG1).
fn count_since(p: &Path, from: usize) -> Counts {
    let bytes = std::fs::read(p).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes[from.min(bytes.len())..]).into_owned();
    let mut c = Counts::default();
    for line in text.lines() {
        if line.contains("Accepted publickey for") {
            c.connections += 1;
        }
        if let Some(rest) = line.split("server_input_channel_req: channel ").nth(1) {
            match rest.split_whitespace().nth(2) {
                Some("exec") => c.exec += 1,
                Some("subsystem") => c.subsystem += 1,
                Some("shell") => c.shell += 1,
                _ => {}
            }
        }
    }
    c
}

/// Polls sshd's log every millisecond on a thread of its own and notes when
/// a run's first "Accepted publickey", first exec request and first
/// "session_exit_message" (the command exited) appear: a breakdown of a
/// converged run's wall time (to within the poll interval).
struct Watcher {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<[Option<Instant>; 3]>,
}

impl Watcher {
    const MARKS: [&'static str; 3] = ["Accepted publickey for", "request exec reply", "session_exit_message:"];

    fn start(sshd_log: PathBuf, from: usize) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = [None; 3];
            loop {
                let done = stop2.load(Ordering::Relaxed);
                let bytes = std::fs::read(&sshd_log).unwrap_or_default();
                let text = String::from_utf8_lossy(&bytes[from.min(bytes.len())..]).into_owned();
                for (i, mark) in Self::MARKS.iter().enumerate() {
                    if seen[i].is_none() && text.contains(mark) {
                        seen[i] = Some(Instant::now());
                    }
                }
                if done || seen.iter().all(Option::is_some) {
                    return seen;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Watcher { stop, thread }
    }

    fn finish(self) -> [Option<Instant>; 3] {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("watcher thread")
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
