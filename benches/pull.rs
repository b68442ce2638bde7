//! Figures for Docker's `max-concurrent-downloads` (the docker step's
//! [`MAX_CONCURRENT_DOWNLOADS`]) on a booted test host (prints a table; no
//! assertions on the figures, not a timed test):
//!
//! ```text
//! cargo bench --profile dev --bench pull
//! ```
//!
//! Needs what the booted test hosts need (`bash tests/run` sets it up) and
//! about 3 × IMAGES × LAYERS × LAYER_MIB of free disk (the registry's copy,
//! Docker's compressed download and its unpacked layers). The host is a
//! booted Ubuntu 22.04 stand-in with real Docker, installed by `bootstrap
//! --no-stack --no-gpu`. IMAGES images of LAYERS random, incompressible
//! layers (tests/testhost/registry/random-images.py) are served by a real
//! registry at the machine's end of the host's network, over HTTPS
//! (TestHost::enable_extra_registry). All of them are pulled at once, as
//! `docker compose pull` pulls a stack's images, and timed: once to warm the
//! registry's page cache (not counted), then with Docker's default (no key
//! in daemon.json: 3 layers at once for the whole daemon), then with the
//! docker step's value; the images are removed between pulls.
//!
//! It runs only when given `--bench` (as `cargo bench` does).

use std::time::{Duration, Instant};

use image_provision_playbooks::steps::docker::{DAEMON_JSON, MAX_CONCURRENT_DOWNLOADS};
use image_provision_testsupport::cli::{self, state_for};
use image_provision_testsupport::report::{self, Table, ms};
use image_provision_testsupport::testhost::{Distro, TestHost};

/// The binary that installs Docker on the host.
const BIN: &str = env!("CARGO_BIN_EXE_image-provision");

/// IMAGE's stack: some 20 images. Each here LAYERS × LAYER_MIB (scaled
/// down from IMAGE's several hundred MB to fit this machine's disk and
/// time; the ratio of the two figures is what the bench is for).
const IMAGES: usize = 20;
const LAYERS: usize = 3;
const LAYER_MIB: usize = 64;
/// Where the host finds the bench registry, beside the usual one on 443.
const REGISTRY_PORT: u16 = 5443;

fn main() {
    if !report::start("pull") {
        return;
    }
    // On disk, not /tmp: some GB.
    let storage = tempfile::tempdir_in("/var/tmp").expect("a directory in /var/tmp");
    let t = Instant::now();
    let generate = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testhost/registry/random-images.py"))
        .arg(storage.path())
        .args([IMAGES, LAYERS, LAYER_MIB].map(|n| n.to_string()))
        .status()
        .expect("running python3");
    assert!(generate.success(), "random-images.py failed");
    let generated = t.elapsed();

    let t = Instant::now();
    let host = TestHost::boot(Distro::Ubuntu2204Standin);
    host.enable_pinned_bootstrap_standins();
    host.enable_registry();
    let registry = host.enable_extra_registry(storage.path(), REGISTRY_PORT);
    let state = state_for(&host);
    let user = host.default_user();
    let out = cli::run(
        &mut cli::on_host(BIN, &host, user, state.path(), &["bootstrap", "--no-stack", "--no-gpu"]),
        "bootstrap --no-stack --no-gpu",
    );
    assert!(out.status.success(), "bootstrap failed:\n{}{}", cli::stdout(&out), cli::stderr(&out));
    println!(
        "test host: booted Ubuntu 22.04 stand-in, Docker {} (ready in {}); {IMAGES} images of {LAYERS} × {LAYER_MIB} MiB random layers ({} MiB in all, generated in {})",
        host.sh_ok("docker info --format '{{.ServerVersion}}'").trim(),
        ms(t.elapsed()),
        IMAGES * LAYERS * LAYER_MIB,
        ms(generated),
    );

    let images: Vec<String> = (1..=IMAGES).map(|n| format!("{registry}/bench/image-{n}:latest")).collect();
    pull_all(&host, &images, None);
    let default = pull_all(&host, &images, None);
    let tuned = pull_all(&host, &images, Some(MAX_CONCURRENT_DOWNLOADS));

    let mut table = Table::default();
    let mib = (IMAGES * LAYERS * LAYER_MIB) as f64;
    let rate = |d: Duration| format!("{:.0} MiB/s", mib / d.as_secs_f64());
    table.row("pull, Docker's default (3 at once)", &[default], &rate(default));
    table.row(&format!("pull, max-concurrent-downloads {MAX_CONCURRENT_DOWNLOADS}"), &[tuned], &rate(tuned));
    table.note(format!(
        "all {IMAGES} pulled at once, as `docker compose pull` does; a first pull warmed the registry's page cache"
    ));
    println!("{}", table.render());
}

/// Restart Docker with `downloads` in daemon.json (None: the key removed,
/// Docker's default), pull every image at once and time it, then remove them.
fn pull_all(host: &TestHost, images: &[String], downloads: Option<u32>) -> Duration {
    let filter = match downloads {
        Some(n) => format!(".\"max-concurrent-downloads\" = {n}"),
        None => "del(.\"max-concurrent-downloads\")".into(),
    };
    host.sh_ok(&format!(
        "set -e; jq '{filter}' {DAEMON_JSON} >{DAEMON_JSON}.new && mv {DAEMON_JSON}.new {DAEMON_JSON}; \
         systemctl restart docker; docker info >/dev/null"
    ));
    let list = images.join(" ");
    let t = Instant::now();
    host.sh_ok(&format!("printf '%s\\n' {list} | xargs -P {} -n 1 docker pull -q >/dev/null", images.len()));
    let took = t.elapsed();
    host.sh_ok(&format!("docker rmi {list} >/dev/null && docker image prune -f >/dev/null"));
    took
}
