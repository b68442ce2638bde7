//! Figures for `image-provision bootstrap --host` (with the IMAGE steps)
//! against booted test hosts (prints a table; no assertions on the
//! figures, not a timed test):
//!
//! ```text
//! cargo bench --profile dev --bench bootstrap   # reuses the dev build; quick
//! cargo bench --bench bootstrap                 # the bench (release) profile
//! ```
//!
//! Needs what the booted test hosts need (root, systemd-container,
//! debootstrap, the registry and pebble; `bash tests/run` sets it up) and
//! OpenSSH's client for the `ssh host true` line. The hosts are booted ones
//! (real systemd, Docker, compose v2, Traefik with pebble's certificate,
//! the images pulled from the test registry, a real reboot); only the
//! driver's install is given a duration. In one run (issue 5's
//! "Benchmark"):
//!
//! 1. A converged re-run of the whole bootstrap on a finished host: wall
//!    time (median of CONVERGED_REPS runs of the CLI binary) and its SSH
//!    round trips, beside OpenSSH's `ssh host true` against the same host.
//!    Round trips are counted from the host's sshd log (LogLevel DEBUG1 to
//!    a file, set before these runs): one per channel request that runs
//!    something (`exec`, `subsystem`, `shell`), plus the connections opened
//!    (`Accepted publickey`). The product is not instrumented.
//! 2. A fresh bootstrap with the driver's install given DRIVER_UNITS
//!    (UNIT below) beside the critical path: the same fresh bootstrap of
//!    another host with no duration given, plus the driver's units. The
//!    pull runs beside the steps from layout on; were it in the way, the
//!    fresh run would exceed that path.
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

/// One unit of the durations given, in seconds.
const UNIT_SECS: u64 = 1;
const DRIVER_UNITS: u64 = 3;

const SSH_TRUE_REPS: usize = 10;
const CONVERGED_REPS: usize = 5;

fn main() {
    if !report::start("bootstrap") {
        return;
    }
    let unit = Duration::from_secs(UNIT_SECS);
    let local = tempfile::tempdir().unwrap();

    // No duration given: a fresh bootstrap of one host.
    let t = Instant::now();
    let zero = ready_host();
    let zero_started = t.elapsed();
    let extra = image_args(local.path(), &zero);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let zero_state = state_for(&zero.host);
    let (zero_out, zero_fresh) = bootstrap(&zero.host, zero_state.path(), &extra);
    let zero_reboots = zero.host.reboots();
    drop(zero);

    // The driver's install given its units: fresh, then converged re-runs.
    let t = Instant::now();
    let ready = ready_host();
    let host = &ready.host;
    println!(
        "test hosts: booted Ubuntu 22.04 stand-ins (started in {} and {}), user {} (passwordless sudo) for ssh and bootstrap alike; unit {}: driver install {DRIVER_UNITS}",
        ms(zero_started),
        ms(t.elapsed()),
        host.default_user(),
        ms(unit)
    );
    println!();
    host.write("/var/lib/standin/hooks/slow-postinst", format!("{}\n", DRIVER_UNITS * UNIT_SECS).as_bytes());
    let extra = image_args(local.path(), &ready);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let state = state_for(host);
    let (first, fresh) = bootstrap(host, state.path(), &extra);
    let fresh_reboots = host.reboots();

    // sshd at DEBUG1 to a file from here on (Debian's ssh.service reads
    // its options from /etc/default/ssh; open sessions survive the restart).
    host.write("/etc/default/ssh", b"SSHD_OPTS='-o LogLevel=DEBUG1 -E /var/log/sshd-bench.log'\n");
    host.restart_sshd();
    let sshd_log = host.path_from_machine("/var/log/sshd-bench.log");

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
        let (out, d) = bootstrap(host, state.path(), &extra);
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

    // The facts command itself, each source timed on the host (the same
    // command with a mark before each part and root function).
    let sources = FactsSources::measure(host);

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
    table.row("fresh bootstrap, no duration given", &[zero_fresh], &format!("{zero_reboots} reboot(s)"));
    let critical = zero_fresh + unit * DRIVER_UNITS as u32;
    table.row("critical path: that + the driver's units", &[critical], "");
    table.row(
        &format!("fresh bootstrap, driver {DRIVER_UNITS} units"),
        &[fresh],
        &format!("{:.2}x the critical path; {fresh_reboots} reboot(s)", ratio(fresh, critical)),
    );
    table.note(
        "the steps in order with the driver's units; the pull (real, from the test registry) runs beside them"
            .to_string(),
    );
    println!("{}", table.render());
    println!();
    println!("{}", sources.table(ssh_median));
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
    println!("fresh steps, no duration given (time each): {}", times.join(" "));
    println!();
    let max_rt = *conv_rt.iter().max().unwrap();
    let ratio_fresh = ratio(fresh, critical);
    println!("targets (issues 5 and 27):");
    println!(
        "  converged re-run within 1.2x of one `ssh host true`: {} vs {} = {:.2}x (limit {}): {}",
        ms(conv_median),
        ms(ssh_median),
        ratio(conv_median, ssh_median),
        ms(ssh_median.mul_f64(1.2)),
        met(ratio(conv_median, ssh_median) <= 1.2)
    );
    let on_host = sources.on_host();
    println!("  the facts on the host within 100 ms: {}: {}", ms(on_host), met(on_host <= Duration::from_millis(100)));
    println!("  converged re-run in one round trip: {max_rt}: {}", met(max_rt <= 1));
    println!(
        "  fresh bootstrap within 1.15x of the critical path: {} vs {} = {ratio_fresh:.2}x: {}",
        ms(fresh),
        ms(critical),
        met(ratio_fresh <= 1.15)
    );
}

/// The timed facts command's runs over OpenSSH.
const FACTS_REPS: usize = 7;

/// Each fact source's time on the host, from FACTS_REPS runs of the timed
/// facts command (playbooks' `gather::timed_command`, with the inputs a
/// bootstrap with the IMAGE steps and a domain sends).
struct FactsSources {
    /// (source, its time in each run), in the order run.
    sources: Vec<(String, Vec<Duration>)>,
    /// First mark to last: the facts on the host.
    totals: Vec<Duration>,
    /// CPU used on the host (bash's `times`: the shell and its children).
    cpu: Vec<Duration>,
    /// The whole `ssh host COMMAND` with the script on stdin.
    walls: Vec<Duration>,
}

impl FactsSources {
    fn measure(host: &TestHost) -> FactsSources {
        use image_provision_playbooks::facts::{RawFacts, cpu_time, mark_times, marks_span};
        use image_provision_playbooks::gather::{FactsInputs, timed_command};
        use image_provision_playbooks::{Config, ImageConfig};
        let img = ImageConfig { domain: Some(DOMAIN.into()), ..ImageConfig::default() };
        let cmd = timed_command(&FactsInputs::for_config(&Config { image: Some(img), ..Config::default() }));
        let stdin = cmd.stdin_to_send().expect("a script");
        let mut m = FactsSources { sources: Vec::new(), totals: Vec::new(), cpu: Vec::new(), walls: Vec::new() };
        for _ in 0..FACTS_REPS {
            let t = Instant::now();
            let out = host.ssh_with_stdin(host.default_user(), &cmd.render(false), &stdin);
            m.walls.push(t.elapsed());
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.status.success(), "timed facts failed: {text}{}", String::from_utf8_lossy(&out.stderr));
            let raw = RawFacts::parse(&text);
            let times = mark_times(&raw);
            m.totals.push(marks_span(&raw));
            m.cpu.extend(cpu_time(&text));
            for (label, d) in times {
                match m.sources.iter_mut().find(|(l, _)| *l == label) {
                    Some((_, ds)) => ds.push(d),
                    None => m.sources.push((label, vec![d])),
                }
            }
        }
        m
    }

    fn on_host(&self) -> Duration {
        median(&self.totals)
    }

    fn table(&self, ssh_true: Duration) -> String {
        let mut t = Table::default();
        for (label, ds) in &self.sources {
            // Those under a millisecond in every run: noise in the table.
            if ds.iter().any(|d| *d >= Duration::from_millis(1)) {
                t.row(&format!("  {label}"), ds, "");
            }
        }
        t.row("the facts on the host (first mark to last)", &self.totals, "");
        t.row("  CPU used on the host (the shell and its children)", &self.cpu, "");
        t.row(
            "`ssh host FACTS` (OpenSSH client, whole process)",
            &self.walls,
            &format!("{:.2}x `ssh host true`", ratio(median(&self.walls), ssh_true)),
        );
        t.note("each fact source's time on the host: the timed facts command (gather::timed_command), as the user, then root's functions (one sudo, run beside the user's parts)".to_string());
        t.render()
    }
}

/// A booted host with what the IMAGE steps reach (the stand-ins, the
/// registry, pebble) and the `--acme-server` URL of its pebble.
struct Ready {
    host: TestHost,
    acme: String,
    llm_url: String,
}

/// The LLM stand-in's key and model (a bench, not a secret).
const LLM_KEY: &str = "sk-bench";
const LLM_MODEL: &str = "Qwen/Qwen2.5-VL-7B-Instruct";

fn ready_host() -> Ready {
    let host = TestHost::boot(Distro::Ubuntu2204Standin);
    host.enable_pinned_bootstrap_standins();
    host.enable_image_server_standins();
    host.enable_registry();
    let acme = host.enable_acme();
    let llm_url = host.enable_llm(LLM_KEY, &[LLM_MODEL]);
    Ready { host, acme, llm_url }
}

fn image_args(dir: &Path, ready: &Ready) -> Vec<String> {
    let Ready { acme, llm_url, .. } = ready;
    std::fs::write(dir.join("llm.env"), format!("LLM_URL={llm_url}\nLLM_API_KEY={LLM_KEY}\nLLM_MODEL={LLM_MODEL}\n"))
        .unwrap();
    std::fs::write(dir.join("maps.env"), "GOOGLE_PLACES_API_KEY=maps-placeholder\n").unwrap();
    vec![
        "--domain".into(),
        DOMAIN.into(),
        "--acme-email".into(),
        "ops@example.org".into(),
        "--acme-server".into(),
        acme.clone(),
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
