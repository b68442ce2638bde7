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
