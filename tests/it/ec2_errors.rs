//! What moto cannot produce, injected by testsupport/fault_proxy.py in front
//! of it; and bad input, which must fail clearly and create nothing.

use image_provision_testsupport::cli::IMAGE_STEPS;
use image_provision_testsupport::ec2env::*;
use serde_json::json;

use crate::BIN;

const MUTATING: &[&str] = &[
    "CreateSecurityGroup",
    "AuthorizeSecurityGroupIngress",
    "ImportKeyPair",
    "DeleteKeyPair",
    "RunInstances",
    "TerminateInstances",
    "DeleteSecurityGroup",
    "ModifyInstanceAttribute",
];

fn actions(env: &Ec2Env) -> Vec<String> {
    env.proxy_calls().into_iter().map(|(a, _)| a).collect()
}

fn injected(env: &Ec2Env, action: &str) -> usize {
    env.proxy_calls().iter().filter(|(a, i)| a == action && i.is_some()).count()
}

fn assert_nothing_changed(env: &Ec2Env) {
    let made: Vec<String> = actions(env).into_iter().filter(|a| MUTATING.contains(&a.as_str())).collect();
    assert!(made.is_empty(), "mutating calls were made: {made:?}");
}

/// The instance tagged Name=`name`, as EC2 describes it.
fn instance_named(env: &Ec2Env, name: &str) -> aws_sdk_ec2::types::Instance {
    let c = env.client();
    let res = rt()
        .block_on(
            c.describe_instances()
                .filters(aws_sdk_ec2::types::Filter::builder().name("tag:Name").values(name).build())
                .send(),
        )
        .unwrap();
    res.reservations()[0].instances()[0].clone()
}

fn zone_of(env: &Ec2Env, name: &str) -> String {
    instance_named(env, name).placement().unwrap().availability_zone().unwrap().to_owned()
}

#[test]
fn insufficient_capacity_moves_to_the_next_zone_and_says_which_were_tried() {
    let env =
        Ec2Env::start_with_faults(BIN, Some(json!([fault("RunInstances", "InsufficientInstanceCapacity", Some(1))])));
    let out = env.run(&["ec2", "create", "cap", "--no-bootstrap"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(injected(&env, "RunInstances"), 1, "the fault was hit");
    assert_eq!(zone_of(&env, "cap"), "us-east-1b");
    let err = stderr(&out);
    assert!(err.contains("no capacity in us-east-1a"), "{err}");
    assert!(stdout(&out).contains("zones      us-east-1a (on-demand), us-east-1b (on-demand)"), "{}", stdout(&out));
}

#[test]
fn instance_type_not_offered_in_a_zone_moves_on_too() {
    let env = Ec2Env::start_with_faults(BIN, Some(json!([fault("RunInstances", "Unsupported", Some(2))])));
    let out = env.run(&["ec2", "create", "unsup", "--no-bootstrap"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(zone_of(&env, "unsup"), "us-east-1c");
}

#[test]
fn spot_without_capacity_falls_back_to_on_demand_unless_spot_only() {
    let spot_fails = json!([{
        "action": "RunInstances", "when": {"InstanceMarketOptions.MarketType": "spot"},
        "code": "InsufficientInstanceCapacity", "message": "no spot capacity"
    }]);
    let env = Ec2Env::start_with_faults(BIN, Some(spot_fails.clone()));
    let out = env.run(&["ec2", "create", "spotty", "--no-bootstrap", "--spot"]);
    assert_eq!(out.status.code(), Some(0));
    let spot_tries = injected(&env, "RunInstances");
    assert!(spot_tries >= 2, "spot was tried in every zone first ({spot_tries})");
    assert!(stdout(&out).contains("(spot)") && stdout(&out).contains("(on-demand)"), "{}", stdout(&out));

    let env = Ec2Env::start_with_faults(BIN, Some(spot_fails));
    let out = env.run(&["ec2", "create", "spotty", "--no-bootstrap", "--spot", "--spot-only"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no capacity for g5.xlarge in any zone tried (us-east-1a (spot)"), "{err}");
    assert!(!err.contains("on-demand)"), "--spot-only never tried on-demand: {err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn spot_request_reaches_ec2() {
    let env = Ec2Env::start(BIN);
    assert_eq!(env.run(&["ec2", "create", "spot-ok", "--no-bootstrap", "--spot"]).status.code(), Some(0));
    let i = instance_named(&env, "spot-ok");
    assert_eq!(i.instance_lifecycle().map(|l| l.as_str()), Some("spot"));
}

#[test]
fn throttling_is_retried() {
    let env = Ec2Env::start_with_faults(BIN, Some(json!([fault("DescribeImages", "RequestLimitExceeded", Some(2))])));
    let out = env.run(&["ec2", "create", "throttled", "--no-bootstrap"]);
    assert_eq!(out.status.code(), Some(0));
    let images: Vec<_> = env.proxy_calls().into_iter().filter(|(a, _)| a == "DescribeImages").collect();
    assert_eq!(images.len(), 3, "two throttled, then one answered: {images:?}");
}

#[test]
fn destroy_moves_to_the_default_group_and_retries_dependency_violation() {
    let env =
        Ec2Env::start_with_faults(BIN, Some(json!([fault("DeleteSecurityGroup", "DependencyViolation", Some(2))])));
    assert_eq!(env.run(&["ec2", "create", "dv", "--no-bootstrap"]).status.code(), Some(0));
    let out = env.run(&["ec2", "destroy", "dv", "--yes"]);
    assert_eq!(out.status.code(), Some(0));
    let calls = actions(&env);
    let pos = |a: &str| calls.iter().position(|c| c == a).unwrap_or_else(|| panic!("{a} not called: {calls:?}"));
    assert!(pos("ModifyInstanceAttribute") < pos("TerminateInstances"), "{calls:?}");
    assert_eq!(injected(&env, "DeleteSecurityGroup"), 2);
    assert_eq!(calls.iter().filter(|c| *c == "DeleteSecurityGroup").count(), 3);
    let c = env.client();
    let groups = rt()
        .block_on(
            c.describe_security_groups()
                .filters(aws_sdk_ec2::types::Filter::builder().name("group-name").values("image-provision-dv").build())
                .send(),
        )
        .unwrap();
    assert!(groups.security_groups().is_empty());
}

#[test]
fn unauthorized_names_the_denied_action() {
    let env = Ec2Env::start_with_faults(BIN, Some(json!([fault("RunInstances", "UnauthorizedOperation", None)])));
    let out = env.run(&["ec2", "create", "denied", "--no-bootstrap"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("RunInstances failed: UnauthorizedOperation"), "{err}");
    assert!(err.contains("hint: your AWS identity may not call ec2:RunInstances"), "{err}");
}

#[test]
fn vcpu_quota_says_which_quota_and_how_to_raise_it() {
    let env = Ec2Env::start_with_faults(BIN, Some(json!([fault("RunInstances", "VcpuLimitExceeded", None)])));
    let out = env.run(&["ec2", "create", "quota", "--no-bootstrap"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("VcpuLimitExceeded"), "{err}");
    assert!(err.contains("Running On-Demand G and VT instances") && err.contains("L-DB2E81BA"), "{err}");
    // A quota error is not a capacity problem: no other zone is tried.
    assert_eq!(env.proxy_calls().iter().filter(|(a, _)| a == "RunInstances").count(), 1);
}

#[test]
fn no_default_vpc_is_explained_and_creates_nothing() {
    let empty = "<DescribeVpcsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
                 <requestId>r</requestId><vpcSet/></DescribeVpcsResponse>";
    let env = Ec2Env::start_with_faults(BIN, Some(json!([{"action": "DescribeVpcs", "body": empty}])));
    let out = env.run(&["ec2", "create", "novpc", "--no-bootstrap"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no default VPC") && err.contains("create-default-vpc"), "{err}");
    assert_nothing_changed(&env);
}

#[test]
fn an_ami_that_does_not_exist_creates_nothing() {
    let env = Ec2Env::start_with_faults(BIN, Some(json!([])));
    let out = env.run(&["ec2", "create", "noami", "--no-bootstrap", "--ami", "ami-0123456789abcdef0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("AMI ami-0123456789abcdef0 does not exist"), "{}", stderr(&out));
    assert_nothing_changed(&env);
}

/// Bad input: exit 2, a message that says what to do, and no AWS call at all.
#[test]
fn bad_input_is_refused_before_any_aws_call() {
    let env = Ec2Env::start_with_faults(BIN, Some(json!([])));
    let dir = env.dir.path();
    std::fs::write(dir.join("public.pub"), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0 me\n").unwrap();
    std::fs::write(dir.join("junk"), "not a key\n").unwrap();
    std::fs::write(dir.join("bad.toml"), "[ec2]\ninstance_type = \"g5.xlarge\"\nvolume_size = \"huge\"\n").unwrap();
    std::fs::write(dir.join("typo.toml"), "[ec2]\ninstance_typo = \"g5.xlarge\"\n").unwrap();
    std::fs::write(dir.join("small.toml"), "[ec2]\nvolume_size = 5\n").unwrap();
    std::fs::write(dir.join("negative.toml"), "[ec2]\nvolume_size = -5\n").unwrap();
    std::fs::write(dir.join("slow.toml"), "[ec2]\nvolume_throughput = 100\n").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["ec2", "create", "Not_A_Label"], "is not a DNS label"),
        (&["ec2", "create", "ok", "--region", "us-esst-1"], "unknown AWS region \"us-esst-1\""),
        (&["ec2", "create", "ok", "--ssh-key", "missing-key"], "no such file"),
        (&["ec2", "create", "ok", "--ssh-key", "."], "cannot read it"),
        (&["ec2", "create", "ok", "--ssh-key", "public.pub"], "this is a public key"),
        (&["ec2", "create", "ok", "--ssh-key", "junk"], "this is not a private key"),
        (&["--config", "bad.toml", "ec2", "create", "ok"], "bad.toml: line 3:"),
        (&["--config", "typo.toml", "ec2", "create", "ok"], "line 2: unknown field `instance_typo`"),
        (&["--config", "absent.toml", "ec2", "create", "ok"], "cannot read config file absent.toml"),
        (&["ec2", "create", "ok", "--ttl", "soon"], "--ttl \"soon\" is not a duration"),
        (&["ec2", "create", "ok", "--ssh-cidr", "1.2.3.4"], "is not a CIDR block"),
        (&["ec2", "create", "ok", "--ami", "Ubuntu"], "is not an AMI id or an image name"),
        (&["ec2", "create", "ok", "--ami", "ami-123"], "is not an AMI id or an image name"),
        (&["ami", "bake", "ok", "--name", "Bad Name"], "--name \"Bad Name\" is not an image name"),
        (&["ami", "bake", "ok", "--name", "-x"], "is not an image name"),
        (&["ami", "bake", "Not_A_Label"], "is not a DNS label"),
        (&["ami", "bake", "ok", "--bake-timeout", "soon"], "--bake-timeout \"soon\" is not a duration"),
        (&["ami", "delete", "../x"], "image name \"../x\" is not an image name"),
        (&["ami", "list", "--region", "us-esst-1"], "unknown AWS region \"us-esst-1\""),
        (&["ec2", "create", "ok", "--ubuntu", "20.04"], "invalid value '20.04'"),
        // Every number names its flag (or key) and the values it takes,
        // a negative one too (not clap's "unexpected argument").
        (
            &["ec2", "create", "ok", "--volume-size", "-5"],
            "--volume-size -5 is not a size: give whole GiB from 8 to 65536",
        ),
        (&["ec2", "create", "ok", "--volume-size", "big"], "--volume-size big is not a size: give whole GiB from 8 to"),
        (&["ec2", "create", "ok", "--volume-size", "7"], "--volume-size 7 is not a size: give whole GiB from 8 to"),
        (&["ec2", "create", "ok", "--volume-size=99999"], "--volume-size 99999 is not a size: give whole GiB from 8"),
        (
            &["--config", "small.toml", "ec2", "create", "ok"],
            "config file: [ec2] volume_size = 5 is not a size: give whole GiB from 8 to 65536",
        ),
        (&["--config", "negative.toml", "ec2", "create", "ok"], "[ec2] volume_size = -5 is not a size: give whole GiB"),
        (
            &["ec2", "create", "ok", "--volume-throughput", "-125"],
            "--volume-throughput -125 is not a throughput: give whole MiB/s from 125 to 1000",
        ),
        (
            &["ec2", "create", "ok", "--volume-iops", "2000"],
            "--volume-iops 2000 is not an IOPS rate: give whole IOPS from 3000 to 16000",
        ),
        (
            &["ec2", "create", "ok", "--volume-throughput", "1000"],
            "--volume-throughput 1000 needs 4000 IOPS (gp3 gives at most 1 MiB/s per 4 IOPS), and the volume has 3000",
        ),
        (
            &["ec2", "create", "ok", "--volume-iops", "6000", "--volume-size", "10"],
            "--volume-iops 6000 is more than gp3's 500 IOPS per GiB of the 10 GiB volume",
        ),
        (
            &["ec2", "create", "ok", "--volume-type", "io2", "--volume-iops", "6000"],
            "--volume-throughput and --volume-iops are for gp3 volumes, and the volume type is io2",
        ),
        (
            &["--config", "slow.toml", "ec2", "create", "ok"],
            "config file: [ec2] volume_throughput = 100 is not a throughput: give whole MiB/s from 125 to 1000",
        ),
        (&["ec2", "create", "ok", "--ttl", "-4h"], "--ttl \"-4h\" is not a duration of at least 1s"),
        (
            &["ec2", "create", "ok", "--ready-timeout", "-10m"],
            "--ready-timeout \"-10m\" is not a duration of at least 1s",
        ),
        (
            &["ec2", "create", "ok", "--reboot-timeout", "-1"],
            "--reboot-timeout \"-1\" is not a duration of at least 1s",
        ),
        (
            &["ec2", "create", "ok", "--cloud-init-timeout", "-5m"],
            "--cloud-init-timeout \"-5m\" is not a duration of at least 1s",
        ),
        (&["ec2", "create", "ok", "--apt-lock-timeout", "-5m"], "--apt-lock-timeout \"-5m\" is not a duration of at"),
        (&["ec2", "create", "ok", "--imageup-timeout", "-1h"], "--imageup-timeout \"-1h\" is not a duration of at"),
        (&["ec2", "create", "ok", "--health-timeout", "-5m"], "--health-timeout \"-5m\" is not a duration of at"),
        (
            &["ec2", "create", "ok", "--healthcheck-every", "-10m"],
            "--healthcheck-every \"-10m\" is not a duration of at least 1m",
        ),
        (
            &["ec2", "create", "ok", "--healthcheck-every", "30s"],
            "--healthcheck-every \"30s\" is not a duration of at least 1m",
        ),
        (
            &["update", "ok", "--upgrade-driver", "--reboot-timeout", "-5m"],
            "--reboot-timeout \"-5m\" is not a duration of at least 1s",
        ),
        (&["update", "ok", "--imageup-timeout", "-1h"], "--imageup-timeout \"-1h\" is not a duration of at least"),
        (&["ec2", "create", "ok", "--spot-only"], "--spot-only needs --spot"),
        (&["ec2", "destroy", "Bad.Name", "--yes"], "is not a DNS label"),
        (&["ec2", "destroy"], "required"),
    ];
    // The LLM chosen (--no-llm), so that each error is the case's own.
    for (args, expected) in cases {
        let out = env.cmd().args(*args).env("IMAGE_PROVISION_NO_LLM", "1").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(expected), "{args:?}: expected {expected:?} in {}", stderr(&out));
    }
    // No LLM chosen: refused before anything, naming both choices.
    let out = env.run(&["ec2", "create", "ok"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no LLM chosen") && stderr(&out).contains("--no-llm"), "{}", stderr(&out));
    let with_region =
        env.cmd().args(["ec2", "create", "ok", "--no-llm"]).env("AWS_REGION", "mars-north-1").output().unwrap();
    assert_eq!(with_region.status.code(), Some(2));
    assert!(stderr(&with_region).contains("unknown AWS region \"mars-north-1\""), "{}", stderr(&with_region));
    assert!(actions(&env).is_empty(), "AWS was called: {:?}", actions(&env));
    assert!(!env.server_dir("ok").exists(), "a key was generated for refused input");
}

#[test]
fn no_credentials_is_explained_and_calls_nothing() {
    let env = Ec2Env::start_with_faults(BIN, Some(json!([])));
    let out = env
        .cmd()
        .args(["ec2", "create", "nocreds", "--no-bootstrap"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no AWS credentials found") && err.contains("aws configure"), "{err}");
    assert!(actions(&env).is_empty(), "{:?}", actions(&env));
    assert!(!env.server_dir("nocreds").exists());
}

/// `ec2 create --dry-run --llm ollama`: the llm step planned as a real run
/// plans it, for the instance type's GPU (a g5.xlarge's A10G: the 4-bit 7B,
/// on a g6e.xlarge's L40S the 32B), and the A10G's note on sharing it.
#[test]
fn dry_run_plans_ollama_for_the_instance_gpu() {
    let env = Ec2Env::start_with_faults(BIN, Some(json!([])));
    for (instance_type, want) in [
        ("g5.xlarge", "write config/ollama.env (qwen2.5vl:7b on a 22.5 GiB GPU: Ollama takes about 8.8 GiB"),
        ("g6e.xlarge", "write config/ollama.env (qwen2.5vl:32b on a 45.0 GiB GPU: Ollama takes about 29.1 GiB"),
    ] {
        let out = env.run(&["ec2", "create", "dry", "--dry-run", "--llm", "ollama", "--instance-type", instance_type]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        let llm = text.lines().find(|l| l.trim_start().starts_with("llm ")).unwrap_or_else(|| panic!("{text}"));
        assert!(llm.contains("write /var/docker/ollama/docker-compose.yml") && llm.contains(want), "{llm}");
        assert!(llm.contains("start Ollama") && llm.contains("pull it first"), "{llm}");
        assert!(actions(&env).is_empty(), "the dry run called AWS: {:?}", actions(&env));
    }
}

/// The README's first command: needs no credentials and no network, and
/// shows the calls a real run makes with their parameters.
#[test]
fn dry_run_prints_every_call_and_makes_none() {
    let env = Ec2Env::start_with_faults(BIN, Some(json!([])));
    let out = env
        .cmd()
        .args(["ec2", "create", "dry", "--dry-run", "--no-llm", "--ttl", "4h", "--region", "eu-west-1"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_REGION")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let calls: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix("ec2:")).map(|l| l.split(' ').next().unwrap()).collect();
    for needed in [
        "DescribeImages",
        "DescribeVpcs",
        "CreateSecurityGroup",
        "AuthorizeSecurityGroupIngress",
        "ImportKeyPair",
        "RunInstances",
    ] {
        assert!(calls.contains(&needed), "{needed} missing from {calls:?}");
    }
    let run = text.lines().find(|l| l.starts_with("ec2:RunInstances ")).unwrap();
    let params: serde_json::Value = serde_json::from_str(run.trim_start_matches("ec2:RunInstances ")).unwrap();
    assert_eq!(params["InstanceType"], "g5.xlarge");
    assert_eq!(params["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"], 1000);
    assert_eq!(params["BlockDeviceMappings"][0]["Ebs"]["VolumeType"], "gp3");
    let ebs = params["BlockDeviceMappings"][0]["Ebs"].as_object().unwrap();
    assert!(!ebs.contains_key("Throughput") && !ebs.contains_key("Iops"), "gp3's baseline unless asked: {ebs:?}");
    assert_eq!(params["InstanceInitiatedShutdownBehavior"], "terminate");
    let tags = params["TagSpecifications"].to_string();
    assert!(tags.contains("image-provision:expires-at") && tags.contains("\"volume\""), "{tags}");
    assert!(text.contains("eu-west-1"), "{text}");
    // Then the host steps, as planned for a fresh Ubuntu 22.04 image: each
    // step named, with what it would install or write.
    let steps: Vec<(&str, &str)> =
        text.lines().filter_map(|l| l.strip_prefix("  ")).filter_map(|l| l.split_once(": ")).collect();
    let names: Vec<&str> = steps.iter().map(|(s, _)| s.trim()).collect();
    assert_eq!(names, IMAGE_STEPS, "{text}");
    let what = |step: &str| steps.iter().find(|(s, _)| s.trim() == step).map(|(_, w)| *w).unwrap_or_default();
    assert!(what("docker").contains("install docker.io docker-compose-v2"), "{text}");
    assert!(what("nvidia").contains("install nvidia-driver-580-server"), "{text}");
    assert!(what("layout").contains("clone https://github.com/Shared-Reality-Lab/IMAGE-server.git"), "{text}");
    assert!(what("stack").contains("bin/imageup"), "{text}");
    assert!(actions(&env).is_empty(), "the dry run called AWS: {:?}", actions(&env));
    assert!(!env.state_dir().exists(), "the dry run wrote local state");

    // gp3's throughput and IOPS, when given, are in the mapping shown.
    let out = env.run(&[
        "ec2",
        "create",
        "dry",
        "--dry-run",
        "--no-llm",
        "--volume-throughput",
        "400",
        "--volume-iops",
        "5000",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = stdout(&out).lines().find_map(|l| l.strip_prefix("ec2:RunInstances ").map(str::to_owned)).unwrap();
    let params: serde_json::Value = serde_json::from_str(&run).unwrap();
    assert_eq!(params["BlockDeviceMappings"][0]["Ebs"]["Throughput"], 400);
    assert_eq!(params["BlockDeviceMappings"][0]["Ebs"]["Iops"], 5000);

    let out = env.run(&["ec2", "destroy", "dry", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("ec2:DescribeInstances"), "{}", stdout(&out));
    assert!(actions(&env).is_empty());
}

/// A rule that already exists (a concurrent run, or a person) never fails a
/// create: one batched call, and on a duplicate, one call per rule.
#[test]
fn existing_rules_never_fail_a_create() {
    let env = Ec2Env::start_with_faults(
        BIN,
        Some(json!([fault("AuthorizeSecurityGroupIngress", "InvalidPermission.Duplicate", Some(1))])),
    );
    let out = env.run(&["ec2", "create", "dup", "--no-bootstrap"]);
    assert_eq!(out.status.code(), Some(0));
    let calls = env.proxy_calls();
    let authorize: Vec<_> = calls.iter().filter(|(a, _)| a == "AuthorizeSecurityGroupIngress").collect();
    assert_eq!(authorize.len(), 7, "one batched call, then six single rules: {authorize:?}");
    let c = env.client();
    let g = rt()
        .block_on(
            c.describe_security_groups()
                .filters(aws_sdk_ec2::types::Filter::builder().name("group-name").values("image-provision-dup").build())
                .send(),
        )
        .unwrap();
    let perms = g.security_groups()[0].ip_permissions();
    for port in [22, 80, 443] {
        assert!(perms.iter().any(|p| p.from_port() == Some(port)), "{port} missing: {perms:?}");
    }

    // A second server whose group already holds part of its rules, added by hand.
    let vpc = rt().block_on(c.describe_vpcs().send()).unwrap().vpcs()[0].vpc_id().unwrap().to_owned();
    let gid = rt()
        .block_on(
            c.create_security_group().group_name("image-provision-hand").description("by hand").vpc_id(&vpc).send(),
        )
        .unwrap()
        .group_id()
        .unwrap()
        .to_owned();
    rt().block_on(
        c.authorize_security_group_ingress()
            .group_id(&gid)
            .ip_permissions(
                aws_sdk_ec2::types::IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(443)
                    .to_port(443)
                    .ip_ranges(aws_sdk_ec2::types::IpRange::builder().cidr_ip("0.0.0.0/0").build())
                    .build(),
            )
            .send(),
    )
    .unwrap();
    let out = env.run(&["ec2", "create", "hand", "--no-bootstrap"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("security group image-provision-hand"), "{}", stderr(&out));
}

/// What a server costs, as an estimate: the dry run and the summary show
/// the instance, the volume and the address; with --spot, EC2's current
/// spot price (a recorded DescribeSpotPriceHistory answer through the
/// fault proxy: moto has no prices); `ec2 list` shows each instance's.
#[test]
fn the_cost_is_estimated_in_the_dry_run_the_summary_and_the_list() {
    let spot_prices = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeSpotPriceHistoryResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>recorded-0001</requestId>
  <spotPriceHistorySet>
    <item><instanceType>g5.xlarge</instanceType><productDescription>Linux/UNIX</productDescription><spotPrice>0.455300</spotPrice><timestamp>2026-12-01T00:00:00.000Z</timestamp><availabilityZone>us-east-1b</availabilityZone></item>
    <item><instanceType>g5.xlarge</instanceType><productDescription>Linux/UNIX</productDescription><spotPrice>0.402100</spotPrice><timestamp>2026-12-01T00:00:00.000Z</timestamp><availabilityZone>us-east-1a</availabilityZone></item>
  </spotPriceHistorySet>
  <nextToken/>
</DescribeSpotPriceHistoryResponse>"#;
    let env = Ec2Env::start_with_faults(
        BIN,
        Some(json!([{"action": "DescribeSpotPriceHistory", "status": 200, "body": spot_prices}])),
    );
    let dry = env.run(&["ec2", "create", "c-1", "--no-bootstrap", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0));
    let text = stdout(&dry);
    let want = "cost: about $1.12/h, $818/month (g5.xlarge on-demand $1.006/h; volume $80.00/month; public IPv4 $0.005/h; an estimate";
    assert!(text.contains(want), "{text}");
    let out = env.run(&["ec2", "create", "c-1", "--no-bootstrap", "--volume-throughput", "500"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let cost = stdout(&out).lines().find(|l| l.starts_with("cost       ")).unwrap_or_default().to_string();
    assert!(cost.contains("volume $95.00/month"), "throughput above gp3's baseline: {cost}");
    let spot = env.run(&["ec2", "create", "c-2", "--no-bootstrap", "--spot", "--json"]);
    assert_eq!(spot.status.code(), Some(0), "{}", stderr(&spot));
    let v: serde_json::Value = serde_json::from_slice(&spot.stdout).unwrap();
    assert_eq!(v["cost"]["instance"]["spot"]["hourly"], 0.4021, "the lowest zone's price: {v}");
    assert!(v["cost"]["basis"].as_str().unwrap().contains("an estimate"), "{v}");
    let list = stdout(&env.run(&["ec2", "list"]));
    assert!(list.contains("INSTANCE $/H") && list.contains("~$1.006"), "{list}");
}

/// Prices from AWS's Price List API: recorded GetProducts answers
/// (tests/fixtures/price-list, served by the fault proxy: moto has no price
/// list) reach the summary and `ec2 list`, which say where they came from,
/// and the proxy saw the filters asked; a type the list does not hold takes
/// the table's price. Where the list refuses (AccessDeniedException: no
/// `pricing:GetProducts` permission) or does not answer at all, the shipped
/// table answers, the estimate says why, nothing is asked twice, and the
/// create goes on.
#[test]
fn prices_come_from_the_price_list_or_the_table_when_it_cannot_be_read() {
    let fixture = |name: &str| {
        std::fs::read_to_string(image_provision_testsupport::repo_root().join("tests/fixtures/price-list").join(name))
            .unwrap()
    };
    let env = Ec2Env::start_with_faults(
        BIN,
        Some(json!([
            {"action": "GetProducts", "when": {"instanceType": "g5.xlarge"}, "status": 200,
             "body": fixture("g5.xlarge-us-east-1.json")},
            {"action": "GetProducts", "when": {"volumeApiName": "gp3"}, "status": 200,
             "body": fixture("gp3-us-east-1.json")},
            {"action": "GetProducts", "status": 200, "body": r#"{"FormatVersion": "aws_v1", "PriceList": []}"#},
        ])),
    );
    let out = env.run(&["ec2", "create", "p-1", "--no-bootstrap"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let cost_line = |out: &std::process::Output| {
        stdout(out).lines().find(|l| l.starts_with("cost       ")).unwrap_or_default().to_string()
    };
    let want = "cost       about $1.24/h, $904/month (g5.xlarge on-demand $1.111/h; volume $88.80/month; public IPv4 \
                $0.005/h; an estimate: the instance and the volume from AWS's price list for us-east-1 now";
    assert!(
        cost_line(&out).starts_with(want),
        "the on-demand term's price, not the reserved one's:\n{}",
        cost_line(&out)
    );
    let instance = |t: &str| {
        json!({"Action": "GetProducts", "ServiceCode": "AmazonEC2", "FormatVersion": "aws_v1",
            "instanceType": t, "regionCode": "us-east-1", "operatingSystem": "Linux", "tenancy": "Shared",
            "preInstalledSw": "NA", "capacitystatus": "Used"})
    };
    let volume = json!({"Action": "GetProducts", "ServiceCode": "AmazonEC2", "FormatVersion": "aws_v1",
        "productFamily": "Storage", "volumeApiName": "gp3", "regionCode": "us-east-1"});
    assert_eq!(env.proxy_params("GetProducts"), vec![instance("g5.xlarge"), volume.clone()], "one look-up each");

    // A type the list does not hold: the table's price for it, the volume's
    // from the list.
    let out = env.run(&["ec2", "create", "p-2", "--no-bootstrap", "--instance-type", "g4dn.xlarge", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cost"]["instance"]["on_demand"], json!({"hourly": 0.526, "source": "table"}), "{v}");
    assert_eq!(
        (v["cost"]["volume_source"].as_str(), v["cost"]["volume_monthly"].as_f64()),
        (Some("price_list"), Some(88.8))
    );
    let basis = v["cost"]["basis"].as_str().unwrap();
    assert!(
        basis.starts_with("an estimate: the volume from AWS's price list for us-east-1 now, the rest from"),
        "{basis}"
    );

    let list = stdout(&env.run(&["ec2", "list"]));
    let row = |name: &str| list.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_string();
    assert!(row("p-1").trim_end().ends_with(" $1.111"), "{list}");
    assert!(row("p-2").trim_end().ends_with(" ~$0.526"), "{list}");
    assert!(list.contains("~ from AWS list prices of 2026-11, us-east-1 shipped with the tool (AWS's price list: no price for g4dn.xlarge in us-east-1)"), "{list}");
    let listed: serde_json::Value = serde_json::from_slice(&env.run(&["ec2", "list", "--json"]).stdout).unwrap();
    let sources: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_owned(), s["instance_price_source"].clone()))
        .collect();
    assert!(sources.contains(&("p-1".into(), json!("price_list"))), "{sources:?}");
    assert!(sources.contains(&("p-2".into(), json!("table"))), "{sources:?}");

    // An account without the permission: refused once, not asked again.
    let env = Ec2Env::start_with_faults(
        BIN,
        Some(json!([{"action": "GetProducts", "code": "AccessDeniedException",
            "message": "User: arn:aws:iam::123456789012:user/t is not authorized to perform: pricing:GetProducts"}])),
    );
    let out = env.run(&["ec2", "create", "p-3", "--no-bootstrap", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cost"]["instance"]["on_demand"], json!({"hourly": 1.006, "source": "table"}), "{v}");
    let basis = v["cost"]["basis"].as_str().unwrap();
    assert!(
        basis.starts_with("an estimate: AWS list prices of 2026-11, us-east-1 shipped with the tool (AWS's price list: AccessDeniedException)"),
        "{basis}"
    );
    assert_eq!(env.proxy_params("GetProducts"), vec![instance("g5.xlarge")], "after a refusal, no second look-up");
    let list = stdout(&env.run(&["ec2", "list"]));
    assert!(list.contains("~$1.006") && list.contains("(AWS's price list: AccessDeniedException)"), "{list}");

    // No answer at all (the price list's endpoint closed): the table, said so.
    let closed = format!("http://127.0.0.1:{}", image_provision_testsupport::net::free_port());
    let started = std::time::Instant::now();
    let out = env
        .cmd()
        .args(["ec2", "create", "p-3", "--no-bootstrap"])
        .env("AWS_ENDPOINT_URL_PRICING", &closed)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        cost_line(&out).contains("on-demand $1.006/h")
            && cost_line(&out).contains("(AWS's price list: no answer (no connection))"),
        "{}",
        cost_line(&out)
    );
    eprintln!("create of an existing server with the price list unreachable: {:?}", started.elapsed());
}
