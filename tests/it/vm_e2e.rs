//! `ec2 create` on a REAL virtual machine (testsupport/src/vm.rs): moto's
//! EC2 API, and where the instance would be, qemu booting the tests'
//! stand-in for Ubuntu 22.04's image with Debian's kernel. The guest boots
//! from a NoCloud seed carrying exactly the user data create sent to
//! RunInstances, read back from moto, so real cloud-init does what only it
//! does: installs the host key create handed over (the tool then connects
//! strictly) and arms the server's power-off at its --ttl before any host
//! step has run. Then a later --ttl moves the expiry into the past over SSH
//! and the real kernel powers the machine off, as an EC2 instance launched
//! to terminate on shutdown would end.
//!
//! The host steps themselves (Docker, the driver and its reboot, Traefik,
//! the stack) run on the booted test hosts, with real systemd and Docker:
//! under this machine's software emulation the whole stack took 20 minutes
//! and more here, for what those tests already show.

use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{Filter, InstanceAttributeName, InstanceStateName};
use image_provision_testsupport::cli;
use image_provision_testsupport::ec2env::{Ec2Env, rt, stdout};
use image_provision_testsupport::vm::Vm;

use crate::BIN;

/// The instance create launched for NAME, once moto has it: its id and the
/// user data it was given.
fn launched(env: &Ec2Env, name: &str, timeout: Duration) -> (String, Vec<u8>) {
    let client = env.client();
    let deadline = Instant::now() + timeout;
    loop {
        let found = rt().block_on(async {
            let filter = Filter::builder().name("tag:Name").values(name).build();
            let res = client.describe_instances().filters(filter).send().await.ok()?;
            let instance = res
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find(|i| i.state().and_then(|s| s.name()) != Some(&InstanceStateName::Terminated))?
                .clone();
            let id = instance.instance_id()?.to_string();
            let attr = client
                .describe_instance_attribute()
                .instance_id(&id)
                .attribute(InstanceAttributeName::UserData)
                .send()
                .await
                .ok()?;
            let data = attr.user_data()?.value()?.to_string();
            Some((id, aws_smithy_types::base64::decode(data).ok()?))
        });
        if let Some(found) = found {
            return found;
        }
        assert!(Instant::now() < deadline, "create launched no instance {name} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn ec2_create_on_a_real_vm_cloud_init_installs_the_key_and_arms_the_expiry_which_powers_it_off() {
    let env = Ec2Env::start(BIN);
    let mut vm = Vm::prepare();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("id_ed25519");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let ssh_addr = vm.ssh_addr();
    let create = |ttl: &str| {
        let mut create = env.cmd();
        create
            .args(["ec2", "create", "vm1", "--no-bootstrap", "--ttl", ttl, "--ssh-key"])
            .arg(&key)
            .env("IMAGE_PROVISION_TEST_SSH_ADDR", &ssh_addr)
            .stdout(Stdio::piped())
            // Its progress, as it goes, to the test's output.
            .stderr(Stdio::inherit());
        create.spawn().expect("running ec2 create")
    };

    let started = Instant::now();
    let child = create("3h");
    // The instance moto launched: boot the VM from exactly its user data,
    // with the imported key pair's public key as its metadata.
    let (instance, user_data) = launched(&env, "vm1", Duration::from_secs(60));
    assert!(user_data.starts_with(b"#cloud-config\n"), "{}", String::from_utf8_lossy(&user_data));
    vm.boot(&instance, &user_data, &[public]);
    vm.wait_for_ssh(Duration::from_secs(600));
    let out = child.wait_with_output().expect("waiting for ec2 create");
    eprintln!("--- ec2 create: {} after {:.0}s\n{}", out.status, started.elapsed().as_secs_f64(), stdout(&out));
    assert_eq!(out.status.code(), Some(0), "{}", vm.logs());
    let first_expiry = expires_at(&env, "vm1");

    // cloud-init ran from the seed: the host key handed over, and the
    // power-off armed at the tag's time with the upkeep step's own files.
    let done =
        vm.root_sh_ok("timeout 600 cloud-init status --wait >/dev/null; cloud-init status | sed -n 's/^status: //p'");
    assert_eq!(done.trim(), "done", "{}", vm.root_sh("cloud-init status --long").stdout.escape_ascii());
    let handed = std::fs::read_to_string(env.server_dir("vm1").join("ssh_host_ed25519_key.pub")).unwrap();
    let installed = vm.root_sh_ok("cat /etc/ssh/ssh_host_ed25519_key.pub");
    assert_eq!(installed.split_whitespace().nth(1), handed.split_whitespace().nth(1), "the host key handed over");
    let timer = "image-provision-expire.timer";
    let state = vm.root_sh_ok(&format!("systemctl is-enabled {timer}; systemctl is-active {timer}"));
    assert_eq!(state, "enabled\nactive\n");
    let calendar = first_expiry.parse::<jiff::Timestamp>().unwrap().strftime("%Y-%m-%d %H:%M:%S UTC").to_string();
    let armed = vm.root_sh_ok(&format!("systemctl show -p TimersCalendar --value {timer}"));
    assert!(armed.contains(&format!("OnCalendar={calendar} ;")), "{armed}");
    let said = vm.root_sh_ok("journalctl -u image-provision-expire --no-pager");
    assert!(said.contains(&format!("this server expires at {first_expiry}")), "{said}");
    let modes = vm.root_sh_ok(
        "stat -c '%a %U' /etc/systemd/system/image-provision-expire.service \
         /etc/systemd/system/image-provision-expire.timer /usr/local/lib/image-provision/expire.sh",
    );
    assert_eq!(modes, "644 root\n644 root\n755 root\n");

    // A later --ttl, already past when the host step runs: the tags and the
    // host's power-off move (over SSH, the host key checked strictly), the
    // host says it expired and the kernel powers the machine off.
    std::thread::sleep(Duration::from_secs(1));
    let out = create("1s").wait_with_output().expect("waiting for ec2 create");
    eprintln!("--- ec2 create --ttl 1s: {}\n{}", out.status, stdout(&out));
    assert_eq!(out.status.code(), Some(0), "{}", vm.logs());
    let moved = expires_at(&env, "vm1");
    let upkeep = cli::step_line(&out, "upkeep");
    assert!(
        upkeep.contains(" changed ") && upkeep.contains(&format!("powers off now (its expiry, {moved}, has passed)")),
        "{upkeep}"
    );
    assert!(!upkeep.contains("keep copies"), "cloud-init wrote them for image-provision: {upkeep}");
    let deadline = Instant::now() + Duration::from_secs(300);
    while vm.qemu_running() {
        assert!(Instant::now() < deadline, "the guest did not power off within 5 minutes:\n{}", vm.logs());
        std::thread::sleep(Duration::from_secs(1));
    }
    let console = std::fs::read_to_string(vm.dir().join("console.log")).unwrap();
    assert!(
        console.contains(&format!("image-provision: this server expired at {moved}; powering it off now")),
        "{}",
        vm.logs()
    );
    eprintln!("--- powered off {:.0}s after the first create", started.elapsed().as_secs_f64());

    let out = env.run(&["ec2", "destroy", "vm1", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "destroy: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout(&env.run(&["ec2", "list", "--json"])).trim(), "[]");
}

/// The expires-at tag of NAME's instance, as moto holds it.
fn expires_at(env: &Ec2Env, name: &str) -> String {
    let filter = Filter::builder().name("tag:Name").values(name).build();
    let out = rt().block_on(env.client().describe_instances().filters(filter).send()).unwrap();
    let instance = out.reservations()[0].instances()[0].clone();
    let tag = instance.tags().iter().find(|t| t.key() == Some("image-provision:expires-at"));
    tag.and_then(|t| t.value()).expect("an expires-at tag").to_owned()
}
