//! What the benches share around their figures: when to run, a header
//! naming the command, binary, machine and profile, the `ssh host true`
//! baseline, durations in milliseconds, and the table of medians. Used by
//! benches/remote.rs and benches/bootstrap.rs.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Whether benches/`what`.rs is to run: only when given `--bench` (as
/// `cargo bench` does), not under `cargo test --benches` or a test runner's
/// `--list`. When it runs, the header comes first.
pub fn start(what: &str) -> bool {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        // A test runner asking for tests: there are none here.
        return false;
    }
    if !args.iter().any(|a| a == "--bench") {
        println!("benches/{what}.rs: figures only; run `cargo bench --profile dev --bench {what}`");
        return false;
    }
    header(what, &args);
    true
}

/// `image-provision {what} benchmark`, then what was run, where and how.
fn header(what: &str, args: &[String]) {
    // cargo is our parent: its command line is what was typed.
    let cargo = std::fs::read(format!("/proc/{}/cmdline", std::os::unix::process::parent_id()))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from(&args[0]));
    // target/<dir>/deps/<bench>-<hash>: "debug" for the dev profile, "release"
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
    println!("image-provision {what} benchmark");
    println!("command: {}", if cargo.is_empty() { args.join(" ") } else { cargo });
    println!("binary:  {}", args.join(" "));
    println!("machine: nproc {nproc}, {cpu}");
    println!(
        "profile: {profile} (target/{dir}, debug assertions {})",
        if cfg!(debug_assertions) { "on" } else { "off" }
    );
}

/// One `ssh host true` through `ssh` (OpenSSH's client, set up to log in to
/// the test host), timed as a whole process: the baseline both benches
/// measure against.
pub fn ssh_true(ssh: &mut Command) -> Duration {
    let t = Instant::now();
    let out = ssh.arg("true").output().expect("running ssh (install openssh-client)");
    let d = t.elapsed();
    assert!(out.status.success(), "ssh host true failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    d
}

pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

pub fn median(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    let n = s.len();
    if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2 }
}

/// Rows of samples (n, median, min, max, a note), then notes.
#[derive(Default)]
pub struct Table {
    rows: Vec<[String; 6]>,
    notes: Vec<String>,
}

impl Table {
    pub fn row(&mut self, what: &str, samples: &[Duration], note: &str) {
        let mut s = samples.to_vec();
        s.sort();
        let n = s.len();
        self.rows.push([what.to_owned(), n.to_string(), ms(median(&s)), ms(s[0]), ms(s[n - 1]), note.to_owned()]);
    }

    pub fn note(&mut self, text: String) {
        self.notes.push(text);
    }

    pub fn render(&self) -> String {
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
