//! `ec2 create --ttl`: the expiry holds from the first boot. The user data
//! moto keeps for the instance arms the power-off with exactly the files the
//! upkeep step writes; a later `--ttl` on the server moves it on the host
//! too, over SSH, even with --no-bootstrap (a booted test host standing
//! where the instance would be, given the user data as cloud-init would).

use std::process::Output;

use aws_sdk_ec2::types::{Filter, InstanceAttributeName, InstanceStateName};
use image_provision_playbooks::steps::upkeep;
use image_provision_playbooks::template;
use image_provision_testsupport::cli;
use image_provision_testsupport::ec2env::*;
use image_provision_testsupport::testhost::{Distro, TestHost};

use crate::BIN;

const EXPIRE_TIMER: &str = "/etc/systemd/system/image-provision-expire.timer";
const EXPIRE_SERVICE: &str = "/etc/systemd/system/image-provision-expire.service";

/// Server NAME's instance, as EC2 holds it: its expires-at tag and its user
/// data as a cloud-config (JSON, which is YAML).
fn launched(env: &Ec2Env, name: &str) -> (Option<String>, serde_json::Value) {
    let client = env.client();
    rt().block_on(async {
        let filter = Filter::builder().name("tag:Name").values(name).build();
        let res = client.describe_instances().filters(filter).send().await.unwrap();
        let instance = res
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.state().and_then(|s| s.name()) != Some(&InstanceStateName::Terminated))
            .unwrap_or_else(|| panic!("no instance {name}"))
            .clone();
        let tag = instance
            .tags()
            .iter()
            .find(|t| t.key() == Some("image-provision:expires-at"))
            .and_then(|t| t.value())
            .map(str::to_string);
        let attr = client
            .describe_instance_attribute()
            .instance_id(instance.instance_id().unwrap())
            .attribute(InstanceAttributeName::UserData)
            .send()
            .await
            .unwrap();
        let data = aws_smithy_types::base64::decode(attr.user_data().unwrap().value().unwrap()).unwrap();
        let text = String::from_utf8(data).unwrap();
        let json = text.strip_prefix("#cloud-config\n").unwrap_or_else(|| panic!("not a cloud-config: {text}"));
        (tag, serde_json::from_str(json).unwrap())
    })
}

/// systemd's calendar event for an RFC 3339 time, in UTC.
fn calendar(at: &str) -> String {
    at.parse::<jiff::Timestamp>().unwrap().strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn seconds_left(at: &str) -> i64 {
    at.parse::<jiff::Timestamp>().unwrap().duration_since(jiff::Timestamp::now()).as_secs()
}

/// The text of the cloud-config's file at `path`.
fn written<'a>(config: &'a serde_json::Value, path: &str) -> &'a str {
    let files = config["write_files"].as_array().unwrap_or_else(|| panic!("no write_files in {config}"));
    let file = files.iter().find(|f| f["path"] == path).unwrap_or_else(|| panic!("{path} not in {config}"));
    file["content"].as_str().unwrap()
}

#[test]
fn a_ttl_server_s_user_data_arms_its_power_off_with_the_upkeep_step_s_own_files() {
    let env = Ec2Env::start(BIN);
    let out = env.run(&["ec2", "create", "eph", "--no-bootstrap", "--ttl", "2h"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (tag, config) = launched(&env, "eph");
    let at = tag.expect("an expires-at tag");
    assert!((7080..=7200).contains(&seconds_left(&at)), "{at} is not 2 h from now");

    // Exactly the files the upkeep step writes for that expiry, with its
    // modes, root's: its next run finds them as it wants them.
    let files = config["write_files"].as_array().unwrap_or_else(|| panic!("no write_files in {config}"));
    let want = upkeep::expiry_files(&at).unwrap();
    assert_eq!(files.len(), want.len() + 1, "{config}");
    // Last, image-provision's record of what it wrote: these files, so a
    // later move of the expiry keeps no copy of them as someone else's.
    let record = files.last().unwrap();
    assert_eq!((record["path"].as_str(), record["permissions"].as_str()), (Some(template::RECORD), Some("0600")));
    let recorded: Vec<String> =
        want.iter().map(|f| format!("{} {}", template::sha256_hex(&f.content), f.path)).collect();
    assert_eq!(record["content"].as_str().unwrap().lines().collect::<Vec<_>>(), recorded);
    for (got, want) in files.iter().zip(&want) {
        assert_eq!(got["path"], want.path.as_str());
        assert_eq!(got["content"], want.content.as_str(), "{}", want.path);
        assert_eq!(got["permissions"], format!("{:04o}", want.mode), "{}", want.path);
        assert_eq!(got["owner"], "root:root");
    }
    // Read as a person would: the timer at the tag's time in UTC and at its
    // own start, the service holding the same time, then the timer enabled.
    let timer = written(&config, EXPIRE_TIMER);
    assert!(timer.contains(&format!("\nOnCalendar={}\nOnActiveSec=1s\n", calendar(&at))), "{timer}");
    let service = written(&config, EXPIRE_SERVICE);
    assert!(service.contains(&format!("\nEnvironment=EXPIRES_AT={at}\n")), "{service}");
    assert!(written(&config, "/usr/local/lib/image-provision/expire.sh").contains("systemctl --no-block poweroff"));
    assert_eq!(
        config["runcmd"],
        serde_json::json!([
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "--now", "image-provision-expire.timer"]
        ])
    );
    // The host key is still there, and nothing else came with it.
    assert!(config["ssh_keys"]["ed25519_public"].as_str().is_some_and(|k| k.starts_with("ssh-ed25519 ")));

    // Without --ttl: no power-off in the user data.
    let out = env.run(&["ec2", "create", "forever", "--no-bootstrap"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (tag, config) = launched(&env, "forever");
    assert_eq!(tag, None);
    assert!(config.get("write_files").is_none() && config.get("runcmd").is_none(), "{config}");
    // The dry run says what the user data carries.
    let dry = env.run(&["ec2", "create", "dry", "--no-bootstrap", "--ttl", "3h", "--dry-run"]);
    assert!(
        stdout(&dry).contains("then: at its first boot, its cloud-init arms its power-off at "),
        "{}",
        stdout(&dry)
    );
}

/// `ec2 create NAME ARGS... --no-bootstrap`, reaching the test host with
/// the key the host authorizes.
fn create(env: &Ec2Env, host: &TestHost, name: &str, args: &[&str]) -> Output {
    let mut cmd = env.cmd();
    cmd.args(["ec2", "create", name, "--no-bootstrap", "--ssh-key"]).arg(&host.client_key).args(args);
    cmd.env("IMAGE_PROVISION_TEST_SSH_ADDR", host.addr());
    cli::run(&mut cmd, &format!("ec2 create {name} {args:?}"))
}

/// The host steps' table after create's summary: "STEP OUTCOME" of each row.
fn steps_run(out: &Output) -> Vec<String> {
    let text = stdout(out);
    let rows = text.lines().skip_while(|l| !l.starts_with("STEP ")).skip(1).take_while(|l| !l.starts_with("log:"));
    rows.map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" ")).collect()
}

/// What cloud-init does with the user data's power-off: each file written
/// with its owner and permissions, then each runcmd command.
fn as_cloud_init(host: &TestHost, config: &serde_json::Value) {
    for f in config["write_files"].as_array().unwrap() {
        let path = f["path"].as_str().unwrap();
        host.sh_ok(&format!("mkdir -p \"$(dirname {path})\""));
        host.write(path, f["content"].as_str().unwrap().as_bytes());
        host.sh_ok(&format!(
            "chown {} {path} && chmod {} {path}",
            f["owner"].as_str().unwrap(),
            f["permissions"].as_str().unwrap()
        ));
    }
    for argv in config["runcmd"].as_array().unwrap() {
        let words: Vec<&str> = argv.as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
        host.sh_ok(&words.join(" "));
    }
}

#[test]
fn a_later_ttl_moves_the_power_off_on_the_host_too_even_with_no_bootstrap() {
    let env = Ec2Env::start(BIN);
    let host = TestHost::boot(Distro::Ubuntu2204Standin);
    crate::ec2_bootstrap::host_key_installed(&env, &host, "mv");
    let out = create(&env, &host, "mv", &["--ttl", "2h"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (first, config) = launched(&env, "mv");
    let first = first.unwrap();
    as_cloud_init(&host, &config);
    let timer = "image-provision-expire.timer";
    assert_eq!(host.sh_ok(&format!("systemctl is-active {timer}")), "active\n");
    let armed = host.sh_ok(&format!("systemctl show -p TimersCalendar --value {timer}"));
    assert!(armed.contains(&format!("OnCalendar={} ;", calendar(&first))), "{armed}");
    let modes = host.sh_ok(&format!("stat -c '%a %U' {EXPIRE_TIMER} /usr/local/lib/image-provision/expire.sh"));
    assert_eq!(modes, "644 root\n755 root\n");

    // Five hours from now: the tags, and the host's power-off, by the
    // upkeep step alone (no package, no IMAGE unit touched).
    let out = create(&env, &host, "mv", &["--ttl", "5h"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (moved, _) = launched(&env, "mv");
    let moved = moved.unwrap();
    assert!((17880..=18000).contains(&seconds_left(&moved)), "{moved} is not 5 h from now");
    assert!(stderr(&out).contains(&format!("expiry of mv moved from {first} to {moved}")), "{}", stderr(&out));
    assert_eq!(steps_run(&out), ["host ok", "upkeep changed"], "{}", stdout(&out));
    let line = cli::step_line(&out, "upkeep");
    assert!(line.ends_with(&format!("re-arm: powers off at {moved}")), "{line}");
    // cloud-init wrote them for image-provision: no copy kept of them.
    assert!(!line.contains("keep copies"), "{line}");
    let rearmed = host.sh_ok(&format!("systemctl show -p TimersCalendar --value {timer}"));
    assert!(rearmed.contains(&format!("OnCalendar={} ;", calendar(&moved))), "{rearmed}");
    let service = String::from_utf8(host.read(EXPIRE_SERVICE)).unwrap();
    assert!(service.contains(&format!("Environment=EXPIRES_AT={moved}\n")), "{service}");
    assert_eq!(host.sh_ok(&format!("systemctl is-active {timer}")), "active\n");

    // Without --ttl, --no-bootstrap goes nowhere near the host.
    let out = create(&env, &host, "mv", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(steps_run(&out).is_empty(), "{}", stdout(&out));
}

/// Server NAME's shutdown behaviour (`stop` or `terminate`) and tags, as EC2
/// holds them.
fn shutdown_and_tags(env: &Ec2Env, name: &str) -> (String, Vec<(String, String)>) {
    let client = env.client();
    rt().block_on(async {
        let filter = Filter::builder().name("tag:Name").values(name).build();
        let res = client.describe_instances().filters(filter).send().await.unwrap();
        let instance = res
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.state().and_then(|s| s.name()) != Some(&InstanceStateName::Terminated))
            .unwrap_or_else(|| panic!("no instance {name}"))
            .clone();
        let attr = client
            .describe_instance_attribute()
            .instance_id(instance.instance_id().unwrap())
            .attribute(InstanceAttributeName::InstanceInitiatedShutdownBehavior)
            .send()
            .await
            .unwrap();
        let behaviour = attr.instance_initiated_shutdown_behavior().and_then(|v| v.value()).unwrap_or_default();
        let tags = instance
            .tags()
            .iter()
            .map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string()))
            .collect();
        (behaviour.to_string(), tags)
    })
}

fn tag_of(tags: &[(String, String)], key: &str) -> Option<String> {
    tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

/// `ec2 create --autostop`: an idle stop must only stop. The instance stops
/// (never terminates) when it powers itself off, with a --ttl too (its
/// expiry's power-off then stops it, and `destroy --expired` terminates
/// it); its autostop tag says after how long, and `list` shows it. `off`
/// on the server removes it: tagged off, and a server with an expiry
/// terminates on shutdown again. With --spot (a one-time spot instance
/// cannot stop): refused, nothing made.
#[test]
fn autostop_makes_a_shutdown_stop_and_list_shows_it() {
    const AUTOSTOP: &str = "image-provision:autostop";
    // Behind the fault proxy with no faults: it records the calls.
    let env = Ec2Env::start_with_faults(BIN, Some(serde_json::json!([])));
    let out = env.run(&["ec2", "create", "idle", "--no-bootstrap", "--autostop", "30m"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Installed on the host by the host steps (not run here).
    let said = "autostop   stops after 30m without a request, once the host steps install it";
    assert!(stdout(&out).contains(said), "{}", stdout(&out));
    let (behaviour, tags) = shutdown_and_tags(&env, "idle");
    assert_eq!((behaviour.as_str(), tag_of(&tags, AUTOSTOP).as_deref()), ("stop", Some("30m")));

    // With a --ttl: still a stop; the expiry tagged as ever.
    let out = env.run(&["ec2", "create", "both", "--no-bootstrap", "--ttl", "2h", "--autostop", "90m"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (behaviour, tags) = shutdown_and_tags(&env, "both");
    assert_eq!((behaviour.as_str(), tag_of(&tags, AUTOSTOP).as_deref()), ("stop", Some("1h 30m")));
    assert!(tag_of(&tags, "image-provision:expires-at").is_some(), "{tags:?}");
    let launches = env.proxy_params("RunInstances");
    assert!(launches.iter().all(|p| p["InstanceInitiatedShutdownBehavior"] != "terminate"), "{launches:?}");
    // A --ttl alone terminates, as before.
    let out = env.run(&["ec2", "create", "eph", "--no-bootstrap", "--ttl", "2h"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(shutdown_and_tags(&env, "eph").0, "terminate");

    // list: the AUTOSTOP column, `-` without one; in JSON too.
    let text = stdout(&env.run(&["ec2", "list"]));
    assert!(text.lines().next().unwrap().contains(" AUTOSTOP "), "{text}");
    let row = |name: &str| text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap().to_string();
    assert_eq!(row("idle").split_whitespace().rev().nth(1), Some("30m"), "{text}");
    assert_eq!(row("eph").split_whitespace().rev().nth(1), Some("-"), "{text}");
    let list: serde_json::Value = serde_json::from_slice(&env.run(&["ec2", "list", "--json"]).stdout).unwrap();
    let server = |name: &str| list.as_array().unwrap().iter().find(|s| s["name"] == name).unwrap().clone();
    assert_eq!((server("both")["autostop"].as_str(), server("eph")["autostop"].as_str()), (Some("1h 30m"), None));

    // `off` on the server: the tags at once (its host, standing nowhere
    // here, is not reached: exit 1, said), and it terminates on shutdown
    // again, for its expiry.
    let out = env.run(&["ec2", "create", "both", "--no-bootstrap", "--autostop", "off"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("both's tags now give it no idle stop, but its idle stop on the host was not moved"),
        "{}",
        stderr(&out)
    );
    let (behaviour, tags) = shutdown_and_tags(&env, "both");
    assert_eq!((behaviour.as_str(), tag_of(&tags, AUTOSTOP).as_deref()), ("terminate", Some("off")));
    // Given one later, an expiring server stops on shutdown instead.
    let out = env.run(&["ec2", "create", "eph", "--no-bootstrap", "--autostop", "1h"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("eph now stops, rather than terminates"), "{}", stderr(&out));
    assert_eq!(shutdown_and_tags(&env, "eph").0, "stop");

    // --spot: refused before any AWS call.
    let calls = env.proxy_calls().len();
    let out = env.run(&["ec2", "create", "cheap", "--no-bootstrap", "--spot", "--autostop", "30m"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("a one-time spot instance cannot be stopped"), "{}", stderr(&out));
    assert_eq!(env.proxy_calls().len(), calls);
}
