//! Figures for `fleet create`: a fleet of 3 servers against a fleet of 1
//! (the target: within 1.3x), and 3 made one at a time (--parallel 1), each
//! run against a fresh moto (EC2, ELB v2, ACM, Route 53) with
//! --no-bootstrap. Prints a table; no assertions on the figures, not a
//! timed test:
//!
//! ```text
//! cargo bench --profile dev --bench fleet
//! ```
//!
//! What it measures is the tool's own part: the front (group, target group,
//! balancer, certificate and records; moto issues the certificate after
//! MOTO_ACM_VALIDATION_WAIT, 3 s here) and the servers' AWS calls and SSH
//! waits, made side by side. The host steps are left out: on AWS each
//! server's run on its own machine, side by side up to --parallel, so they
//! add the slowest server's time, not the sum; on this 2-core machine
//! several booted hosts at once would measure this machine instead.
//!
//! It runs only when given `--bench` (as `cargo bench` does).

use std::process::Output;
use std::time::{Duration, Instant};

use image_provision_testsupport::ec2env::{Ec2Env, rt};
use image_provision_testsupport::report::{self, Table, median};

const BIN: &str = env!("CARGO_BIN_EXE_image-provision");
const RUNS: usize = 3;

fn fleet_create(count: u32, parallel: u32, domain: bool) -> Duration {
    let env = Ec2Env::start(BIN);
    let mut args = vec!["fleet".to_owned(), "create".into(), "bench".into(), "--no-bootstrap".into()];
    args.extend(["--count".into(), count.to_string(), "--parallel".into(), parallel.to_string()]);
    if domain {
        let zone = env.route53().create_hosted_zone().name("example.org").caller_reference("bench");
        rt().block_on(zone.send()).expect("a hosted zone on moto");
        args.extend(["--domain".into(), "www.example.org".into()]);
    }
    let t = Instant::now();
    let out: Output = env.cmd().args(&args).output().expect("running image-provision");
    let took = t.elapsed();
    assert!(out.status.success(), "fleet create failed:\n{}", String::from_utf8_lossy(&out.stderr));
    took
}

fn main() {
    if !report::start("fleet") {
        return;
    }
    for domain in [false, true] {
        let mut table = Table::default();
        let sample = |count, parallel| (0..RUNS).map(|_| fleet_create(count, parallel, domain)).collect::<Vec<_>>();
        let one = sample(1, 4);
        let three = sample(3, 4);
        let serial = sample(3, 1);
        let ratio = |s: &[Duration]| median(s).as_secs_f64() / median(&one).as_secs_f64();
        table.row("fleet create --count 1", &one, "");
        table.row("fleet create --count 3", &three, &format!("{:.2}x of 1 (target: within 1.3x)", ratio(&three)));
        table.row("fleet create --count 3 --parallel 1", &serial, &format!("{:.2}x of 1", ratio(&serial)));
        table.note(format!(
            "{}: each run against a fresh moto with --no-bootstrap",
            if domain { "with --domain (ACM certificate, alias record)" } else { "without --domain (HTTP listener)" }
        ));
        println!("{}", table.render());
    }
}
