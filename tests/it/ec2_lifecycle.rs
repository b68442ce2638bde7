//! `ec2 create | list | destroy` against moto's EC2 server, read back through
//! the EC2 API with the SDK (not through image-provision's own view).

use aws_sdk_ec2::types::{Filter, Instance, InstanceStateName, Tag};
use image_provision_testsupport::ec2env::*;

use crate::BIN;

fn f(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

fn tag<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}

fn assert_managed_tags(tags: &[Tag], name: &str, what: &str) {
    assert_eq!(tag(tags, "Name"), Some(name), "{what}: Name tag in {tags:?}");
    assert_eq!(tag(tags, "image-provision:name"), Some(name), "{what}: name tag in {tags:?}");
    assert_eq!(tag(tags, "image-provision:managed"), Some("true"), "{what}: managed tag in {tags:?}");
}

/// What EC2 holds for server NAME, as the SDK sees it.
struct Cloud {
    instances: Vec<Instance>,
    groups: Vec<aws_sdk_ec2::types::SecurityGroup>,
    keys: Vec<aws_sdk_ec2::types::KeyPairInfo>,
}

async fn cloud(c: &aws_sdk_ec2::Client, name: &str) -> Cloud {
    let res = c.describe_instances().filters(f("tag:Name", name)).send().await.unwrap();
    let instances = res
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| i.state().and_then(|s| s.name()) != Some(&InstanceStateName::Terminated))
        .cloned()
        .collect();
    let groups = c
        .describe_security_groups()
        .filters(f("group-name", &format!("image-provision-{name}")))
        .send()
        .await
        .unwrap()
        .security_groups()
        .to_vec();
    let keys = c
        .describe_key_pairs()
        .filters(f("key-name", &format!("image-provision-{name}")))
        .send()
        .await
        .unwrap()
        .key_pairs()
        .to_vec();
    Cloud { instances, groups, keys }
}

fn counts(env: &Ec2Env, name: &str) -> (usize, usize, usize) {
    let c = rt().block_on(cloud(&env.client(), name));
    (c.instances.len(), c.groups.len(), c.keys.len())
}

#[test]
fn create_makes_what_the_guide_asks_and_destroy_leaves_nothing() {
    let env = Ec2Env::start(BIN);
    let out = env.run(&["ec2", "create", "gpu-1", "--no-bootstrap", "--ttl", "4h"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let key_path = env.server_dir("gpu-1").join("id_ed25519");
    assert!(text.contains(&format!("ssh -i {}", key_path.display())), "{text}");
    assert!(text.contains("state      ") && text.contains("public IP  "), "{text}");
    // Where the time went: the AWS calls, to running, to SSH.
    let time = text.lines().find(|l| l.starts_with("time       ")).unwrap_or_else(|| panic!("no time line in\n{text}"));
    assert!(time.contains("launch ") && time.contains("to running ") && time.contains("to SSH "), "{time}");

    let client = env.client();
    let rt = rt();
    let c = rt.block_on(cloud(&client, "gpu-1"));
    assert_eq!((c.instances.len(), c.groups.len(), c.keys.len()), (1, 1, 1));
    let i = &c.instances[0];
    assert!(text.contains(i.instance_id().unwrap()), "{text}");
    assert_eq!(i.instance_type().unwrap().as_str(), "g5.xlarge");
    // The newest Canonical jammy image: not the older one, not the EKS decoy,
    // not the non-Canonical impostor.
    assert_eq!(i.image_id(), Some(JAMMY_NEWEST));
    assert_eq!(i.key_name(), Some("image-provision-gpu-1"));
    assert_managed_tags(i.tags(), "gpu-1", "instance");
    let expires = tag(i.tags(), "image-provision:expires-at").expect("expires-at tag");
    let expires: jiff::Timestamp = expires.parse().expect("RFC 3339");
    let left = expires.duration_since(jiff::Timestamp::now()).as_secs();
    assert!((4 * 3600 - 120..=4 * 3600).contains(&left), "expires in {left} s");
    let shutdown = rt
        .block_on(
            client
                .describe_instance_attribute()
                .instance_id(i.instance_id().unwrap())
                .attribute(aws_sdk_ec2::types::InstanceAttributeName::InstanceInitiatedShutdownBehavior)
                .send(),
        )
        .unwrap();
    assert_eq!(shutdown.instance_initiated_shutdown_behavior().and_then(|v| v.value()), Some("terminate"));

    // The same create again, as JSON: the instance found, the phases timed.
    // (Without --ttl: on a server that exists, a --ttl goes to the host too.)
    let again = env.run(&["ec2", "create", "gpu-1", "--no-bootstrap", "--json"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let v: serde_json::Value = serde_json::from_slice(&again.stdout).expect("one JSON object on stdout");
    assert_eq!(v["instance_id"], i.instance_id().unwrap());
    assert_eq!(v["reused"], true);
    for phase in ["launch_seconds", "to_running_seconds", "to_ssh_seconds", "total_seconds"] {
        assert!(v["time"][phase].as_f64().is_some_and(|s| s >= 0.0), "{phase} in {v}");
    }
    assert_eq!(v["time"]["host_steps_seconds"], 0.0, "--no-bootstrap ran no host step");
    assert!(v.get("steps").is_none(), "{v}");

    // Root volume: 1000 GiB gp3 on the AMI's root device, deleted with the instance.
    let bdm = &i.block_device_mappings()[0];
    assert_eq!(bdm.device_name(), Some("/dev/sda1"));
    assert_eq!(bdm.ebs().and_then(|e| e.delete_on_termination()), Some(true));
    let vol_id = bdm.ebs().and_then(|e| e.volume_id()).unwrap();
    let vols = rt.block_on(client.describe_volumes().volume_ids(vol_id).send()).unwrap();
    let vol = &vols.volumes()[0];
    assert_eq!(vol.size(), Some(1000));
    assert_eq!(vol.volume_type().unwrap().as_str(), "gp3");
    assert_managed_tags(vol.tags(), "gpu-1", "volume");

    // Security group: 22, 80 and 443 from anywhere, IPv4 and IPv6.
    let g = &c.groups[0];
    assert_managed_tags(g.tags(), "gpu-1", "security group");
    assert_eq!(i.security_groups()[0].group_id(), g.group_id());
    for port in [22, 80, 443] {
        let perm = g
            .ip_permissions()
            .iter()
            .find(|p| p.from_port() == Some(port) && p.to_port() == Some(port) && p.ip_protocol() == Some("tcp"))
            .unwrap_or_else(|| panic!("no rule for {port} in {:?}", g.ip_permissions()));
        assert!(perm.ip_ranges().iter().any(|r| r.cidr_ip() == Some("0.0.0.0/0")), "{port}: {perm:?}");
        assert!(perm.ipv6_ranges().iter().any(|r| r.cidr_ipv6() == Some("::/0")), "{port}: {perm:?}");
    }
    assert_managed_tags(c.keys[0].tags(), "gpu-1", "key pair");

    // The generated private key: 0600, matching the imported public key.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let private = std::fs::read_to_string(&key_path).unwrap();
    assert!(!text.contains(private.lines().nth(1).unwrap()), "private key printed");

    // list, both forms.
    let out = env.run(&["ec2", "list", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["name"], "gpu-1");
    assert_eq!(list[0]["instance_id"], i.instance_id().unwrap());
    assert_eq!(list[0]["state"], "running");
    assert_eq!(list[0]["instance_type"], "g5.xlarge");
    assert!(list[0]["expires_at"].as_str().unwrap().ends_with('Z'));
    let out = env.run(&["ec2", "list"]);
    let table = stdout(&out);
    assert!(table.starts_with("NAME") && table.contains("gpu-1") && table.contains("running"), "{table}");

    // Destroy from tags alone, with the local state already gone.
    std::fs::remove_dir_all(env.state_dir()).unwrap();
    let out = env.run(&["ec2", "destroy", "gpu-1", "--yes"]);
    assert_eq!(out.status.code(), Some(0));
    let report = stdout(&out);
    assert!(report.contains(i.instance_id().unwrap()) && report.contains(g.group_id().unwrap()), "{report}");
    assert!(report.contains("image-provision-gpu-1"), "{report}");
    let c = rt.block_on(cloud(&client, "gpu-1"));
    assert_eq!((c.instances.len(), c.groups.len(), c.keys.len()), (0, 0, 0), "something was left behind");
    let vols = rt.block_on(client.describe_volumes().filters(f("tag:Name", "gpu-1")).send()).unwrap();
    assert!(vols.volumes().iter().all(|v| v.state().map(|s| s.as_str()) != Some("in-use")), "{vols:?}");
    assert_eq!(stdout(&env.run(&["ec2", "list", "--json"])).trim(), "[]");
}

#[test]
fn rerun_reuses_everything_and_destroy_of_nothing_says_so() {
    let env = Ec2Env::start(BIN);
    assert_eq!(env.run(&["ec2", "create", "again", "--no-bootstrap"]).status.code(), Some(0));
    let second = env.run(&["ec2", "create", "again", "--no-bootstrap"]);
    assert_eq!(second.status.code(), Some(0));
    assert!(stdout(&second).contains("(existing)"), "{}", stdout(&second));
    assert_eq!(counts(&env, "again"), (1, 1, 1));

    // The state directory lost: create still finds the server by its tags.
    std::fs::remove_dir_all(env.state_dir()).unwrap();
    assert_eq!(env.run(&["ec2", "create", "again", "--no-bootstrap"]).status.code(), Some(0));
    assert_eq!(counts(&env, "again"), (1, 1, 1));

    assert_eq!(env.run(&["ec2", "destroy", "again", "--yes"]).status.code(), Some(0));
    let out = env.run(&["ec2", "destroy", "again", "--yes"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("no server named again exists"), "{}", stdout(&out));
    // A create after a destroy makes a new server.
    assert_eq!(env.run(&["ec2", "create", "again", "--no-bootstrap"]).status.code(), Some(0));
    assert_eq!(counts(&env, "again"), (1, 1, 1));
}

#[test]
fn noble_ami_override_and_options_reach_ec2() {
    let env = Ec2Env::start(BIN);
    let out = env.run(&[
        "ec2",
        "create",
        "noble",
        "--no-bootstrap",
        "--ubuntu",
        "24.04",
        "--instance-type",
        "g5.2xlarge",
        "--volume-size",
        "200",
        "--volume-type",
        "gp2",
        "--ssh-cidr",
        "203.0.113.0/24",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let rt = rt();
    let client = env.client();
    let c = rt.block_on(cloud(&client, "noble"));
    let i = &c.instances[0];
    assert_eq!(i.image_id(), Some(NOBLE_NEWEST));
    assert_eq!(i.instance_type().unwrap().as_str(), "g5.2xlarge");
    let bdm = &i.block_device_mappings()[0];
    assert_eq!(bdm.device_name(), Some("/dev/xvda"), "the AMI's own root device name");
    let vol =
        rt.block_on(client.describe_volumes().volume_ids(bdm.ebs().unwrap().volume_id().unwrap()).send()).unwrap();
    assert_eq!(vol.volumes()[0].size(), Some(200));
    assert_eq!(vol.volumes()[0].volume_type().unwrap().as_str(), "gp2");
    let ssh = c.groups[0].ip_permissions().iter().find(|p| p.from_port() == Some(22)).unwrap();
    let v4: Vec<_> = ssh.ip_ranges().iter().filter_map(|r| r.cidr_ip()).collect();
    assert_eq!(v4, ["203.0.113.0/24"]);
    assert!(ssh.ipv6_ranges().is_empty());
    assert!(
        rt.block_on(
            client
                .describe_instance_attribute()
                .instance_id(i.instance_id().unwrap())
                .attribute(aws_sdk_ec2::types::InstanceAttributeName::InstanceInitiatedShutdownBehavior)
                .send()
        )
        .unwrap()
        .instance_initiated_shutdown_behavior()
        .and_then(|v| v.value())
            != Some("terminate"),
        "no --ttl: shutdown does not terminate"
    );

    let out = env.run(&["ec2", "create", "pinned", "--no-bootstrap", "--ami", JAMMY_OLDER]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(rt.block_on(cloud(&client, "pinned")).instances[0].image_id(), Some(JAMMY_OLDER));
}

#[test]
fn config_file_then_environment_then_flags() {
    let env = Ec2Env::start(BIN);
    let config = env.dir.path().join("image-provision.toml");
    std::fs::write(&config, "[ec2]\ninstance_type = \"g5.4xlarge\"\nvolume_size = 300\nvolume_type = \"gp2\"\n")
        .unwrap();
    // The file applies (found in the current directory)...
    assert_eq!(env.run(&["ec2", "create", "layered", "--no-bootstrap", "--volume-size", "400"]).status.code(), Some(0));
    let rt = rt();
    let client = env.client();
    let c = rt.block_on(cloud(&client, "layered"));
    let i = &c.instances[0];
    assert_eq!(i.instance_type().unwrap().as_str(), "g5.4xlarge", "from the file");
    let vol_id = i.block_device_mappings()[0].ebs().unwrap().volume_id().unwrap();
    let vol = rt.block_on(client.describe_volumes().volume_ids(vol_id).send()).unwrap();
    assert_eq!(vol.volumes()[0].size(), Some(400), "the flag beats the file");
    assert_eq!(vol.volumes()[0].volume_type().unwrap().as_str(), "gp2", "from the file");
    // ...the environment beats the file.
    let out = env
        .cmd()
        .args(["ec2", "create", "layered-env", "--no-bootstrap"])
        .env("IMAGE_PROVISION_INSTANCE_TYPE", "g5.8xlarge")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let c = rt.block_on(cloud(&client, "layered-env"));
    assert_eq!(c.instances[0].instance_type().unwrap().as_str(), "g5.8xlarge");
}

/// gp3's throughput and IOPS reach RunInstances' block device mapping, from
/// the flags or the file. moto keeps neither on the volume it makes, so the
/// request as the fault proxy saw it is the evidence.
#[test]
fn gp3_throughput_and_iops_reach_run_instances() {
    let env = Ec2Env::start_with_faults(BIN, Some(serde_json::json!([])));
    let out =
        env.run(&["ec2", "create", "fast", "--no-bootstrap", "--volume-throughput", "500", "--volume-iops", "6000"]);
    assert_eq!(out.status.code(), Some(0));
    std::fs::write(env.dir.path().join("image-provision.toml"), "[ec2]\nvolume_throughput = 250\n").unwrap();
    assert_eq!(env.run(&["ec2", "create", "from-file", "--no-bootstrap"]).status.code(), Some(0));
    let runs = env.proxy_params("RunInstances");
    let ebs = |i: usize, key: &str| runs[i][format!("BlockDeviceMapping.1.Ebs.{key}")].as_str().map(str::to_owned);
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!((ebs(0, "Throughput"), ebs(0, "Iops")), (Some("500".into()), Some("6000".into())), "{runs:?}");
    assert_eq!(ebs(0, "VolumeType").as_deref(), Some("gp3"));
    assert_eq!((ebs(1, "Throughput"), ebs(1, "Iops")), (Some("250".into()), None), "EBS's default IOPS: {runs:?}");
    assert!(runs.iter().all(|r| r.get("UserData").is_none()), "the host key stays out of the log");
    // The instance is there, with its volume.
    let rt = rt();
    let client = env.client();
    let c = rt.block_on(cloud(&client, "fast"));
    assert!(c.instances[0].block_device_mappings()[0].ebs().unwrap().volume_id().is_some());
}

/// Kill the process right after each AWS call of a create in turn, then run
/// create again: every time, exactly one instance, group and key pair.
#[test]
fn create_killed_after_any_call_converges_on_rerun() {
    let env = Ec2Env::start(BIN);
    let mut n = 1;
    loop {
        let name = format!("kill-{n}");
        let out = env
            .cmd()
            .args(["ec2", "create", &name, "--no-bootstrap"])
            .env("IMAGE_PROVISION_TEST_KILL_AFTER_CALLS", n.to_string())
            .output()
            .unwrap();
        match out.status.code() {
            Some(137) => {}
            Some(0) => break,
            other => panic!("call {n}: exit {other:?}: {}", stderr(&out)),
        }
        assert_eq!(env.run(&["ec2", "create", &name, "--no-bootstrap"]).status.code(), Some(0), "rerun after kill {n}");
        assert_eq!(counts(&env, &name), (1, 1, 1), "after a kill following call {n}");
        n += 1;
        assert!(n < 60, "create never finished without being killed");
    }
    // Every call of a full create was a kill point: DescribeInstances,
    // DescribeImages, DescribeVpcs, DescribeSubnets, DescribeSecurityGroups,
    // CreateSecurityGroup, AuthorizeSecurityGroupIngress, DescribeKeyPairs,
    // ImportKeyPair, RunInstances, then DescribeInstances while waiting.
    assert!(n > 11, "only {n} kill points: the hook is not counting calls");
}

#[test]
fn destroy_expired_removes_only_expired_servers() {
    let env = Ec2Env::start(BIN);
    assert_eq!(env.run(&["ec2", "create", "keep", "--no-bootstrap", "--ttl", "10h"]).status.code(), Some(0));
    assert_eq!(env.run(&["ec2", "create", "old", "--no-bootstrap", "--ttl", "1s"]).status.code(), Some(0));
    assert_eq!(env.run(&["ec2", "create", "forever", "--no-bootstrap"]).status.code(), Some(0));
    std::thread::sleep(std::time::Duration::from_secs(2));
    let out = env.run(&["ec2", "destroy", "--expired", "--yes"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("destroyed old"), "{}", stdout(&out));
    assert_eq!(counts(&env, "old"), (0, 0, 0));
    assert_eq!(counts(&env, "keep"), (1, 1, 1));
    assert_eq!(counts(&env, "forever"), (1, 1, 1));
    assert!(!env.server_dir("old").exists());
    assert!(env.server_dir("keep").exists());
}

#[test]
fn destroy_without_a_terminal_needs_yes() {
    let env = Ec2Env::start(BIN);
    assert_eq!(env.run(&["ec2", "create", "safe", "--no-bootstrap"]).status.code(), Some(0));
    let out = env.run(&["ec2", "destroy", "safe"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    assert_eq!(counts(&env, "safe"), (1, 1, 1));
}

/// `--profile` (and a config file's `profile`) pick the AWS profile, whose
/// region and credentials then apply, as with the aws CLI.
#[test]
fn profile_selects_region_and_credentials() {
    let env = Ec2Env::start(BIN);
    let home = env.dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let config = home.join("profiles-config");
    let creds = home.join("profiles-credentials");
    std::fs::write(&config, "[profile lab]\nregion = eu-west-1\n").unwrap();
    std::fs::write(&creds, "[lab]\naws_access_key_id = lab\naws_secret_access_key = lab\n").unwrap();
    let with_profiles = |args: &[&str]| {
        env.cmd()
            .args(args)
            .env_remove("AWS_REGION")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_CONFIG_FILE", &config)
            .env("AWS_SHARED_CREDENTIALS_FILE", &creds)
            .output()
            .unwrap()
    };
    let out = with_profiles(&["ec2", "create", "prof", "--no-bootstrap", "--profile", "lab"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("in eu-west-1"), "{}", stderr(&out));
    let toml = env.dir.path().join("image-provision.toml");
    std::fs::write(&toml, "[ec2]\nprofile = \"lab\"\n").unwrap();
    let out = with_profiles(&["ec2", "list", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("\"prof\""), "the file's profile and its region were used: {}", stdout(&out));
    // Without any profile, region or credentials: a clear error, exit 1 or 2, no panic.
    std::fs::remove_file(&toml).unwrap();
    let out = with_profiles(&["ec2", "list"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("no AWS"), "{}", stderr(&out));
}

/// On a terminal, destroy asks; anything but yes keeps the server.
#[test]
fn destroy_asks_on_a_terminal() {
    let env = Ec2Env::start(BIN);
    assert_eq!(env.run(&["ec2", "create", "ask", "--no-bootstrap"]).status.code(), Some(0));
    let bin = env!("CARGO_BIN_EXE_image-provision");
    let on_tty = |answer: &str| {
        // util-linux's `script` gives the command a pseudo-terminal.
        let mut child = env
            .command("script")
            .args(["-q", "-e", "-c", &format!("{bin} ec2 destroy ask"), "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        std::thread::sleep(std::time::Duration::from_millis(500));
        child.stdin.as_mut().unwrap().write_all(format!("{answer}\n").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = on_tty("n");
    assert!(text.contains("Destroy server ask") && text.contains("nothing destroyed"), "{text}");
    assert_eq!(counts(&env, "ask"), (1, 1, 1));
    let text = on_tty("y");
    assert!(text.contains("destroyed ask"), "{text}");
    assert_eq!(counts(&env, "ask"), (0, 0, 0));
}

/// The instance gets a host key made here, through cloud-init user data, and
/// the printed ssh command verifies it: no trust on first use.
#[test]
fn create_hands_the_instance_its_host_key_and_records_it() {
    let env = Ec2Env::start(BIN);
    let out = env.run(&["ec2", "create", "hostkey", "--no-bootstrap"]);
    assert_eq!(out.status.code(), Some(0));
    let dir = env.server_dir("hostkey");
    let public = std::fs::read_to_string(dir.join("ssh_host_ed25519_key.pub")).unwrap();
    let private = std::fs::read_to_string(dir.join("ssh_host_ed25519_key")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(dir.join("ssh_host_ed25519_key")).unwrap().permissions().mode() & 0o777, 0o600);

    let client = env.client();
    let rt = rt();
    let i = rt.block_on(cloud(&client, "hostkey")).instances.remove(0);
    let attr = rt
        .block_on(
            client
                .describe_instance_attribute()
                .instance_id(i.instance_id().unwrap())
                .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
                .send(),
        )
        .unwrap();
    let encoded = attr.user_data().and_then(|v| v.value()).expect("user data");
    let text = String::from_utf8(aws_smithy_types::base64::decode(encoded).unwrap()).unwrap();
    let json = text.strip_prefix("#cloud-config\n").expect("a cloud-config");
    let config: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(config["ssh_keys"]["ed25519_public"].as_str().unwrap(), public.trim());
    assert_eq!(config["ssh_keys"]["ed25519_private"].as_str().unwrap(), private);
    assert_eq!(config["ssh_genkeytypes"], serde_json::json!([]));

    let ip = i.public_ip_address().unwrap();
    let known = std::fs::read_to_string(dir.join("known_hosts")).unwrap();
    let key_fields: Vec<&str> = public.split_whitespace().take(2).collect();
    assert_eq!(known.trim(), format!("{ip} {}", key_fields.join(" ")));
    let text = stdout(&out);
    assert!(text.contains(&format!("-o UserKnownHostsFile={}", dir.join("known_hosts").display())), "{text}");
    assert!(!text.contains(private.lines().nth(1).unwrap()) && !stderr(&out).contains(private.lines().nth(1).unwrap()));
}

const EXPIRES_AT: &str = "image-provision:expires-at";

/// The expires-at tag of each resource of server NAME (instance, its volumes,
/// security group, key pair), as EC2 holds it.
fn expiry_tags(env: &Ec2Env, name: &str) -> Vec<(String, Option<String>)> {
    let client = env.client();
    let rt = rt();
    let c = rt.block_on(cloud(&client, name));
    assert_eq!((c.instances.len(), c.groups.len(), c.keys.len()), (1, 1, 1));
    let i = &c.instances[0];
    let mut found = vec![(format!("instance {}", i.instance_id().unwrap()), tag(i.tags(), EXPIRES_AT))];
    let vol_ids: Vec<String> =
        i.block_device_mappings().iter().filter_map(|m| m.ebs()?.volume_id().map(str::to_owned)).collect();
    assert!(!vol_ids.is_empty(), "{i:?}");
    let vols = rt.block_on(client.describe_volumes().set_volume_ids(Some(vol_ids)).send()).unwrap();
    for v in vols.volumes() {
        found.push((format!("volume {}", v.volume_id().unwrap()), tag(v.tags(), EXPIRES_AT)));
    }
    found.push(("security group".into(), tag(c.groups[0].tags(), EXPIRES_AT)));
    found.push(("key pair".into(), tag(c.keys[0].tags(), EXPIRES_AT)));
    found.into_iter().map(|(what, at)| (what, at.map(str::to_owned))).collect()
}

/// Asserts every resource of NAME expires at one time, about `hours` from
/// now, and returns that time as tagged.
fn assert_expiry_in(env: &Ec2Env, name: &str, hours: i64) -> String {
    let tags = expiry_tags(env, name);
    let at = tags[0].1.clone().unwrap_or_else(|| panic!("no expiry in {tags:?}"));
    assert!(tags.iter().all(|(_, t)| t.as_deref() == Some(at.as_str())), "not one expiry: {tags:?}");
    let left = at.parse::<jiff::Timestamp>().expect("RFC 3339").duration_since(jiff::Timestamp::now()).as_secs();
    assert!((hours * 3600 - 120..=hours * 3600).contains(&left), "{name} expires in {left} s, not {hours} h");
    at
}

fn shutdown_behavior(env: &Ec2Env, name: &str) -> String {
    let client = env.client();
    let rt = rt();
    let id = rt.block_on(cloud(&client, name)).instances[0].instance_id().unwrap().to_owned();
    let attr = rt
        .block_on(
            client
                .describe_instance_attribute()
                .instance_id(id)
                .attribute(aws_sdk_ec2::types::InstanceAttributeName::InstanceInitiatedShutdownBehavior)
                .send(),
        )
        .unwrap();
    attr.instance_initiated_shutdown_behavior().and_then(|v| v.value()).unwrap_or_default().to_owned()
}

/// `create --ttl` on a server that exists moves its expiry on everything made
/// for it, and then on the host; a host that cannot be reached (here: the
/// sshd standing in for the instance serves another host key than the one
/// handed over) is said, and fails the run, the tags moved all the same. A
/// create without --ttl leaves the expiry, and the host, alone; `list`
/// shows the time left.
#[test]
fn ttl_on_an_existing_server_moves_its_expiry() {
    let env = Ec2Env::start(BIN);
    assert_eq!(env.run(&["ec2", "create", "ext", "--no-bootstrap", "--ttl", "2h"]).status.code(), Some(0));
    let first = assert_expiry_in(&env, "ext", 2);

    let out = env.run(&["ec2", "create", "ext", "--no-bootstrap", "--ttl", "5h"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let moved = assert_expiry_in(&env, "ext", 5);
    assert!(stderr(&out).contains(&format!("expiry of ext moved from {first} to {moved}")), "{}", stderr(&out));
    let not_on_host = format!("ext's tags now expire at {moved}, but its power-off on the host was not moved");
    assert!(stderr(&out).contains(&not_on_host), "{}", stderr(&out));
    assert!(stderr(&out).contains("run the same command again"), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("expires    {moved}")), "{}", stdout(&out));
    assert_eq!(shutdown_behavior(&env, "ext"), "terminate");

    // Without --ttl the expiry stays, and is what the run reports.
    let out = env.run(&["ec2", "create", "ext", "--no-bootstrap", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("expiry of"), "{}", stderr(&out));
    assert_eq!(assert_expiry_in(&env, "ext", 5), moved);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!(v["expires_at"], moved.as_str());

    // list: the time left, and "-" for a server that never expires.
    assert_eq!(env.run(&["ec2", "create", "forever", "--no-bootstrap"]).status.code(), Some(0));
    let out = env.run(&["ec2", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let header = text.lines().next().unwrap();
    assert!(header.contains("EXPIRES") && header.contains(" LEFT "), "{text}");
    let row =
        |name: &str| text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{text}"));
    // The LEFT column, before the AUTOSTOP one (none here) and the
    // instance's price.
    let ext_left = row("ext").split_whitespace().rev().skip(2).take(2).collect::<Vec<_>>();
    assert!(ext_left == ["59m", "4h"] || ext_left == ["58m", "4h"], "{text}");
    let forever = row("forever").split_whitespace().rev().take(3).collect::<Vec<_>>();
    assert_eq!(forever, ["~$1.006", "-", "-"], "{text}");
    let out = env.run(&["ec2", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let server = |name: &str| list.as_array().unwrap().iter().find(|s| s["name"] == name).unwrap().clone();
    let left = server("ext")["seconds_left"].as_i64().unwrap_or_else(|| panic!("{list}"));
    assert!((5 * 3600 - 300..=5 * 3600).contains(&left), "{list}");
    assert!(server("forever")["seconds_left"].is_null(), "{list}");
}

/// A server made without --ttl stops on shutdown; given a --ttl later, it gets
/// an expiry everywhere and terminates on shutdown, so its bill ends with it.
#[test]
fn ttl_on_a_server_made_without_one_makes_its_shutdown_terminate() {
    let env = Ec2Env::start(BIN);
    assert_eq!(env.run(&["ec2", "create", "late", "--no-bootstrap"]).status.code(), Some(0));
    assert!(expiry_tags(&env, "late").iter().all(|(_, at)| at.is_none()));
    assert_eq!(shutdown_behavior(&env, "late"), "stop");

    // (The host's power-off is not moved: see the test above.)
    let out = env.run(&["ec2", "create", "late", "--no-bootstrap", "--ttl", "3h", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let at = assert_expiry_in(&env, "late", 3);
    assert_eq!(shutdown_behavior(&env, "late"), "terminate");
    assert!(stderr(&out).contains(&format!("expiry of late set to {at}")), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!((v["reused"].as_bool(), v["expires_at"].as_str()), (Some(true), Some(at.as_str())));
    assert_eq!(v["ok"], false, "{v}");
}

/// `--base-image dlami`: the newest Deep Learning Base AMI of AWS's own
/// account (not a newer one of the same name under another owner); the dry
/// run says which owner and name it asks; with --ami, or another name, a
/// usage error and nothing made.
#[test]
fn base_image_dlami_launches_aws_deep_learning_base_ami() {
    let env = Ec2Env::start(BIN);
    let dry = env.run(&["ec2", "create", "dl-1", "--no-bootstrap", "--base-image", "dlami", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0));
    let text = stdout(&dry);
    assert!(
        text.contains("898082745236") && text.contains("Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"),
        "{text}"
    );
    let out = env.run(&["ec2", "create", "dl-1", "--no-bootstrap", "--base-image", "dlami"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let c = rt().block_on(cloud(&env.client(), "dl-1"));
    assert_eq!(c.instances[0].image_id(), Some(DLAMI_NEWEST), "not {DLAMI_IMPOSTOR}");
    for bad in [&["--base-image", "dlami", "--ami", JAMMY_NEWEST][..], &["--base-image", "centos"][..]] {
        let out = env.run(&[&["ec2", "create", "dl-2", "--no-bootstrap"][..], bad].concat());
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("--base-image"), "{}", stderr(&out));
    }
    assert_eq!(rt().block_on(cloud(&env.client(), "dl-2")).instances.len(), 0);
}
