//! `ec2 create` end to end on a REAL virtual machine (testsupport/src/vm.rs):
//! moto's EC2 API, and where the instance would be, qemu booting the tests'
//! stand-in for Ubuntu 22.04's image with Debian's kernel. The guest boots
//! from a NoCloud seed carrying exactly the user data create sent to
//! RunInstances, read back from moto, so real cloud-init installs the host
//! key create handed over; then the host steps run through a real kernel
//! reboot to a healthy stack behind real Traefik with pebble's certificate;
//! then `ec2 destroy`. Slow (software emulation): one test, run once.

use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{Filter, InstanceAttributeName, InstanceStateName};
use image_provision_testsupport::cli;
use image_provision_testsupport::ec2env::{Ec2Env, rt, stdout};
use image_provision_testsupport::vm::{ACME_URL, Vm};

use crate::BIN;

const DOMAIN: &str = "image.example.org";

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
fn ec2_create_on_a_real_vm_cloud_init_installs_the_handed_over_key_the_kernel_reboots_and_https_answers() {
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

    let started = Instant::now();
    let mut create = env.cmd();
    create
        .args(["ec2", "create", "vm1", "--ssh-key"])
        .arg(&key)
        .args(["--no-llm", "--domain", DOMAIN, "--acme-email", "ops@example.org", "--acme-server", ACME_URL])
        .args(["--repo-url", "https://github.com/Shared-Reality-Lab/IMAGE-server.git", "--imageup-timeout", "10m"])
        .args(["--health-timeout", "5m"])
        // The address moto gives the instance is not the VM's: no DNS
        // record could point there (the DNS check has its own test).
        .arg("--no-dns-check")
        // The NVIDIA stand-in repositories baked into the image.
        .env("IMAGE_PROVISION_NVIDIA_REPO", "file:/srv/standin-nvidia /")
        .env("IMAGE_PROVISION_NVIDIA_REPO_KEY", "file:///srv/standin-nvidia/key.asc")
        .env("IMAGE_PROVISION_TEST_SSH_ADDR", vm.ssh_addr())
        .stdout(Stdio::piped())
        // Its progress, as it goes, to the test's output.
        .stderr(Stdio::inherit());
    let child = create.spawn().expect("running ec2 create");

    // The instance moto launched: boot the VM from exactly its user data,
    // with the imported key pair's public key as its metadata.
    let (instance, user_data) = launched(&env, "vm1", Duration::from_secs(60));
    assert!(user_data.starts_with(b"#cloud-config\n"), "{}", String::from_utf8_lossy(&user_data));
    vm.boot(&instance, &user_data, &[public]);
    vm.wait_for_ssh(Duration::from_secs(600));
    let to_ssh = started.elapsed();
    let first_boot = vm.root_sh_ok("cat /proc/sys/kernel/random/boot_id").trim().to_string();
    vm.trust_pebble();

    let out = child.wait_with_output().expect("waiting for ec2 create");
    let took = started.elapsed();
    eprintln!(
        "--- ec2 create: {} in {:.0}s (guest SSH after {:.0}s)\n--- stdout\n{}",
        out.status,
        took.as_secs_f64(),
        to_ssh.as_secs_f64(),
        stdout(&out),
    );
    assert_eq!(out.status.code(), Some(0), "{}", vm.logs());
    let summary = stdout(&out);
    for step in cli::IMAGE_STEPS {
        assert!(summary.lines().any(|l| l.starts_with(step)), "{step} missing from\n{summary}");
    }
    let line = |step: &str| summary.lines().find(|l| l.starts_with(step)).unwrap_or_default().to_string();
    assert!(line("reboot").contains("changed"), "{}", line("reboot"));
    assert!(
        line("health").contains(&format!("GET https://{DOMAIN}/health")) && line("health").contains(" at 127.0.0.1"),
        "{}",
        line("health")
    );

    // cloud-init ran from the seed (the handed-over key was installed: create
    // connected strictly), the kernel rebooted in the same qemu process, and
    // the stack is up on real Docker in the guest.
    assert_eq!(vm.root_sh_ok("cloud-init status | sed -n 's/^status: //p'").trim(), "done");
    let boot = vm.root_sh_ok("cat /proc/sys/kernel/random/boot_id").trim().to_string();
    assert_ne!(boot, first_boot, "a new boot after the driver's reboot");
    assert!(vm.qemu_running(), "the reboot kept the VM");
    // Docker's own verdict, as the health step read it. A probe the
    // emulated CPUs were too slow to answer within its time limit can flag a
    // service unhealthy for a while: the next answered probe clears it, so
    // the verdict is read until it holds or a deadline passes.
    let orchestrator_healthy =
        |running: &str| running.lines().any(|l| l.starts_with("image-orchestrator-1") && l.contains("(healthy)"));
    let deadline = Instant::now() + Duration::from_secs(180);
    let running = loop {
        let running = vm.root_sh_ok("docker ps --format '{{.Names}} {{.Status}}'");
        if orchestrator_healthy(&running) || Instant::now() > deadline {
            break running;
        }
        std::thread::sleep(Duration::from_secs(5));
    };
    assert!(orchestrator_healthy(&running), "{running}");
    assert!(running.lines().any(|l| l.starts_with("traefik ")), "{running}");

    let out = env.run(&["ec2", "destroy", "vm1", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "destroy: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout(&env.run(&["ec2", "list", "--json"])).trim(), "[]");
}
