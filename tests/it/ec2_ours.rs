//! "Touch only what is ours", against moto, read back with the SDK: names
//! read from tags never reach a path outside their own server directory; an
//! Elastic IP the tool did not allocate stays allocated; SSH narrows when
//! asked; DNS ownership names the account and region as well as the server;
//! instances start with IMDSv2 required and an encrypted volume.

use aws_sdk_ec2::types::{Filter, HttpTokensState, InstanceStateName, ResourceType, Tag, TagSpecification};
use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType};
use image_provision_testsupport::ec2env::*;

use crate::BIN;

/// moto's account.
const ACCOUNT: &str = "123456789012";

fn ok(out: &std::process::Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    format!("{}{}", stdout(out), stderr(out))
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// An instance made outside image-provision, with these tags: what another
/// account user could launch, or re-tag.
pub(crate) fn launch_tagged(env: &Ec2Env, tags: &[Tag]) -> String {
    let spec = TagSpecification::builder().resource_type(ResourceType::Instance).set_tags(Some(tags.to_vec())).build();
    let out = rt()
        .block_on(
            env.client()
                .run_instances()
                .image_id(JAMMY_NEWEST)
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .min_count(1)
                .max_count(1)
                .tag_specifications(spec)
                .send(),
        )
        .unwrap();
    out.instances()[0].instance_id().unwrap().to_owned()
}

fn state_of(env: &Ec2Env, instance_id: &str) -> InstanceStateName {
    let out = rt().block_on(env.client().describe_instances().instance_ids(instance_id).send()).unwrap();
    out.reservations()[0].instances()[0].state().unwrap().name().unwrap().clone()
}

/// The live instance of server NAME in the client's region.
fn instance_of(client: &aws_sdk_ec2::Client, name: &str) -> aws_sdk_ec2::types::Instance {
    let filter = Filter::builder().name("tag:image-provision:name").values(name).build();
    let out = rt().block_on(client.describe_instances().filters(filter).send()).unwrap();
    let live: Vec<_> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| i.state().and_then(|s| s.name()) != Some(&InstanceStateName::Terminated))
        .cloned()
        .collect();
    assert_eq!(live.len(), 1, "{live:?}");
    live[0].clone()
}

/// Hostile name tags on expired instances (an absolute path, `..`, empty)
/// are reported and left alone: their instances keep running and no
/// directory is removed; a name that is valid but collides with the state
/// directory's own contents (`logs`) reaches only its own server directory.
/// EC2 takes any character in a tag that its XML can carry: `ec2 list`
/// shows a name and an expiry holding a carriage return, a line break and
/// an 8-bit CSI (a one-character escape sequence to many terminals) escaped,
/// never as themselves: no row faked, no line overwritten.
#[test]
fn ec2_list_shows_tag_values_with_control_characters_escaped() {
    let env = Ec2Env::start(BIN);
    launch_tagged(
        &env,
        &[
            tag("image-provision:managed", "true"),
            tag("image-provision:name", "\u{9b}2Jevil\r\nfake row"),
            tag("image-provision:expires-at", "2099-01-01T00:00:00Z\u{9b}0m"),
        ],
    );
    let out = env.run(&["ec2", "list"]);
    let text = ok(&out);
    assert!(!text.contains('\u{9b}') && !text.contains('\r'), "{text:?}");
    assert!(text.contains("\\u{9b}2Jevil\\r\\nfake row"), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("fake row")), "{text}");
}

#[test]
fn expired_instances_with_hostile_name_tags_are_left_alone_and_no_directory_outside_its_own_goes() {
    let env = Ec2Env::start(BIN);
    ok(&env.run(&["ec2", "create", "victim", "--no-bootstrap"]));
    let victim_key = env.server_dir("victim").join("id_ed25519");
    assert!(victim_key.is_file());
    let outside = env.dir.path().join("precious");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("data"), "keep me").unwrap();
    let logs = env.state_dir().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("run.log"), "a run").unwrap();

    let past = "2020-01-01T00:00:00Z";
    let hostile = [outside.display().to_string(), "..".to_owned(), String::new(), "../victim".to_owned()];
    let hostile_ids: Vec<String> = hostile
        .iter()
        .map(|name| {
            launch_tagged(
                &env,
                &[
                    tag("image-provision:managed", "true"),
                    tag("image-provision:name", name),
                    tag("image-provision:expires-at", past),
                ],
            )
        })
        .collect();
    // A valid name: it is destroyed, and only STATE/servers/logs could go.
    let logs_id = launch_tagged(
        &env,
        &[
            tag("image-provision:managed", "true"),
            tag("image-provision:name", "logs"),
            tag("image-provision:expires-at", past),
        ],
    );

    let out = env.run(&["ec2", "destroy", "--expired", "--yes"]);
    let text = ok(&out);
    for (name, id) in hostile.iter().zip(&hostile_ids) {
        assert!(
            text.contains(&format!("instance {id} has expired, but its tag image-provision:name={name:?}")),
            "{text}"
        );
        assert_eq!(state_of(&env, id), InstanceStateName::Running, "{name:?} was touched");
    }
    assert!(text.contains("terminate it in the EC2 console"), "what to do: {text}");
    assert!(text.contains("destroyed logs"), "{text}");
    assert_eq!(state_of(&env, &logs_id), InstanceStateName::Terminated);
    assert_eq!(std::fs::read_to_string(outside.join("data")).unwrap(), "keep me");
    assert!(victim_key.is_file(), "another server's keys went");
    assert_eq!(std::fs::read_to_string(logs.join("run.log")).unwrap(), "a run", "the run logs went");
    assert!(env.state_dir().is_dir());

    // Typed, the same: `destroy logs` is server logs, not the run logs.
    ok(&env.run(&["ec2", "destroy", "logs", "--yes"]));
    assert_eq!(std::fs::read_to_string(logs.join("run.log")).unwrap(), "a run");

    // As JSON: what was left alone, by instance.
    let out = env.run(&["ec2", "destroy", "--expired", "--yes", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let left: Vec<&str> =
        v["left_alone"].as_array().unwrap().iter().map(|b| b["instance_id"].as_str().unwrap()).collect();
    assert_eq!(left.len(), hostile_ids.len(), "{v}");
    assert!(hostile_ids.iter().all(|id| left.contains(&id.as_str())), "{v}");
}

/// destroy releases the Elastic IP it allocated for the server and leaves
/// one the account associated with the instance itself allocated, saying so.
#[test]
fn destroy_releases_only_the_elastic_ips_it_allocated() {
    let env = Ec2Env::start(BIN);
    ok(&env.run(&[
        "ec2",
        "create",
        "mine",
        "--no-bootstrap",
        "--domain",
        "mine.example.net",
        "--acme-email",
        "a@example.org",
    ]));
    ok(&env.run(&["ec2", "create", "theirs", "--no-bootstrap"]));
    let client = env.client();
    let theirs = instance_of(&client, "theirs");
    let foreign = rt().block_on(client.allocate_address().domain(aws_sdk_ec2::types::DomainType::Vpc).send()).unwrap();
    let foreign_id = foreign.allocation_id().unwrap().to_owned();
    let foreign_ip = foreign.public_ip().unwrap().to_owned();
    rt().block_on(
        client.associate_address().allocation_id(&foreign_id).instance_id(theirs.instance_id().unwrap()).send(),
    )
    .unwrap();

    let text = ok(&env.run(&["ec2", "destroy", "theirs", "--yes"]));
    assert!(
        text.contains(&format!("kept addresses  {foreign_ip} (not allocated for theirs: still allocated)")),
        "{text}"
    );
    let mine_ip = instance_of(&client, "mine").public_ip_address().unwrap().to_owned();
    ok(&env.run(&["ec2", "destroy", "mine", "--yes"]));
    let left: Vec<String> = rt()
        .block_on(client.describe_addresses().send())
        .unwrap()
        .addresses()
        .iter()
        .map(|a| a.allocation_id().unwrap().to_owned())
        .collect();
    assert_eq!(left, [foreign_id], "ours ({mine_ip}) released, the account's kept");
}

/// The port-22 rules of the server's group, sorted.
fn ssh_rules(env: &Ec2Env, name: &str) -> (Vec<String>, usize) {
    let filter = Filter::builder().name("group-name").values(format!("image-provision-{name}")).build();
    let out = rt().block_on(env.client().describe_security_groups().filters(filter).send()).unwrap();
    let group = &out.security_groups()[0];
    let mut ssh = Vec::new();
    let mut web = 0;
    for p in group.ip_permissions() {
        let cidrs = p
            .ip_ranges()
            .iter()
            .filter_map(|r| r.cidr_ip())
            .chain(p.ipv6_ranges().iter().filter_map(|r| r.cidr_ipv6()))
            .map(str::to_owned);
        match p.from_port() {
            Some(22) => ssh.extend(cidrs),
            _ => web += cidrs.count(),
        }
    }
    ssh.sort();
    (ssh, web)
}

/// A re-run with --ssh-cidr leaves exactly the asked rules on port 22, IPv4
/// and IPv6, saying what it closed; a re-run without the flag keeps them;
/// HTTP and HTTPS stay open to all.
#[test]
fn ssh_narrows_to_exactly_what_is_asked_and_a_plain_rerun_keeps_it() {
    let env = Ec2Env::start(BIN);
    ok(&env.run(&["ec2", "create", "narrow", "--no-bootstrap"]));
    assert_eq!(ssh_rules(&env, "narrow"), (vec!["0.0.0.0/0".into(), "::/0".into()], 4));

    let text = ok(&env.run(&["ec2", "create", "narrow", "--no-bootstrap", "--ssh-cidr", "203.0.113.0/24"]));
    assert_eq!(ssh_rules(&env, "narrow"), (vec!["203.0.113.0/24".into()], 4));
    assert!(text.contains("opened 22<-203.0.113.0/24"), "{text}");
    assert!(text.contains("closed 22<-0.0.0.0/0 22<-::/0 (no longer asked for)"), "{text}");

    let text = ok(&env.run(&["ec2", "create", "narrow", "--no-bootstrap"]));
    assert_eq!(ssh_rules(&env, "narrow"), (vec!["203.0.113.0/24".into()], 4), "a plain re-run kept SSH as it was");
    assert!(!text.contains("opened") && !text.contains("closed"), "{text}");

    let args =
        ["ec2", "create", "narrow", "--no-bootstrap", "--ssh-cidr", "2001:db8::/48", "--ssh-cidr", "198.51.100.7/32"];
    ok(&env.run(&args));
    assert_eq!(ssh_rules(&env, "narrow"), (vec!["198.51.100.7/32".into(), "2001:db8::/48".into()], 4));
}

fn zone(env: &Ec2Env, name: &str) -> String {
    let out = rt().block_on(env.route53().create_hosted_zone().name(name).caller_reference(name).send()).unwrap();
    out.hosted_zone().unwrap().id().to_owned()
}

/// Record sets at NAME (fully qualified) of TYPE: their values.
fn values(env: &Ec2Env, zone_id: &str, name: &str, kind: RrType) -> Vec<String> {
    let out = rt().block_on(env.route53().list_resource_record_sets().hosted_zone_id(zone_id).send()).unwrap();
    out.resource_record_sets()
        .iter()
        .filter(|r| r.name() == name && r.r#type() == &kind)
        .flat_map(|r| r.resource_records().iter().map(|v| v.value().to_owned()))
        .collect()
}

fn upsert_txt(env: &Ec2Env, zone_id: &str, name: &str, value: &str) {
    let record = ResourceRecordSet::builder()
        .name(name)
        .r#type(RrType::Txt)
        .ttl(60)
        .resource_records(ResourceRecord::builder().value(value).build().unwrap())
        .build()
        .unwrap();
    let change = Change::builder().action(ChangeAction::Upsert).resource_record_set(record).build().unwrap();
    let batch = ChangeBatch::builder().changes(change).build().unwrap();
    rt().block_on(env.route53().change_resource_record_sets().hosted_zone_id(zone_id).change_batch(batch).send())
        .unwrap();
}

/// Two servers called demo, in us-east-1 and eu-west-1, sharing a hosted
/// zone: neither takes the other's name, and destroying one leaves the
/// other's records. A record in the form earlier versions wrote (the name
/// alone) is still recognised as its server's.
#[test]
fn two_servers_of_one_name_in_two_regions_keep_their_own_records() {
    let env = Ec2Env::start(BIN);
    let lab = zone(&env, "lab.example.org.");
    let acme = ["--acme-email", "ops@example.org", "--no-bootstrap"];
    let create = |region: &str, domain: &str| {
        let mut args = vec!["ec2", "create", "demo", "--region", region, "--domain", domain];
        args.extend(acme);
        ok(&env.run(&args))
    };
    create("us-east-1", "a.lab.example.org");
    let owner = |region: &str| format!("\"heritage=image-provision,server=demo,account={ACCOUNT},region={region}\"");
    assert_eq!(values(&env, &lab, "_image-provision.a.lab.example.org.", RrType::Txt), [owner("us-east-1")]);
    let a_record = values(&env, &lab, "a.lab.example.org.", RrType::A);
    assert_eq!(a_record.len(), 1);

    // eu-west-1's demo asks for the same name: us-east-1's demo holds it.
    let text = create("eu-west-1", "a.lab.example.org");
    assert!(text.contains("DNS        left alone: zone lab.example.org. has a.lab.example.org. A"), "{text}");
    assert_eq!(values(&env, &lab, "a.lab.example.org.", RrType::A), a_record, "taken over by the other demo");
    // It takes a name of its own, then is destroyed: us-east-1's stay.
    create("eu-west-1", "b.lab.example.org");
    assert_eq!(values(&env, &lab, "_image-provision.b.lab.example.org.", RrType::Txt), [owner("eu-west-1")]);
    let text = ok(&env.run(&["ec2", "destroy", "demo", "--region", "eu-west-1", "--yes"]));
    assert!(text.contains("b.lab.example.org. A"), "{text}");
    assert!(values(&env, &lab, "b.lab.example.org.", RrType::A).is_empty());
    assert_eq!(values(&env, &lab, "a.lab.example.org.", RrType::A), a_record, "the other region's demo lost its name");

    // us-east-1's demo, as an earlier version recorded it: still its own.
    upsert_txt(&env, &lab, "_image-provision.a.lab.example.org.", "\"heritage=image-provision,server=demo\"");
    ok(&env.run(&["ec2", "destroy", "demo", "--region", "us-east-1", "--yes"]));
    assert!(values(&env, &lab, "a.lab.example.org.", RrType::A).is_empty(), "the old form was not recognised");
    assert!(values(&env, &lab, "_image-provision.a.lab.example.org.", RrType::Txt).is_empty());
}

/// Read back through the EC2 API: IMDSv2 required with hop limit 1 and an
/// encrypted root volume (the account's default key, or --kms-key); an
/// existing instance whose metadata was opened is locked again by a re-run;
/// the dry run shows both settings.
#[test]
fn instances_start_with_imdsv2_required_and_an_encrypted_root_volume() {
    let env = Ec2Env::start(BIN);
    let client = env.client();
    let key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    ok(&env.run(&["ec2", "create", "sealed", "--no-bootstrap"]));
    ok(&env.run(&["ec2", "create", "keyed", "--no-bootstrap", "--kms-key", key]));
    for (name, kms) in [("sealed", None), ("keyed", Some(key))] {
        let i = instance_of(&client, name);
        let m = i.metadata_options().unwrap();
        assert_eq!(m.http_tokens(), Some(&HttpTokensState::Required), "{name}: {m:?}");
        assert_eq!(m.http_put_response_hop_limit(), Some(1), "{name}: {m:?}");
        let volume_id = i.block_device_mappings()[0].ebs().unwrap().volume_id().unwrap();
        let v = rt().block_on(client.describe_volumes().volume_ids(volume_id).send()).unwrap();
        let v = &v.volumes()[0];
        assert_eq!(v.encrypted(), Some(true), "{name}: {v:?}");
        if let Some(kms) = kms {
            assert_eq!(v.kms_key_id(), Some(kms), "{name}: {v:?}");
        }
    }

    // Opened by hand: a re-run locks it again and says so.
    let id = instance_of(&client, "sealed").instance_id().unwrap().to_owned();
    rt().block_on(
        client
            .modify_instance_metadata_options()
            .instance_id(&id)
            .http_tokens(HttpTokensState::Optional)
            .http_put_response_hop_limit(2)
            .send(),
    )
    .unwrap();
    let text = ok(&env.run(&["ec2", "create", "sealed", "--no-bootstrap"]));
    assert!(text.contains("instance metadata now requires IMDSv2 tokens, hop limit 1"), "{text}");
    let m = instance_of(&client, "sealed").metadata_options().unwrap().clone();
    assert_eq!((m.http_tokens(), m.http_put_response_hop_limit()), (Some(&HttpTokensState::Required), Some(1)));

    let text = ok(&env.run(&["ec2", "create", "dry", "--dry-run", "--no-llm", "--kms-key", "alias/image"]));
    assert!(
        text.contains("secured: the root volume encrypted with alias/image; instance metadata IMDSv2 only"),
        "{text}"
    );
    let line = text.lines().find(|l| l.starts_with("ec2:RunInstances ")).unwrap();
    let params: serde_json::Value = serde_json::from_str(&line["ec2:RunInstances ".len()..]).unwrap();
    assert_eq!(params["MetadataOptions"]["HttpTokens"], "required", "{params}");
    assert_eq!(params["MetadataOptions"]["HttpPutResponseHopLimit"], 1, "{params}");
    let ebs = &params["BlockDeviceMappings"][0]["Ebs"];
    assert_eq!((ebs["Encrypted"].as_bool(), ebs["KmsKeyId"].as_str()), (Some(true), Some("alias/image")), "{params}");

    let out = env.run(&["ec2", "create", "bad", "--no-bootstrap", "--kms-key", "../key"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--kms-key"), "{}", stderr(&out));
    assert!(!env.server_dir("bad").exists());
}
