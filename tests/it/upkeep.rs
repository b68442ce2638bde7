//! What keeps a server right after bootstrap (the upkeep step), on a booted
//! test host: real systemd runs the units and timers bootstrap installs,
//! real Docker the stack. The stack comes back after a real reboot with no
//! command from outside; the IMAGE team's healthcheck (the stand-in
//! repository's, which behaves as the real one) fires and logs; pruning
//! removes a dangling image and nothing in use; the nightly update runs
//! imageup --service; turned off, a unit is removed; with --autostop, the
//! host's idle stop fires once no request has come for that long; with
//! --ttl, the host powers itself off at its expiry, which a bootstrap
//! without --ttl keeps. The driver bootstrap holds, upgraded on purpose
//! (`update --upgrade-driver`): moved to the default branch, then within it.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use image_provision_testsupport::cli::{self, outcomes, state_for, stderr, stdout};
use image_provision_testsupport::testhost::{Distro, TestHost};

use crate::BIN;

const BASE: &str = "/var/docker/image";
const LOGS: &str = "/var/docker/image/logs/healthcheck";

/// The newer driver's version (the stand-in archive has 580.95.05).
const NEWER: &str = "580.105.08-0ubuntu0.22.04.1";

/// A newer build of the installed driver (its metapackage and utilities,
/// made from the installed ones, the version changed) in a local apt
/// source: what Ubuntu's archive publishes when NVIDIA releases a fix.
const NEWER_DRIVER: &str = r#"set -euo pipefail
v=580.105.08-0ubuntu0.22.04.1
repo=/srv/newer-driver
work=$(mktemp -d)
mkdir -p "$repo"
for p in nvidia-utils-580-server nvidia-driver-580-server; do
    mkdir -p "$work/$p/DEBIAN"
    dpkg-query -s "$p" | grep -E '^(Package|Architecture|Maintainer|Depends|Conflicts|Description):' |
        sed "s/580\.95\.05-0ubuntu0\.22\.04\.1/$v/g" >"$work/$p/DEBIAN/control"
    echo "Version: $v" >>"$work/$p/DEBIAN/control"
    for f in postinst postrm; do
        if [ -f "/var/lib/dpkg/info/$p.$f" ]; then
            sed 's/580\.95\.05/580.105.08/g' "/var/lib/dpkg/info/$p.$f" >"$work/$p/DEBIAN/$f"
            chmod 0755 "$work/$p/DEBIAN/$f"
        fi
    done
    dpkg-query -L "$p" | while read -r f; do
        if [ -f "$f" ]; then mkdir -p "$work/$p$(dirname "$f")"; cp -a "$f" "$work/$p$f"; fi
    done
    dpkg-deb --build -Zgzip "$work/$p" "$repo/$p.deb" >/dev/null
done
cd "$repo"
for deb in *.deb; do
    dpkg-deb -f "$deb"
    echo "Filename: ./$deb"
    echo "Size: $(stat -c %s "$deb")"
    echo "SHA256: $(sha256sum "$deb" | cut -d' ' -f1)"
    echo
done >Packages
echo "deb [trusted=yes] file:$repo ./" >/etc/apt/sources.list.d/newer-driver.list
"#;

fn run(host: &TestHost, state: &Path, args: &[&str]) -> Output {
    cli::run(&mut cli::on_host(BIN, host, host.default_user(), state, args), &format!("{args:?}"))
}

/// The stack's containers on the image network that run, sorted.
fn running(host: &TestHost) -> Vec<String> {
    let names = host.sh_ok("docker ps --filter network=image --format '{{.Names}}' | sort");
    names.lines().map(str::to_string).collect()
}

/// The newest healthcheck log's text.
fn newest_log(host: &TestHost) -> String {
    host.sh_ok(&format!("cat \"$(ls -t {LOGS}/docker_healthcheck_*.log | head -n 1)\""))
}

#[test]
fn the_stack_comes_back_after_a_reboot_and_the_timers_do_their_work() {
    let host = TestHost::boot(Distro::Ubuntu2204Standin);
    host.enable_pinned_bootstrap_standins();
    host.enable_image_server_standins();
    host.enable_registry();
    let state = state_for(&host);
    let local = tempfile::tempdir().unwrap();
    // A webhook no one answers (the discard port): the check's post fails
    // and says so in its log; the URL is a credential and is never shown.
    let webhook = format!("http://127.0.0.1:9/services/T0/B0/{:016x}", std::process::id() as u64 * 0x9e37_79b9);
    let hook_env = local.path().join("healthcheck.env");
    std::fs::write(&hook_env, format!("# the team's channel\nSLACK_WEBHOOK_URL={webhook}\n")).unwrap();
    let hook_arg = format!("healthcheck.env={}", hook_env.display());
    let common = [
        "bootstrap",
        "--no-llm",
        "--image-profile",
        "test",
        "--imageup-timeout",
        "3m",
        "--healthcheck-every",
        "5m",
        "--env-file",
        &hook_arg,
    ];
    let args = [&common[..], &["--auto-update", "03:30"]].concat();
    let boot = run(&host, state.path(), &args);
    assert!(boot.status.success(), "bootstrap failed");
    let shown = format!("{}{}", stdout(&boot), stderr(&boot));
    assert!(!shown.contains(&webhook), "the webhook was shown");
    let upkeep = cli::step_line(&boot, "upkeep");
    assert!(
        upkeep.contains(
            "install: the stack starts at boot; health check every 300s; update at *-*-* 03:30:00 UTC; \
             dangling images pruned weekly"
        ),
        "{upkeep}"
    );
    assert_eq!(upkeep.split_whitespace().nth(1), Some("changed"), "{upkeep}");

    // Installed, enabled, and the timers waiting with their schedules.
    let units = "image-provision-stack.service image-provision-healthcheck.timer image-provision-update.timer \
                 image-provision-prune.timer";
    assert_eq!(host.sh_ok(&format!("systemctl is-enabled {units}")), "enabled\n".repeat(4));
    let timers = "image-provision-healthcheck.timer image-provision-update.timer image-provision-prune.timer";
    assert_eq!(host.sh_ok(&format!("systemctl is-active {timers}")), "active\n".repeat(3));
    let calendar = host.sh_ok("systemctl show -p TimersCalendar --value image-provision-update.timer");
    assert!(calendar.contains("03:30:00 UTC"), "{calendar}");
    let monotonic = host.sh_ok("systemctl show -p TimersMonotonic --value image-provision-healthcheck.timer");
    assert!(monotonic.contains("OnUnitActiveUSec=5min"), "{monotonic}");
    assert!(!host.exists("/etc/systemd/system/image-provision-expire.timer"), "no --ttl, no power-off");
    // The driver is held against unattended upgrades.
    let held = host.sh_ok("apt-mark showhold");
    assert!(held.contains("nvidia-driver-580-server") && held.contains("nvidia-utils-580-server"), "{held}");
    // The operator scripts' env files: healthcheck.env root's only, with
    // the webhook and our LOG_DIR; bin/imagelogs works as written.
    let env = format!("{BASE}/IMAGE-server/config/healthcheck.env");
    assert_eq!(host.sh_ok(&format!("stat -c %a {env}")).trim(), "600");
    let text = String::from_utf8(host.read(&env)).unwrap();
    assert!(text.contains(&format!("SLACK_WEBHOOK_URL={webhook}\n")) && text.contains(&format!("LOG_DIR={LOGS}\n")));
    let logs = host.sh(&format!("{BASE}/bin/imagelogs"));
    assert!(logs.status.success(), "imagelogs: {}", String::from_utf8_lossy(&logs.stderr));

    // The healthcheck, triggered as its timer would: a log of every
    // container, and logs older than two weeks pruned.
    let stack = running(&host);
    assert!(stack.len() >= 5, "{stack:?}");
    host.sh_ok(&format!("mkdir -p {LOGS} && touch -d '20 days ago' {LOGS}/docker_healthcheck_20000101_000000.log"));
    host.sh_ok("systemctl start image-provision-healthcheck.service");
    let log = newest_log(&host);
    assert!(log.contains("No issues detected") && log.contains(&stack[0]), "{log}");
    assert!(!host.exists(&format!("{LOGS}/docker_healthcheck_20000101_000000.log")), "the old log stays");
    // A stopped service is flagged, and the post to the webhook tried.
    let stopped = stack.iter().find(|c| !c.contains("orchestrator")).unwrap().clone();
    host.sh_ok(&format!("docker stop {stopped} >/dev/null; sleep 1"));
    host.sh_ok("systemctl start image-provision-healthcheck.service");
    let log = newest_log(&host);
    assert!(log.contains(&format!("Expected container *{stopped}")) && log.contains("not running"), "{log}");
    assert!(log.contains("Error sending Slack notification"), "{log}");

    // Pruning: a dangling image goes, every image a container uses stays.
    let commit = format!("docker commit {} local/scratch:1 >/dev/null", stack[0]);
    host.sh_ok(&format!("{commit}; {commit}"));
    assert_eq!(host.sh_ok("docker images -q -f dangling=true | wc -l").trim(), "1");
    host.sh_ok("systemctl start image-provision-prune.service");
    assert_eq!(host.sh_ok("docker images -q -f dangling=true | wc -l").trim(), "0");
    host.sh_ok("docker ps -a --format '{{.Image}}' | sort -u | xargs docker image inspect >/dev/null");
    host.sh_ok("docker image inspect local/scratch:1 >/dev/null");

    // A re-run changes nothing.
    host.sh_ok(&format!("docker start {stopped} >/dev/null"));
    let again = run(&host, state.path(), &args);
    assert!(again.status.success());
    for (step, outcome) in outcomes(&again) {
        let want = if step == "traefik" || step == "llm" || step == "webui" { "skipped" } else { "ok" }; // no --domain, no local LLM
        assert_eq!(outcome, want, "step {step} on the re-run:\n{}", stdout(&again));
    }
    // A re-run that gives no healthcheck.env keeps the server's, webhook
    // and all, and restarts nothing (the stack's deploy stamp is the same).
    let hook_text = host.read(&env);
    let imageups = cli::imageups(&host);
    let without: Vec<&str> = args.iter().copied().filter(|a| *a != "--env-file" && *a != hook_arg).collect();
    let kept = run(&host, state.path(), &without);
    assert!(kept.status.success(), "bootstrap without --env-file healthcheck.env");
    for (step, outcome) in outcomes(&kept) {
        let want = if step == "traefik" || step == "llm" || step == "webui" { "skipped" } else { "ok" };
        assert_eq!(outcome, want, "step {step} on the re-run without healthcheck.env:\n{}", stdout(&kept));
    }
    assert_eq!(host.read(&env), hook_text, "healthcheck.env changed");
    assert_eq!(cli::imageups(&host), imageups, "a re-run without healthcheck.env ran imageup");
    // Removed on purpose (`healthcheck.env=`): ours, with no webhook; the
    // stack untouched.
    let emptied = run(&host, state.path(), &[&without[..], &["--env-file", "healthcheck.env="]].concat());
    assert!(emptied.status.success(), "bootstrap --env-file healthcheck.env=");
    for (step, outcome) in outcomes(&emptied) {
        let want = match step.as_str() {
            "traefik" | "llm" | "webui" => "skipped",
            "layout" => "changed",
            _ => "ok",
        };
        assert_eq!(outcome, want, "step {step} with healthcheck.env=:\n{}", stdout(&emptied));
    }
    let text = String::from_utf8(host.read(&env)).unwrap();
    assert!(!text.contains("SLACK_WEBHOOK_URL") && text.ends_with(&format!("\nLOG_DIR={LOGS}\n")), "{text}");
    assert_eq!(host.sh_ok(&format!("stat -c %a {env}")).trim(), "600");
    assert_eq!(cli::imageups(&host), imageups, "emptying healthcheck.env ran imageup");
    host.sh_ok(&format!("docker stop {stopped} >/dev/null"));

    // A real reboot: every IMAGE service has restart: "no", yet the stack
    // (the stopped service too) is back with no command from outside.
    let reboots = host.reboots();
    let _ = host.ssh_command("root").arg("systemctl reboot").output();
    let deadline = Instant::now() + Duration::from_secs(120);
    while host.reboots() <= reboots {
        assert!(Instant::now() < deadline, "no reboot within 120 s:\n{}", host.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    host.wait_for_sshd(Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let done = host.sh("systemctl is-active image-provision-stack.service").stdout == b"active\n";
        if done && running(&host) == stack {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stack is not back 240 s after the reboot: {:?}\n{}",
            running(&host),
            host.sh_ok("journalctl -b -u image-provision-stack --no-pager | tail -n 30")
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let journal = host.sh_ok("journalctl -b -u image-provision-stack --no-pager");
    assert!(journal.contains("starting the stack's containers") && journal.contains("the stack is up"), "{journal}");
    let warmups = host.sh_ok(&format!("ls {BASE}/testing/warmup | wc -l"));
    assert!(warmups.trim().parse::<u32>().unwrap() >= 2, "warmup ran at boot too: {warmups}");
    // Healthy once the images' own checks have run (warmup waits only for
    // the services that warm up), as a person's verify would see it.
    let deadline = Instant::now() + Duration::from_secs(120);
    let v = loop {
        let out = run(&host, state.path(), &["verify", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if v["healthy"] == true {
            break v;
        }
        assert!(Instant::now() < deadline, "not healthy 120 s after the stack came back: {v}");
        std::thread::sleep(Duration::from_secs(3));
    };
    let check = v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "upkeep").unwrap().clone();
    assert_eq!(check["status"], "ok", "{check}");
    assert!(check["detail"].as_str().unwrap().contains("the stack starts at boot"), "{check}");

    // The nightly update, triggered as its timer would: imageup --service
    // under the lock, then the health check.
    let imageups = cli::imageups(&host);
    let checks = host.sh_ok(&format!("ls {LOGS} | wc -l"));
    host.sh_ok("systemctl start image-provision-update.service");
    assert_eq!(cli::imageups(&host), imageups + 1);
    assert!(host.calls().iter().any(|c| c.ends_with("imageup --service")), "{:?}", host.calls());
    let journal = host.sh_ok("journalctl -u image-provision-update --no-pager");
    assert!(journal.contains("imageup --service done"), "{journal}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while host.sh_ok(&format!("ls {LOGS} | wc -l")) == checks {
        assert!(Instant::now() < deadline, "no health check after the update");
        std::thread::sleep(Duration::from_millis(500));
    }

    // Turned off: the update timer and its unit stopped and removed.
    let off = run(&host, state.path(), &[&common[..], &["--auto-update", "off"]].concat());
    assert!(off.status.success());
    let line = cli::step_line(&off, "upkeep");
    assert!(line.contains("remove: image-provision-update.timer") && !line.contains("update.service"), "{line}");
    assert!(!host.exists("/etc/systemd/system/image-provision-update.timer"));
    assert!(!host.exists("/etc/systemd/system/image-provision-update.service"));
    assert_eq!(host.sh("systemctl is-active image-provision-update.timer").status.code(), Some(3));

    // Applied means applied: the connection cut after a changed unit is
    // uploaded, before systemd has it (before the daemon-reload; then,
    // changed back, before the timer's restart). The run reconnects, plans
    // again from the host as it is, finds the files as wanted, and still
    // applies them: they were pending until the apply.
    let every = |span: &'static str| -> Vec<&str> {
        let mut args: Vec<&str> = common.iter().map(|a| if *a == "5m" { span } else { a }).collect();
        args.extend(["--auto-update", "off"]);
        args
    };
    let timer = "image-provision-healthcheck.timer";
    let started = |host: &TestHost| host.sh_ok(&format!("systemctl show -p ActiveEnterTimestampMonotonic {timer}"));
    host.cut_ssh_before("systemctl", "daemon-reload");
    let cut = run(&host, state.path(), &every("7m"));
    assert!(cut.status.success(), "a run cut before the daemon-reload");
    assert!(stderr(&cut).contains("upkeep: connection lost"), "{}", stderr(&cut));
    assert_eq!(host.cuts().len(), 1, "{:?}", host.cuts());
    let monotonic = host.sh_ok(&format!("systemctl show -p TimersMonotonic --value {timer}"));
    assert!(monotonic.contains("OnUnitActiveUSec=7min"), "systemd has the new schedule: {monotonic}");
    let before = started(&host);
    host.cut_ssh_before("systemctl", &format!("restart {timer}"));
    let cut = run(&host, state.path(), &every("5m"));
    assert!(cut.status.success(), "a run cut before the timer's restart");
    assert!(stderr(&cut).contains("upkeep: connection lost"), "{}", stderr(&cut));
    assert_eq!(host.cuts().len(), 2, "{:?}", host.cuts());
    assert_ne!(started(&host), before, "the timer was restarted with its new schedule after the cut");
    let monotonic = host.sh_ok(&format!("systemctl show -p TimersMonotonic --value {timer}"));
    assert!(monotonic.contains("OnUnitActiveUSec=5min"), "{monotonic}");
    let line = cli::step_line(&run(&host, state.path(), &every("5m")), "upkeep");
    assert_eq!(line.split_whitespace().nth(1), Some("ok"), "applied once, nothing left to do: {line}");

    // The idle stop. `--autostop 20s` and no request after it: its timer
    // looks every 5 s, counting from its arming, and once 20 s have gone by
    // with no request in the orchestrator's log, the host powers itself
    // off. Here poweroff.target is masked, so that this host lives on for
    // the expiry below (which proves the power-off itself): what this part
    // sees is the decision, made by real systemd and read from real
    // Docker's log, and the power-off asked for.
    host.sh_ok("systemctl mask poweroff.target");
    let idle = run(&host, state.path(), &[&common[..], &["--auto-update", "off", "--autostop", "20s"]].concat());
    assert!(idle.status.success(), "bootstrap --autostop 20s");
    let line = cli::step_line(&idle, "upkeep");
    assert!(line.contains("install: stops after 20s without a request"), "{line}");
    let journal = || host.sh_ok("journalctl -u image-provision-autostop --no-pager");
    let fired = "image-provision: no request has reached the orchestrator for ";
    let deadline = Instant::now() + Duration::from_secs(60);
    while !journal().contains(fired) {
        assert!(Instant::now() < deadline, "no idle stop 60 s after --autostop 20s:\n{}", journal());
        std::thread::sleep(Duration::from_millis(500));
    }
    // The script's stderr (systemctl's refusal) and systemd's own lines
    // reach journald by different sockets: under load the refusal can come
    // in after "Failed with result". Wait for it, within a limit.
    let refused = |text: &str| text.contains("Call to PowerOff failed") || text.contains("poweroff.target is masked");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut text = journal();
    while !refused(&text) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        text = journal();
    }
    assert!(text.contains("image-provision: idle for ") && text.contains("since the idle stop was armed"), "{text}");
    // It found the stack's orchestrator (running since before the arming)
    // and read its log.
    assert!(!text.contains("the orchestrator is not running"), "{text}");
    let idled: u64 = text.split(fired).nth(1).and_then(|t| t.split('s').next()).unwrap().parse().unwrap();
    assert!((20..40).contains(&idled), "fired after {idled} s idle, not 20 s: {text}");
    // Asked for, and refused (logind's answer to a masked target).
    assert!(refused(&text), "the power-off was asked for (and refused) within 20 s: {text}");
    // `--autostop off` removes it. poweroff.target stays masked until then:
    // the timer still looks every 5 s, and unmasked, its next look powered
    // the host off before the removal (a run's "cannot reach" after it).
    let off = run(&host, state.path(), &[&common[..], &["--auto-update", "off", "--autostop", "off"]].concat());
    assert!(off.status.success(), "bootstrap --autostop off");
    let line = cli::step_line(&off, "upkeep");
    assert!(line.contains("remove: image-provision-autostop.timer"), "{line}");
    assert!(!host.exists("/etc/systemd/system/image-provision-autostop.timer"));
    assert!(!host.exists("/usr/local/lib/image-provision/autostop.sh"));
    host.sh_ok("systemctl unmask poweroff.target");

    // The expiry. `--ttl 2h` arms it: the timer waits for its calendar
    // time, and the check it ran as it started found the time not yet come.
    let armed = run(&host, state.path(), &[&common[..], &["--auto-update", "off", "--ttl", "2h"]].concat());
    assert!(armed.status.success(), "bootstrap --ttl 2h");
    let line = cli::step_line(&armed, "upkeep");
    let at = line.split("install: powers off at ").nth(1).unwrap_or_else(|| panic!("{line}")).trim().to_string();
    let left = at.parse::<jiff::Timestamp>().unwrap().duration_since(jiff::Timestamp::now()).as_secs();
    assert!((7000..=7200).contains(&left), "{at} is not 2 h from now");
    let expire = "image-provision-expire.timer";
    assert_eq!(
        host.sh_ok(&format!("systemctl is-enabled {expire}; systemctl is-active {expire}")),
        "enabled\nactive\n"
    );
    let calendar = host.sh_ok(&format!("systemctl show -p TimersCalendar --value {expire}"));
    let utc = at.parse::<jiff::Timestamp>().unwrap().strftime("%Y-%m-%d %H:%M:%S UTC").to_string();
    assert!(calendar.contains(&format!("OnCalendar={utc} ;")), "{calendar}");
    let said = format!("this server expires at {at}, in 1h 59m");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !host.sh_ok("journalctl -u image-provision-expire --no-pager").contains(&said) {
        assert!(
            Instant::now() < deadline,
            "the check at start did not run: {}",
            host.sh_ok("journalctl -u image-provision-expire --no-pager")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Without --ttl, bootstrap keeps the host's expiry (it used to remove
    // the power-off).
    let kept = run(&host, state.path(), &[&common[..], &["--auto-update", "off"]].concat());
    assert!(kept.status.success(), "bootstrap without --ttl");
    let line = cli::step_line(&kept, "upkeep");
    assert_eq!(line.split_whitespace().nth(1), Some("ok"), "{line}");
    assert!(line.ends_with(&format!("; powers off at {at}")), "{line}");
    assert_eq!(host.sh_ok(&format!("systemctl is-active {expire}")), "active\n");

    // An expiry already past while the host runs: its power-off stopped
    // (by hand, say) and the expiry then gone by, here moved an hour into
    // the past as the upkeep step renders it. Nothing fires by itself; a
    // bootstrap without --ttl keeps that expiry and starts the timer again,
    // so the host says it expired and powers off at once. A power-off, not
    // a reboot: nspawn exits for good.
    let past = jiff::Timestamp::now().checked_sub(jiff::SignedDuration::from_hours(1)).unwrap();
    let past = past.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    host.sh_ok(&format!("systemctl stop {expire}"));
    for f in image_provision_playbooks::steps::upkeep::expiry_files(&past).unwrap() {
        host.write(&f.path, f.content.as_bytes());
    }
    host.sh_ok("systemctl daemon-reload");
    std::thread::sleep(Duration::from_secs(3));
    assert!(!host.powered_off() && host.sh("true").status.success(), "the stopped timer fired:\n{}", host.logs());
    let reboots = host.reboots();
    let end = run(&host, state.path(), &[&common[..], &["--auto-update", "off"]].concat());
    assert!(end.status.success(), "bootstrap without --ttl, the expiry past");
    let line = cli::step_line(&end, "upkeep");
    assert!(line.ends_with(&format!("install: powers off now (its expiry, {past}, has passed)")), "{line}");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !host.powered_off() {
        assert!(Instant::now() < deadline, "no power-off 90 s after re-arming the expiry {past}:\n{}", host.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    let console = host.console();
    assert!(
        console.contains(&format!("image-provision: this server expired at {past}; powering it off now")),
        "{console}"
    );
    assert_eq!(host.reboots(), reboots);
}

/// `update --upgrade-driver` on a server bootstrapped with the previous
/// default branch (570-server): moved to the default (580-server), the old
/// branch's packages replaced and the new ones held, one reboot, the stack
/// back and updated after it; then within the branch, with nothing newer,
/// no reboot; with a newer build in an apt source, upgraded, held again,
/// one reboot; verify reports the driver that runs.
#[test]
fn upgrade_driver_moves_to_the_default_branch_then_upgrades_within_it() {
    let host = TestHost::boot(Distro::Ubuntu2204Standin);
    host.enable_pinned_bootstrap_standins();
    host.enable_image_server_standins();
    host.enable_registry();
    let state = state_for(&host);
    let args = [
        "bootstrap",
        "--no-llm",
        "--image-profile",
        "test",
        "--imageup-timeout",
        "3m",
        "--nvidia-driver",
        "570-server",
    ];
    let boot = run(&host, state.path(), &args);
    assert!(boot.status.success(), "bootstrap --nvidia-driver 570-server");
    let held = host.sh_ok("apt-mark showhold");
    assert!(held.contains("nvidia-driver-570-server") && held.contains("nvidia-utils-570-server"), "{held}");

    // First the move to the default branch
    // (580-server): the old branch's packages replaced, the new ones held,
    // one reboot, the stack back and updated after it.
    let update = ["update", "--upgrade-driver", "--imageup-timeout", "3m", "--health-timeout", "2m"];
    let reboots = host.reboots();
    let moved = run(&host, state.path(), &update);
    assert!(moved.status.success(), "update --upgrade-driver to the default branch");
    let said = stderr(&moved);
    assert!(
        said.contains("moved from nvidia-driver-570-server to nvidia-driver-580-server 580.95.05-0ubuntu0.22.04.1"),
        "{said}"
    );
    assert!(said.contains("rebooted in "), "{said}");
    assert_eq!(host.reboots(), reboots + 1);
    assert!(host.sh_ok("nvidia-smi --query-gpu=driver_version --format=csv,noheader").contains("580.95.05"));
    let held = host.sh_ok("apt-mark showhold");
    assert!(held.contains("nvidia-driver-580-server") && held.contains("nvidia-utils-580-server"), "{held}");
    assert!(!held.contains("570-server"), "{held}");
    assert!(
        host.sh("dpkg-query -W -f '${db:Status-Abbrev}' nvidia-driver-570-server | grep -q '^ii'").status.code()
            != Some(0)
    );
    // Then within the branch: with nothing newer, no reboot; with a newer
    // driver in an apt source, upgraded, held again, one reboot.
    let reboots = host.reboots();
    let same = run(&host, state.path(), &update);
    assert!(same.status.success(), "update --upgrade-driver with nothing newer");
    assert!(stderr(&same).contains("the driver is the newest available: "), "{}", stderr(&same));
    assert_eq!(host.reboots(), reboots);
    host.sh_ok(NEWER_DRIVER);
    let newer = run(&host, state.path(), &update);
    assert!(newer.status.success(), "update --upgrade-driver");
    let said = stderr(&newer);
    assert!(said.contains(&format!("upgraded nvidia-driver-580-server {NEWER}")), "{said}");
    assert!(said.contains("rebooted in "), "{said}");
    assert_eq!(host.reboots(), reboots + 1);
    assert!(host.sh_ok("nvidia-smi --query-gpu=driver_version --format=csv,noheader").contains("580.105.08"));
    let held = host.sh_ok("apt-mark showhold");
    assert!(held.contains("nvidia-driver-580-server") && held.contains("nvidia-utils-580-server"), "{held}");
    let v: serde_json::Value = serde_json::from_slice(&run(&host, state.path(), &["verify", "--json"]).stdout).unwrap();
    assert_eq!(v["driver_version"], "580.105.08", "{v}");
}
