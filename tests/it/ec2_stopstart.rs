//! `ec2 stop` and `ec2 start` against moto: the instance, its volume, its
//! Elastic IP and its DNS records kept; both idempotent; the DNS record and
//! the pinned host key following a new address; a stopped server destroyed,
//! and swept once expired. Read back through the SDK, not through
//! image-provision's own view.

use aws_sdk_ec2::types::{Filter, Instance, InstanceStateName};
use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType};
use image_provision_testsupport::ec2env::*;

use crate::BIN;

/// Every instance ever made for server NAME (terminated ones too).
fn instances(env: &Ec2Env, name: &str) -> Vec<Instance> {
    let filter = Filter::builder().name("tag:image-provision:name").values(name).build();
    let out = rt().block_on(env.client().describe_instances().filters(filter).send()).unwrap();
    out.reservations().iter().flat_map(|r| r.instances()).cloned().collect()
}

/// The one live instance of server NAME.
fn live(env: &Ec2Env, name: &str) -> Instance {
    let all: Vec<Instance> = instances(env, name)
        .into_iter()
        .filter(|i| i.state().and_then(|s| s.name()) != Some(&InstanceStateName::Terminated))
        .collect();
    assert_eq!(all.len(), 1, "{all:?}");
    all.into_iter().next().unwrap()
}

fn state(i: &Instance) -> &str {
    i.state().and_then(|s| s.name()).map(|n| n.as_str()).unwrap_or_default()
}

fn volume_ids(i: &Instance) -> Vec<String> {
    i.block_device_mappings().iter().filter_map(|m| m.ebs()?.volume_id()).map(str::to_owned).collect()
}

/// The Elastic IPs tagged for server NAME: (public IP, instance it is on).
fn elastic_ips(env: &Ec2Env, name: &str) -> Vec<(String, Option<String>)> {
    let out = rt().block_on(env.client().describe_addresses().send()).unwrap();
    out.addresses()
        .iter()
        .filter(|a| a.tags().iter().any(|t| t.key() == Some("image-provision:name") && t.value() == Some(name)))
        .map(|a| (a.public_ip().unwrap_or_default().to_owned(), a.instance_id().map(str::to_owned)))
        .collect()
}

fn make_zone(env: &Ec2Env, name: &str) -> String {
    let out = rt().block_on(env.route53().create_hosted_zone().name(name).caller_reference(name).send()).unwrap();
    out.hosted_zone().unwrap().id().to_owned()
}

/// The A record's values at `name` in the zone.
fn a_record(env: &Ec2Env, zone_id: &str, name: &str) -> Vec<String> {
    let out = rt().block_on(env.route53().list_resource_record_sets().hosted_zone_id(zone_id).send()).unwrap();
    out.resource_record_sets()
        .iter()
        .filter(|r| r.name() == name && *r.r#type() == RrType::A)
        .flat_map(|r| r.resource_records().iter().map(|v| v.value().to_owned()))
        .collect()
}

fn set_a_record(env: &Ec2Env, zone_id: &str, name: &str, value: &str) {
    let record = ResourceRecordSet::builder()
        .name(name)
        .r#type(RrType::A)
        .ttl(60)
        .resource_records(ResourceRecord::builder().value(value).build().unwrap())
        .build()
        .unwrap();
    let change = Change::builder().action(ChangeAction::Upsert).resource_record_set(record).build().unwrap();
    let batch = ChangeBatch::builder().changes(change).build().unwrap();
    rt().block_on(env.route53().change_resource_record_sets().hosted_zone_id(zone_id).change_batch(batch).send())
        .unwrap();
}

fn ok(out: &std::process::Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    stdout(out)
}

/// With an Elastic IP and a DNS record: stop keeps the instance, its volume,
/// its address and its record, and says what they cost while stopped; a
/// second stop says it is stopped already; list shows it stopped with that
/// cost; start brings back the same instance with the same volume at the
/// same address; a second start says it runs already; destroy of a stopped
/// server leaves nothing.
#[test]
fn stop_and_start_keep_the_instance_its_volume_its_address_and_its_record() {
    let env = Ec2Env::start(BIN);
    let zone = make_zone(&env, "example.org.");
    ok(&env.run(&[
        "ec2",
        "create",
        "pause",
        "--no-bootstrap",
        "--domain",
        "pause.example.org",
        "--acme-email",
        "ops@example.org",
    ]));
    let before = live(&env, "pause");
    let id = before.instance_id().unwrap().to_owned();
    let volumes = volume_ids(&before);
    assert_eq!(volumes.len(), 1, "{before:?}");
    let eips = elastic_ips(&env, "pause");
    assert_eq!(eips.len(), 1, "{eips:?}");
    let eip = eips[0].0.clone();
    assert_eq!(a_record(&env, &zone, "pause.example.org."), [eip.as_str()]);

    let text = ok(&env.run(&["ec2", "stop", "pause"]));
    assert!(text.contains(&format!("stopped pause ({id})")), "{text}");
    assert!(text.contains(&format!("volume {}", volumes[0])) && text.contains(&format!("Elastic IP {eip}")), "{text}");
    assert!(text.contains("DNS records of pause.example.org"), "{text}");
    assert!(text.contains("while stopped about $") && text.contains("1 Elastic IP $0.005/h"), "{text}");
    let stopped = live(&env, "pause");
    assert_eq!((stopped.instance_id(), state(&stopped)), (Some(id.as_str()), "stopped"));
    assert_eq!(volume_ids(&stopped), volumes);
    assert_eq!(elastic_ips(&env, "pause"), [(eip.clone(), Some(id.clone()))], "the address stays associated");
    assert_eq!(a_record(&env, &zone, "pause.example.org."), [eip.as_str()]);

    let again = env.run(&["ec2", "stop", "pause", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&ok(&again)).unwrap();
    assert_eq!(v["already_stopped"], true, "{v}");
    assert_eq!(v["instance_id"], id.as_str());
    assert_eq!(v["elastic_ips"], serde_json::json!([eip]));
    assert_eq!(v["cost_while_stopped"]["public_ipv4"], 1);
    let text = ok(&env.run(&["ec2", "stop", "pause"]));
    assert!(text.contains("is stopped already: nothing to do"), "{text}");

    // list: stopped, and what that costs (1000 GiB gp3 from the table, since
    // moto has no price list: about $80/month, and the address).
    let text = ok(&env.run(&["ec2", "list"]));
    let row = text.lines().find(|l| l.starts_with("pause ")).unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains(" stopped ") && row.contains("/h"), "{row}");
    assert!(text.contains("while stopped: no instance hours"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&ok(&env.run(&["ec2", "list", "--json"]))).unwrap();
    let cost = &v[0]["cost_while_stopped"];
    assert_eq!(v[0]["state"], "stopped");
    let hourly = cost["hourly"].as_f64().unwrap();
    assert!((hourly - (80.0 / 730.0 + 0.005)).abs() < 1e-6, "{cost}");

    let text = ok(&env.run(&["ec2", "start", "pause", "--no-verify", "--ready-timeout", "60s"]));
    assert!(text.contains(&format!("started pause ({id})")), "{text}");
    assert!(text.contains(&format!("public IP  {eip} (Elastic IP)")), "{text}");
    let started = live(&env, "pause");
    assert_eq!((started.instance_id(), state(&started)), (Some(id.as_str()), "running"));
    assert_eq!(volume_ids(&started), volumes);
    assert_eq!(started.public_ip_address(), Some(eip.as_str()));
    assert_eq!(elastic_ips(&env, "pause"), [(eip.clone(), Some(id.clone()))]);
    assert_eq!(a_record(&env, &zone, "pause.example.org."), [eip.as_str()]);
    let text = ok(&env.run(&["ec2", "start", "pause", "--no-verify", "--ready-timeout", "60s"]));
    assert!(text.contains(&format!("pause ({id}) is running already")), "{text}");

    // Verify's SSH checks the host key strictly: moto's instance is the
    // test's sshd, which holds another key, so the start says plainly that
    // it could not reach the server and why, and exits 1 (the instance runs).
    let out = env.run(&["ec2", "start", "pause", "--health-timeout", "5s", "--ready-timeout", "60s"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("cannot reach") && err.contains("offers the host key pinned in"), "{err}");

    ok(&env.run(&["ec2", "stop", "pause"]));
    let text = ok(&env.run(&["ec2", "destroy", "pause", "--yes"]));
    assert!(text.contains(&format!("instances       {id}")), "{text}");
    assert!(instances(&env, "pause").iter().all(|i| state(i) == "terminated"));
    assert!(elastic_ips(&env, "pause").is_empty());
    assert!(a_record(&env, &zone, "pause.example.org.").is_empty());
    assert!(!env.server_dir("pause").exists());
}

/// Without an Elastic IP the address may change on a start: the DNS record
/// made for the server and its known_hosts line (same key) follow it. moto
/// keeps the address, so the test moves the record and the line to an old
/// address first, as a real stop and start would leave them.
#[test]
fn without_an_elastic_ip_the_record_and_the_pinned_key_follow_the_new_address() {
    let env = Ec2Env::start(BIN);
    let zone = make_zone(&env, "example.org.");
    ok(&env.run(&[
        "ec2",
        "create",
        "roam",
        "--no-bootstrap",
        "--no-elastic-ip",
        "--domain",
        "roam.example.org",
        "--acme-email",
        "ops@example.org",
    ]));
    assert!(elastic_ips(&env, "roam").is_empty());
    let ip = live(&env, "roam").public_ip_address().unwrap().to_owned();
    let known_hosts = env.server_dir("roam").join("known_hosts");
    let line = std::fs::read_to_string(&known_hosts).unwrap();
    let key = line.strip_prefix(&format!("{ip} ")).unwrap_or_else(|| panic!("{line}")).to_owned();
    ok(&env.run(&["ec2", "stop", "roam"]));
    let old = "198.51.100.77";
    set_a_record(&env, &zone, "roam.example.org.", old);
    std::fs::write(&known_hosts, format!("{old} {key}")).unwrap();

    let out = env.run(&["ec2", "start", "roam", "--no-verify", "--json", "--ready-timeout", "60s"]);
    let v: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    let now = live(&env, "roam").public_ip_address().unwrap().to_owned();
    assert_eq!((v["public_ip"].as_str(), v["previous_public_ip"].as_str()), (Some(now.as_str()), Some(old)));
    assert_eq!(a_record(&env, &zone, "roam.example.org."), [now.as_str()]);
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), format!("{now} {key}"));
    assert!(
        stderr(&out).contains(&format!("the host key pinned for {old} is now pinned for {now}")),
        "{}",
        stderr(&out)
    );
}

/// A name no server has is a clear error (1), a bad name a usage error (2);
/// neither touches anything. A start to verify with no pinned host key is
/// refused before anything starts.
#[test]
fn stop_and_start_of_a_missing_or_bad_name() {
    let env = Ec2Env::start(BIN);
    for args in [&["ec2", "stop", "nobody"][..], &["ec2", "start", "nobody", "--no-verify", "--ready-timeout", "60s"]] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("no server named nobody exists in this region") && err.contains("ec2 list"), "{err}");
    }
    for args in [&["ec2", "stop", "Bad_Name"][..], &["ec2", "start", "../x", "--no-verify", "--ready-timeout", "60s"]] {
        assert_eq!(env.run(args).status.code(), Some(2), "{args:?}");
    }
    let out = env.run(&["ec2", "start", "nobody"]);
    assert_eq!(out.status.code(), Some(1), "a missing server is said first");
    assert!(stderr(&out).contains("no server named nobody"), "{}", stderr(&out));
    // start without --no-verify needs the pinned host key: checked before
    // the server is started (exit 2, still stopped).
    ok(&env.run(&["ec2", "create", "lost", "--no-bootstrap"]));
    ok(&env.run(&["ec2", "stop", "lost"]));
    std::fs::remove_file(env.server_dir("lost").join("known_hosts")).unwrap();
    let out = env.run(&["ec2", "start", "lost"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no known host key") && stderr(&out).contains("--no-verify"), "{}", stderr(&out));
    assert_eq!(state(&live(&env, "lost")), "stopped");
}

/// A TTL keeps counting while a server is stopped (its on-host timer does
/// not run then): the sweep terminates a stopped server once it expired.
#[test]
fn an_expired_stopped_server_is_swept() {
    let env = Ec2Env::start(BIN);
    ok(&env.run(&["ec2", "create", "nap", "--no-bootstrap", "--ttl", "2s"]));
    ok(&env.run(&["ec2", "create", "keep", "--no-bootstrap", "--ttl", "10h"]));
    ok(&env.run(&["ec2", "stop", "nap"]));
    ok(&env.run(&["ec2", "stop", "keep"]));
    assert_eq!(state(&live(&env, "nap")), "stopped");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let text = ok(&env.run(&["ec2", "destroy", "--expired", "--yes"]));
    assert!(text.contains("destroyed nap"), "{text}");
    assert!(instances(&env, "nap").iter().all(|i| state(i) == "terminated"));
    assert_eq!(state(&live(&env, "keep")), "stopped", "a stopped server not yet expired stays");
}
