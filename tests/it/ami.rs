//! `ami bake | list | delete` and `ec2 create --ami IMAGE_NAME`, against
//! moto (read back with the SDK), and bake-hold.sh, the bake's clean-up, on
//! a test host: what must not be shared is off the disk while the image is
//! taken and back after, a cut is recovered, a record baked into an image is
//! no host's own.

use aws_sdk_ec2::types::{HttpTokensState, ResourceType, Tag, TagSpecification};
use image_provision_testsupport::ec2env::*;
use image_provision_testsupport::testhost::{Distro, TestHost};
use serde_json::json;

use crate::BIN;
use crate::ec2_bootstrap::host_key_installed;

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// The tags `ami bake` gives an image (written out here, not taken from
/// the code under test).
fn baked_tags(name: &str) -> Vec<Tag> {
    vec![
        tag("Name", name),
        tag("image-provision:managed", "true"),
        tag("image-provision:image", name),
        tag("image-provision:source-server", "web"),
        tag("image-provision:repo-commit", "0123456789abcdef0123456789abcdef01234567"),
        tag("image-provision:driver-branch", "570-server"),
        tag("image-provision:digest:orchestrator", "sha256:aaaa"),
    ]
}

/// An instance made outside image-provision, untagged.
fn launch(env: &Ec2Env) -> String {
    crate::ec2_ours::launch_tagged(env, &[tag("Name", "outside")])
}

/// CreateImage straight on moto; returns (image id, its snapshot ids).
fn image(env: &Ec2Env, instance: &str, name: &str, tags: Vec<Tag>) -> (String, Vec<String>) {
    let mut req = env.client().create_image().instance_id(instance).name(name);
    if !tags.is_empty() {
        req = req.tag_specifications(
            TagSpecification::builder().resource_type(ResourceType::Image).set_tags(Some(tags)).build(),
        );
    }
    let id = rt().block_on(req.send()).unwrap().image_id().unwrap().to_owned();
    (id.clone(), snapshots_of(env, &id))
}

fn snapshots_of(env: &Ec2Env, image_id: &str) -> Vec<String> {
    let out = rt().block_on(env.client().describe_images().image_ids(image_id).send()).unwrap();
    out.images()[0]
        .block_device_mappings()
        .iter()
        .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()))
        .map(str::to_owned)
        .collect()
}

fn image_exists(env: &Ec2Env, image_id: &str) -> bool {
    rt().block_on(env.client().describe_images().image_ids(image_id).send())
        .map(|o| !o.images().is_empty())
        .unwrap_or(false)
}

fn snapshot_exists(env: &Ec2Env, snapshot_id: &str) -> bool {
    rt().block_on(env.client().describe_snapshots().snapshot_ids(snapshot_id).send())
        .map(|o| !o.snapshots().is_empty())
        .unwrap_or(false)
}

fn tag_snapshot(env: &Ec2Env, snapshot: &str, name: &str, image_id: &str) {
    let tags = [
        tag("image-provision:managed", "true"),
        tag("image-provision:image", name),
        tag("image-provision:image-id", image_id),
    ];
    rt().block_on(env.client().create_tags().resources(snapshot).set_tags(Some(tags.to_vec())).send()).unwrap();
}

fn own_image_count(env: &Ec2Env) -> usize {
    rt().block_on(env.client().describe_images().owners("self").send()).unwrap().images().len()
}

/// `ami bake --dry-run` and `ami delete --dry-run` make no AWS call (the
/// fault proxy sees none) and name CreateImage without a reboot, the
/// clean-up around it and the snapshots' tags; DeregisterImage, then
/// DeleteSnapshot.
#[test]
fn ami_dry_runs_are_offline_and_name_create_image_and_the_clean_up() {
    let env = Ec2Env::start_with_faults(BIN, Some(json!([])));
    let out = env.run(&["ami", "bake", "web", "--name", "web-img", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let create = text.lines().find(|l| l.starts_with("ec2:CreateImage ")).expect("CreateImage named");
    assert!(create.contains("\"NoReboot\":true") && create.contains("\"Name\":\"web-img\""), "{create}");
    assert!(create.contains("image-provision:image") && create.contains("image-provision:source-server"), "{create}");
    let hold = text.find("bake-hold.sh hold").expect("the hold named");
    let restore = text.find("bake-hold.sh restore").expect("the put-back named");
    let at = text.find("ec2:CreateImage").unwrap();
    assert!(hold < at && at < restore, "hold, CreateImage, put back, in order:\n{text}");
    assert!(text.contains("SSH host keys") && text.contains("machine-id"), "{text}");
    assert!(text.contains("ec2:CreateTags"), "{text}");

    let out = env.run(&["ami", "delete", "web-img", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let dereg = text.find("ec2:DeregisterImage").expect("DeregisterImage named");
    let del = text.find("ec2:DeleteSnapshot").expect("DeleteSnapshot named");
    assert!(dereg < del, "{text}");
    assert!(env.proxy_calls().is_empty(), "a dry run called AWS: {:?}", env.proxy_calls());
}

/// `ami list` shows images tagged ours only; `ami delete` deregisters ours
/// and deletes its snapshots tagged as its own, leaves a snapshot that is
/// not, and never touches a foreign image of the same name; a re-run finds
/// nothing; without --yes and a terminal it refuses before any call.
#[test]
fn ami_list_and_delete_touch_only_images_tagged_ours() {
    let env = Ec2Env::start(BIN);
    let instance = launch(&env);
    let (ours, ours_snaps) = image(&env, &instance, "ours-img", baked_tags("ours-img"));
    for s in &ours_snaps {
        tag_snapshot(&env, s, "ours-img", &ours);
    }
    let (half, half_snaps) = image(&env, &instance, "half-img", baked_tags("half-img"));
    // Tagged as ours, but its tags name another image: not ours to list.
    let (twin, twin_snaps) = image(&env, &instance, "twin-img", vec![tag("image-provision:image", "other")]);
    let (plain, _) = image(&env, &instance, "plain-img", vec![]);

    let out = env.run(&["ami", "list", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = rows.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"ours-img") && names.contains(&"half-img"), "{names:?}");
    assert!(!names.contains(&"twin-img") && !names.contains(&"plain-img"), "{names:?}");
    let row = rows.as_array().unwrap().iter().find(|r| r["name"] == "ours-img").unwrap();
    assert_eq!(row["holds"]["driver_branch"], "570-server");
    assert_eq!(row["holds"]["digests"][0][0], "orchestrator");
    let table = stdout(&env.run(&["ami", "list"]));
    assert!(table.lines().any(|l| l.starts_with("ours-img") && l.contains("570-server")), "{table}");

    // No terminal and no --yes: refused, nothing asked of AWS.
    let out = env.run(&["ami", "delete", "ours-img"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(image_exists(&env, &ours));

    // Foreign names: never deleted.
    for foreign in ["twin-img", "plain-img"] {
        let out = env.run(&["ami", "delete", foreign, "--yes"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("no image named {foreign} made by image-provision")),
            "{}",
            stderr(&out)
        );
    }
    assert!(image_exists(&env, &twin) && image_exists(&env, &plain));
    assert!(twin_snaps.iter().all(|s| snapshot_exists(&env, s)));

    let out = env.run(&["ami", "delete", "ours-img", "--yes", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!image_exists(&env, &ours));
    assert!(ours_snaps.iter().all(|s| !snapshot_exists(&env, s)), "its snapshots deleted");
    let out = env.run(&["ami", "delete", "ours-img", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "a re-run finds nothing: {}", stderr(&out));

    // Its snapshots never tagged as its own: deregistered, snapshots left.
    let out = env.run(&["ami", "delete", "half-img", "--yes", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!image_exists(&env, &half));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["snapshots_left"].as_array().unwrap().len(), half_snaps.len(), "{report}");
    assert!(half_snaps.iter().all(|s| snapshot_exists(&env, s)));
}

/// `ec2 create --ami NAME` launches the baked image of that name, says it is
/// baked, and keeps the secure defaults (IMDSv2, hop limit 1, an encrypted
/// volume); a name that is not one of our images creates nothing.
#[test]
fn ec2_create_with_a_baked_image_name_launches_it_with_the_secure_defaults() {
    let env = Ec2Env::start(BIN);
    let instance = launch(&env);
    let (ours, _) = image(&env, &instance, "web-baked", baked_tags("web-baked"));
    image(&env, &instance, "not-ours", vec![]);
    let before = rt().block_on(env.client().describe_instances().send()).unwrap().reservations().len();

    let out = env.run(&["ec2", "create", "nope", "--no-bootstrap", "--ami", "not-ours"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("no image named not-ours made by image-provision"), "{}", stderr(&out));
    let after = rt().block_on(env.client().describe_instances().send()).unwrap().reservations().len();
    assert_eq!(before, after, "nothing launched");

    let out = env.run(&["ec2", "create", "from-baked", "--no-bootstrap", "--ami", "web-baked"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("baked by image-provision from web"), "{}", stderr(&out));
    let filter = aws_sdk_ec2::types::Filter::builder().name("tag:image-provision:name").values("from-baked").build();
    let described = rt().block_on(env.client().describe_instances().filters(filter).send()).unwrap();
    let i = &described.reservations()[0].instances()[0];
    assert_eq!(i.image_id(), Some(ours.as_str()));
    let meta = i.metadata_options().unwrap();
    assert_eq!(meta.http_tokens(), Some(&HttpTokensState::Required));
    assert_eq!(meta.http_put_response_hop_limit(), Some(1));
    let volume = i.block_device_mappings()[0].ebs().unwrap().volume_id().unwrap();
    let v = rt().block_on(env.client().describe_volumes().volume_ids(volume).send()).unwrap();
    assert_eq!(v.volumes()[0].encrypted(), Some(true));
}

/// bake-hold.sh run as `ami bake` runs it, on the test host, as root.
/// The watchdog far off (a test's own cut is made by not restoring).
fn hold_script(host: &TestHost, action: &str) -> std::process::Output {
    hold_script_with(host, action, 3600)
}

fn hold_script_with(host: &TestHost, action: &str, watchdog_secs: u64) -> std::process::Output {
    let script = image_provision_playbooks::bake::script();
    let path = "/root/bake-hold.sh";
    host.write(path, script.as_bytes());
    host.sh(&format!(
        "ACTION={action} HOLD_LIMIT={watchdog_secs} BASE_DIR=/var/docker/image LOGIN_USER={} \
         LLM_DIR=/var/docker/llm bash {path} </dev/null",
        host.default_user()
    ))
}

/// What a bake must hold aside, planted with contents to compare after.
const SECRETS: &[&str] = &[
    "/var/docker/image/config/llm.env",
    "/etc/image-provision/git-credentials",
    "/var/docker/llm/.env",
    "/var/log/syslog.1",
    "/var/lib/cloud/data/instance-id",
    "/root/.ssh/authorized_keys",
];

fn plant(host: &TestHost) -> Vec<(String, Vec<u8>)> {
    for (i, path) in SECRETS.iter().enumerate() {
        let text = if path.ends_with("instance-id") { "i-0abc\n".to_owned() } else { format!("secret {i}\n") };
        host.write(path, text.as_bytes());
        host.sh_ok(&format!("chmod 600 {path}"));
    }
    host.write("/etc/machine-id", b"0123456789abcdef0123456789abcdef\n");
    let mut all: Vec<String> = SECRETS.iter().map(|s| s.to_string()).collect();
    all.push(format!("/home/{}/.ssh/authorized_keys", host.default_user()));
    all.extend(host.sh_ok("ls /etc/ssh/ssh_host_*key*").lines().map(str::to_owned));
    all.push("/etc/machine-id".into());
    all.into_iter().map(|p| (p.clone(), host.read(&p))).collect()
}

fn all_back(host: &TestHost, planted: &[(String, Vec<u8>)]) {
    for (path, content) in planted {
        assert_eq!(&host.read(path), content, "{path} back as it was");
    }
    assert_eq!(host.sh_ok("stat -c %a /var/docker/image/config/llm.env").trim(), "600");
    assert!(!host.exists("/var/lib/image-provision/bake/held"), "the record removed");
    assert!(!host.exists("/run/image-provision/bake-hold"), "the hold emptied");
}

/// The clean-up on a host: during the hold nothing that must not be shared
/// is on the disk (the machine id empty, the record names paths only); the
/// restore puts back every byte; a second hold after a cut (the first never
/// restored) puts back first, then holds again; a hold lost to a reboot is
/// named; a record that came with the image (another host's) is removed.
#[test]
fn bake_hold_takes_secrets_off_the_disk_and_puts_them_back_after_a_cut_too() {
    let host = TestHost::start(Distro::Ubuntu2204Standin);
    let planted = plant(&host);
    let key_paths: Vec<&String> = planted.iter().map(|(p, _)| p).filter(|p| p.contains("ssh_host_")).collect();
    assert!(!key_paths.is_empty(), "the host has SSH host keys");

    let out = hold_script(&host, "hold");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (path, _) in &planted {
        if path == "/etc/machine-id" {
            assert!(host.read(path).is_empty(), "machine-id emptied");
        } else {
            assert!(!host.exists(path), "{path} is off the disk during the image");
        }
    }
    let record = String::from_utf8(host.read("/var/lib/image-provision/bake/held")).unwrap();
    assert!(record.contains("file /var/docker/image/config/llm.env") && !record.contains("secret"), "{record}");
    assert!(record.contains("host=instance i-0abc"), "{record}");
    assert_eq!(host.sh_ok("stat -c %a /var/lib/image-provision/bake/held").trim(), "600");

    // A cut: the tool never restored. The next hold puts back first.
    let out = hold_script(&host, "hold");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("restore.state=restored"));
    assert!(!host.exists("/var/docker/image/config/llm.env"), "held again");
    let out = hold_script(&host, "restore");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("restore.lost_count=0"));
    all_back(&host, &planted);
    // Nothing held: a restore changes nothing.
    let out = hold_script(&host, "restore");
    assert!(String::from_utf8_lossy(&out.stdout).contains("restore.state=nothing-held"));
    all_back(&host, &planted);

    // A reboot between hold and restore empties /run: what is lost is named.
    assert!(hold_script(&host, "hold").status.success());
    // ... and cloud-init, its per-instance state gone, wrote it anew.
    host.sh_ok("rm -rf /run/image-provision/bake-hold; mkdir -p /var/lib/cloud/data; echo i-0abc >/var/lib/cloud/data/instance-id");
    let out = hold_script(&host, "restore");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("restore.lost=/var/docker/image/config/llm.env"), "{said}");
    assert!(!host.exists("/var/lib/image-provision/bake/held"));

    // A record baked into an image, on a host made from it: not its own.
    host.write(
        "/var/lib/image-provision/bake/held",
        b"host=instance i-0other\nfile /var/docker/image/config/llm.env\n",
    );
    host.write("/var/docker/image/config/llm.env", b"this host's own\n");
    let out = hold_script(&host, "restore");
    assert!(String::from_utf8_lossy(&out.stdout).contains("restore.state=foreign-record-removed"));
    assert_eq!(host.read("/var/docker/image/config/llm.env"), b"this host's own\n");
    assert!(!host.exists("/var/lib/image-provision/bake/held"));
}

/// `ami bake` of a server that is not healthy (here: no stack at all)
/// holds nothing and makes no image. A bake cut after its hold leaves the
/// host without its SSH host keys (no new connection): its watchdog puts
/// everything back by itself, after which `ami bake --restore`, over SSH as
/// `ami bake` reaches the server, finds nothing left to do.
#[test]
fn ami_bake_refuses_an_unhealthy_server_and_restore_puts_a_cut_bake_back() {
    let env = Ec2Env::start(BIN);
    let host = TestHost::start(Distro::Ubuntu2204Standin);
    let handed_over = host_key_installed(&env, &host, "sick");
    let mut cmd = env.cmd();
    cmd.args(["ec2", "create", "sick", "--no-bootstrap", "--ssh-key"])
        .arg(&host.client_key)
        .env("IMAGE_PROVISION_TEST_SSH_ADDR", host.addr());
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The instance's address is the test host's: its key (the one handed
    // over) known there too, as the host steps would have recorded it.
    let known = env.server_dir("sick").join("known_hosts");
    let mut lines = std::fs::read_to_string(&known).unwrap();
    let (ip, port) = host.addr().rsplit_once(':').map(|(i, p)| (i.to_owned(), p.to_owned())).unwrap();
    let key: Vec<&str> = handed_over.split_whitespace().take(2).collect();
    lines.push_str(&format!("[{ip}]:{port} {}\n", key.join(" ")));
    std::fs::write(&known, lines).unwrap();
    let planted = plant(&host);
    let images = own_image_count(&env);

    let bake = |args: &[&str]| {
        let mut cmd = env.cmd();
        cmd.args(["ami", "bake", "sick"]).args(args).arg("--identity").arg(&host.client_key);
        cmd.env("IMAGE_PROVISION_TEST_SSH_ADDR", host.addr());
        let out = cmd.output().unwrap();
        eprintln!("ami bake {args:?}: {}\n{}", stdout(&out), stderr(&out));
        out
    };
    let out = bake(&["--name", "sick-img"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("sick is not healthy"), "{}", stderr(&out));
    assert_eq!(own_image_count(&env), images, "no image made");
    all_back(&host, &planted);

    // A name another image of the account has: refused before anything is held.
    let instance = launch(&env);
    image(&env, &instance, "taken-img", vec![]);
    let out = bake(&["--name", "taken-img"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("taken by"), "{}", stderr(&out));
    assert_eq!(own_image_count(&env), images + 1, "no image made");
    all_back(&host, &planted);

    // A bake cut after its hold: the watchdog puts everything back.
    assert!(hold_script_with(&host, "hold", 2).status.success());
    assert!(!host.exists("/var/docker/image/config/llm.env"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while host.exists("/var/lib/image-provision/bake/held") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    all_back(&host, &planted);
    assert!(!host.exists("/run/image-provision/bake-watchdog.pid"));
    let out = bake(&["--restore"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("sick: nothing was held aside"), "{}", stderr(&out));
    all_back(&host, &planted);
}

/// End to end on a booted test host (real systemd, Docker, compose v2,
/// Traefik): a server made by `ec2 create` with its stack is baked; the
/// image is tagged with what it holds and the host has every secret back.
/// Then the host is brought to what an instance of the image starts from
/// (the disk as the image took it: the hold applied and never put back; a
/// new machine id, the new server's host key and authorized key, as
/// systemd and cloud-init give them at a first boot) and `ec2 create
/// --ami IMAGE_NAME` runs its host steps there: the driver, the reboot and
/// the pull find everything in place (ok), and nothing reboots.
#[test]
fn a_baked_server_is_made_again_from_its_image_with_no_driver_install_reboot_or_pull() {
    let env = Ec2Env::start(BIN);
    let host = TestHost::boot(Distro::Ubuntu2204Standin);
    host.enable_pinned_bootstrap_standins();
    host.enable_image_server_standins();
    host.enable_registry();
    let acme = host.enable_acme();
    let handed_over = host_key_installed(&env, &host, "src");
    let out = crate::ec2_bootstrap::create_with(&env, &host, "src", true, &["--acme-server", &acme]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let reboots = host.reboots();
    let env_before = host.read("/var/docker/image/config/healthcheck.env");
    let key_before = host.read("/etc/ssh/ssh_host_ed25519_key");
    assert!(
        String::from_utf8_lossy(&host.read("/etc/ssh/ssh_host_ed25519_key.pub"))
            .contains(handed_over.split_whitespace().nth(1).unwrap())
    );

    let mut cmd = env.cmd();
    cmd.args(["ami", "bake", "src", "--name", "src-baked", "--json", "--identity"]).arg(&host.client_key);
    image_provision_testsupport::cli::with_standins(&mut cmd, &host).env("IMAGE_PROVISION_TEST_SSH_ADDR", host.addr());
    let out = image_provision_testsupport::cli::run(&mut cmd, "ami bake src");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let baked: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(baked["state"], "available");
    assert_eq!(baked["holds"]["driver_branch"], "580-server", "{baked}");
    assert!(!baked["holds"]["digests"].as_array().unwrap().is_empty(), "{baked}");
    let image_id = baked["image_id"].as_str().unwrap().to_owned();
    let described = rt().block_on(env.client().describe_images().image_ids(&image_id).send()).unwrap();
    let tags = described.images()[0].tags();
    let commit = host.sh_ok("git -C /var/docker/image/IMAGE-server rev-parse HEAD");
    assert!(tags.iter().any(|t| t.key() == Some("image-provision:repo-commit") && t.value() == Some(commit.trim())));
    assert!(tags.iter().any(|t| t.key() == Some("image-provision:source-server") && t.value() == Some("src")));
    for snapshot in snapshots_of(&env, &image_id) {
        let s = rt().block_on(env.client().describe_snapshots().snapshot_ids(&snapshot).send()).unwrap();
        assert!(
            s.snapshots()[0]
                .tags()
                .iter()
                .any(|t| t.key() == Some("image-provision:image-id") && t.value() == Some(image_id.as_str()))
        );
    }
    // Everything back on the source.
    assert_eq!(host.read("/var/docker/image/config/healthcheck.env"), env_before);
    assert_eq!(host.read("/etc/ssh/ssh_host_ed25519_key"), key_before);
    assert!(!host.exists("/var/lib/image-provision/bake/held"));
    assert!(!host.read("/etc/machine-id").is_empty());
    assert_eq!(host.reboots(), reboots, "a bake reboots nothing");

    // The host as an instance of the image starts.
    assert!(hold_script(&host, "hold").status.success());
    host.sh_ok(
        "kill \"$(cat /run/image-provision/bake-watchdog.pid)\"; rm -rf /run/image-provision; \
                systemd-machine-id-setup",
    );
    host_key_installed(&env, &host, "copy");
    let user = host.default_user();
    let public = std::fs::read_to_string(host.client_key.with_extension("pub")).unwrap();
    host.write(&format!("/home/{user}/.ssh/authorized_keys"), public.as_bytes());
    host.sh_ok(&format!("chown -R {user}: /home/{user}/.ssh && chmod 600 /home/{user}/.ssh/authorized_keys"));
    let out =
        crate::ec2_bootstrap::create_with(&env, &host, "copy", true, &["--acme-server", &acme, "--ami", "src-baked"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("a baked image"), "{}", stderr(&out));
    let outcomes = image_provision_testsupport::cli::outcomes(&out);
    for step in ["nvidia", "reboot", "pull"] {
        let outcome = outcomes.iter().find(|(s, _)| s == step).map(|(_, o)| o.as_str());
        assert_eq!(outcome, Some("ok"), "{step}: {outcomes:?}\n{}", stdout(&out));
    }
    assert_eq!(host.reboots(), reboots, "no reboot");
}
