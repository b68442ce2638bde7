//! `ec2 create --domain` against moto: the server's Elastic IP and its
//! Route 53 records, read back through the EC2 and Route 53 APIs with the SDK
//! (not through image-provision's own view), and what destroy does to them.

use aws_sdk_ec2::types::{Address, Filter, InstanceStateName, Tag};
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, HostedZoneConfig, ResourceRecord, ResourceRecordSet, RrType, Vpc, VpcRegion,
};
use image_provision_testsupport::ec2env::*;

use crate::BIN;

const ACME: [&str; 2] = ["--acme-email", "ops@example.org"];

fn tag<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}

/// `ec2 create NAME --no-bootstrap --domain DOMAIN --acme-email ...` and `more`.
fn create(env: &Ec2Env, name: &str, domain: &str, more: &[&str]) -> std::process::Output {
    let mut args = vec!["ec2", "create", name, "--no-bootstrap", "--domain", domain];
    args.extend(ACME);
    args.extend(more);
    env.run(&args)
}

/// Every Elastic IP in the account.
fn addresses(env: &Ec2Env) -> Vec<Address> {
    rt().block_on(env.client().describe_addresses().send()).unwrap().addresses().to_vec()
}

/// Elastic IPs tagged for server NAME.
fn addresses_of(env: &Ec2Env, name: &str) -> Vec<Address> {
    addresses(env).into_iter().filter(|a| tag(a.tags(), "image-provision:name") == Some(name)).collect()
}

/// The live instance of server NAME: its id and public IP.
fn instance(env: &Ec2Env, name: &str) -> (String, String) {
    let filter = Filter::builder().name("tag:image-provision:name").values(name).build();
    let out = rt().block_on(env.client().describe_instances().filters(filter).send()).unwrap();
    let live: Vec<_> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| i.state().and_then(|s| s.name()) != Some(&InstanceStateName::Terminated))
        .collect();
    assert_eq!(live.len(), 1, "{live:?}");
    (live[0].instance_id().unwrap().to_owned(), live[0].public_ip_address().unwrap_or_default().to_owned())
}

/// A hosted zone; private ones attached to the default VPC. Returns its id.
fn make_zone(env: &Ec2Env, name: &str, private: bool) -> String {
    let rt = rt();
    let r53 = env.route53();
    let mut req = r53.create_hosted_zone().name(name).caller_reference(format!("{name}-{private}"));
    if private {
        let vpcs = rt
            .block_on(
                env.client()
                    .describe_vpcs()
                    .filters(Filter::builder().name("is-default").values("true").build())
                    .send(),
            )
            .unwrap();
        let vpc_id = vpcs.vpcs()[0].vpc_id().unwrap();
        req = req
            .hosted_zone_config(HostedZoneConfig::builder().private_zone(true).build())
            .vpc(Vpc::builder().vpc_id(vpc_id).vpc_region(VpcRegion::from(REGION)).build());
    }
    let out = rt.block_on(req.send()).unwrap();
    out.hosted_zone().unwrap().id().to_owned()
}

/// A record set made by the test (a person's, for image-provision).
fn add_record(env: &Ec2Env, zone_id: &str, name: &str, kind: RrType, value: &str) {
    let record = ResourceRecordSet::builder()
        .name(name)
        .r#type(kind)
        .ttl(300)
        .resource_records(ResourceRecord::builder().value(value).build().unwrap())
        .build()
        .unwrap();
    let change = Change::builder().action(ChangeAction::Create).resource_record_set(record).build().unwrap();
    let batch = ChangeBatch::builder().changes(change).build().unwrap();
    rt().block_on(env.route53().change_resource_record_sets().hosted_zone_id(zone_id).change_batch(batch).send())
        .unwrap();
}

/// The zone's record sets other than its own SOA and NS, as
/// (name, type, values), in Route 53's order.
fn records(env: &Ec2Env, zone_id: &str) -> Vec<(String, String, Vec<String>)> {
    let out = rt().block_on(env.route53().list_resource_record_sets().hosted_zone_id(zone_id).send()).unwrap();
    out.resource_record_sets()
        .iter()
        .filter(|r| !matches!(r.r#type(), RrType::Soa | RrType::Ns))
        .map(|r| {
            (
                r.name().to_owned(),
                r.r#type().as_str().to_owned(),
                r.resource_records().iter().map(|v| v.value().to_owned()).collect(),
            )
        })
        .collect()
}

fn record(name: &str, kind: &str, value: &str) -> (String, String, Vec<String>) {
    (name.to_owned(), kind.to_owned(), vec![value.to_owned()])
}

/// With --domain and no zone for it: one Elastic IP, tagged like the rest of
/// the server, associated with the instance and shown as its address; a
/// re-run reuses it; destroy releases it, even unassociated (a killed run).
#[test]
fn the_elastic_ip_is_tagged_associated_reused_and_released() {
    let env = Ec2Env::start(BIN);
    let out = create(&env, "eip", "eip.example.net", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let found = addresses_of(&env, "eip");
    assert_eq!(found.len(), 1, "{found:?}");
    let eip = &found[0];
    let ip = eip.public_ip().unwrap().to_owned();
    for (key, value) in [
        ("Name", "eip"),
        ("image-provision:name", "eip"),
        ("image-provision:managed", "true"),
        ("image-provision:domain", "eip.example.net"),
    ] {
        assert_eq!(tag(eip.tags(), key), Some(value), "{key} in {:?}", eip.tags());
    }
    let (instance_id, public_ip) = instance(&env, "eip");
    assert_eq!(eip.instance_id(), Some(instance_id.as_str()));
    assert_eq!(public_ip, ip, "the instance's public IP is the Elastic IP");
    let text = stdout(&out);
    assert!(text.contains(&format!("public IP  {ip} (Elastic IP)")), "{text}");
    // No zone holds the name: the record to make by hand, and the run goes on.
    assert!(
        text.contains(&format!(
            "no Route 53 zone of this account holds it: create eip.example.net. A {ip} where its DNS is served"
        )),
        "{text}"
    );
    let known_hosts = std::fs::read_to_string(env.server_dir("eip").join("known_hosts")).unwrap();
    assert!(known_hosts.starts_with(&format!("{ip} ")), "{known_hosts}");

    // A re-run, as JSON: the same address, no second one. (Exit 1: a --ttl
    // on a server that exists moves its power-off on the host too, and the
    // sshd standing in for the instance serves another host key.)
    let again = create(&env, "eip", "eip.example.net", &["--json", "--ttl", "2h"]);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(stderr(&again).contains("but its power-off on the host was not moved"), "{}", stderr(&again));
    let v: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!((v["elastic_ip"].as_str(), v["public_ip"].as_str()), (Some(ip.as_str()), Some(ip.as_str())));
    assert_eq!(v["dns"]["outcome"], "no_zone", "{v}");
    let found = addresses_of(&env, "eip");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].allocation_id(), eip.allocation_id());
    assert!(tag(found[0].tags(), "image-provision:expires-at").is_some(), "--ttl moved the address's expiry too");

    // As after a run killed between allocating and associating: destroy
    // releases a tagged address no instance holds.
    rt().block_on(env.client().disassociate_address().association_id(found[0].association_id().unwrap()).send())
        .unwrap();
    let out = env.run(&["ec2", "destroy", "eip", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains(&ip), "{}", stdout(&out));
    assert!(addresses(&env).is_empty(), "{:?}", addresses(&env));
}

/// The records go to the longest public zone holding the name (not a
/// parent's zone, not a private zone of the same name), in one batch, with an
/// ownership TXT record; a re-run changes nothing; destroy deletes them and
/// nothing else. A name with a record someone else made is left alone, by
/// create and by destroy, which reports it.
#[test]
fn records_go_to_the_longest_public_zone_and_only_ours_leave_with_the_server() {
    let env = Ec2Env::start(BIN);
    let decoy = make_zone(&env, "example.org.", false);
    let lab = make_zone(&env, "lab.example.org.", false);
    let private = make_zone(&env, "lab.example.org.", true);
    let other = record("other.lab.example.org.", "A", "198.51.100.1");
    add_record(&env, &lab, &other.0, RrType::A, &other.2[0]);

    let out = create(&env, "srv", "srv.lab.example.org", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (_, ip) = instance(&env, "srv");
    let ours = vec![
        record("srv.lab.example.org.", "A", &ip),
        record(
            "_image-provision.srv.lab.example.org.",
            "TXT",
            "\"heritage=image-provision,server=srv,account=123456789012,region=us-east-1\"",
        ),
    ];
    let mut expected = ours.clone();
    expected.push(other.clone());
    let mut in_lab = records(&env, &lab);
    in_lab.sort();
    expected.sort();
    assert_eq!(in_lab, expected);
    assert!(records(&env, &decoy).is_empty(), "the parent's zone: {:?}", records(&env, &decoy));
    assert!(records(&env, &private).is_empty(), "the private zone: {:?}", records(&env, &private));
    assert_eq!(addresses_of(&env, "srv")[0].public_ip(), Some(ip.as_str()), "the A record holds the Elastic IP");
    let text = stdout(&out);
    assert!(
        text.contains(&format!("DNS        srv.lab.example.org. A {ip} (Route 53 zone lab.example.org.)")),
        "{text}"
    );

    let again = create(&env, "srv", "srv.lab.example.org", &["--json"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let v: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!((v["dns"]["outcome"].as_str(), v["dns"]["changed"].as_bool()), (Some("published"), Some(false)));

    // A name someone else made a record for, with no ownership record.
    add_record(&env, &lab, "www.lab.example.org.", RrType::A, "198.51.100.9");
    let out = create(&env, "web", "www.lab.example.org", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("DNS        left alone: zone lab.example.org. has www.lab.example.org. A 198.51.100.9")
    );
    let www = record("www.lab.example.org.", "A", "198.51.100.9");
    assert!(records(&env, &lab).contains(&www));
    assert!(!records(&env, &lab).iter().any(|r| r.0.contains("_image-provision.www")), "{:?}", records(&env, &lab));

    let out = env.run(&["ec2", "destroy", "web", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("kept DNS        www.lab.example.org. A 198.51.100.9 (not made for web)"),
        "{}",
        stdout(&out)
    );
    assert!(records(&env, &lab).contains(&www), "destroy removed a record it did not make");

    let out = env.run(&["ec2", "destroy", "srv", "--yes", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report[0]["dns_records"].as_array().map(Vec::len), Some(2), "{report}");
    let mut left = records(&env, &lab);
    left.sort();
    let mut others = vec![other, www];
    others.sort();
    assert_eq!(left, others, "only srv's records went");
    assert!(addresses(&env).is_empty(), "{:?}", addresses(&env));
}

/// --no-dns: an Elastic IP, no record; --no-elastic-ip: a record holding
/// the instance's own public IP, no address.
#[test]
fn no_dns_and_no_elastic_ip_each_switch_one_off() {
    let env = Ec2Env::start(BIN);
    let lab = make_zone(&env, "lab.example.org.", false);

    let out = create(&env, "nodns", "nodns.lab.example.org", &["--no-dns"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(records(&env, &lab).is_empty(), "{:?}", records(&env, &lab));
    assert_eq!(addresses_of(&env, "nodns").len(), 1);
    assert!(!stdout(&out).contains("DNS "), "{}", stdout(&out));

    let out = create(&env, "noeip", "noeip.lab.example.org", &["--no-elastic-ip"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(addresses_of(&env, "noeip").is_empty(), "{:?}", addresses(&env));
    let (_, ip) = instance(&env, "noeip");
    assert!(records(&env, &lab).contains(&record("noeip.lab.example.org.", "A", &ip)), "{:?}", records(&env, &lab));

    // Another name for the same server: its records move there.
    let out = create(&env, "noeip", "moved.lab.example.org", &["--no-elastic-ip"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let names: Vec<String> = records(&env, &lab).into_iter().map(|r| r.0).collect();
    assert_eq!(names, ["moved.lab.example.org.", "_image-provision.moved.lab.example.org."], "{names:?}");
}

/// Kill the process right after each AWS call of a create with --domain in
/// turn, then run it again: every time one instance, one Elastic IP, and
/// the A record holding it.
#[test]
fn create_with_a_domain_killed_after_any_call_converges_on_rerun() {
    let env = Ec2Env::start(BIN);
    let lab = make_zone(&env, "lab.example.org.", false);
    let mut n = 1;
    loop {
        let name = format!("kill-{n}");
        let domain = format!("{name}.lab.example.org");
        let mut args = vec!["ec2", "create", &name, "--no-bootstrap", "--domain", &domain];
        args.extend(ACME);
        let out = env.cmd().args(&args).env("IMAGE_PROVISION_TEST_KILL_AFTER_CALLS", n.to_string()).output().unwrap();
        match out.status.code() {
            Some(137) => {}
            Some(0) => break,
            other => panic!("call {n}: exit {other:?}: {}", stderr(&out)),
        }
        assert_eq!(create(&env, &name, &domain, &[]).status.code(), Some(0), "rerun after kill {n}");
        let (_, ip) = instance(&env, &name);
        assert_eq!(addresses_of(&env, &name).len(), 1, "after a kill following call {n}");
        assert!(
            records(&env, &lab).contains(&record(&format!("{domain}."), "A", &ip)),
            "after a kill following call {n}"
        );
        n += 1;
        assert!(n < 60, "create never finished without being killed");
    }
    // The EC2 calls of a create, then DescribeAddresses, AllocateAddress,
    // AssociateAddress, ListHostedZones, two ListResourceRecordSets,
    // ChangeResourceRecordSets and GetChange were each a kill point.
    assert!(n > 18, "only {n} kill points");
}

/// The dry run prints the address and Route 53 calls and makes none; a bad
/// --domain is a usage error that makes nothing.
#[test]
fn dry_run_prints_the_address_and_dns_calls_and_bad_domains_are_refused() {
    let env = Ec2Env::start(BIN);
    let mut args = vec!["ec2", "create", "dry", "--dry-run", "--no-llm", "--domain", "srv.lab.example.org"];
    args.extend(ACME);
    let out = env.run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let call = |prefix: &str| {
        let line = text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in\n{text}"));
        let params: serde_json::Value = serde_json::from_str(&line[prefix.len()..]).unwrap();
        params
    };
    let allocate = call("ec2:AllocateAddress ");
    assert_eq!(allocate["Domain"], "vpc");
    let tags = allocate["TagSpecifications"].to_string();
    assert!(tags.contains("elastic-ip") && tags.contains("image-provision:domain"), "{tags}");
    call("ec2:AssociateAddress ");
    call("route53:ListHostedZones ");
    let change = call("route53:ChangeResourceRecordSets ");
    let changes = change["ChangeBatch"]["Changes"].as_array().unwrap();
    let kinds: Vec<(&str, &str, &str)> = changes
        .iter()
        .map(|c| {
            let r = &c["ResourceRecordSet"];
            (c["Action"].as_str().unwrap(), r["Name"].as_str().unwrap(), r["Type"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        kinds,
        [("UPSERT", "srv.lab.example.org.", "A"), ("UPSERT", "_image-provision.srv.lab.example.org.", "TXT")]
    );
    call("route53:GetChange ");
    assert!(addresses(&env).is_empty());
    assert!(!env.state_dir().exists(), "the dry run wrote local state");

    for bad in ["srv_lab.example.org", "srv..example.org", "203.0.113.7"] {
        let out = create(&env, "bad", bad, &[]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains("--domain"), "{bad}: {}", stderr(&out));
    }
    assert!(addresses(&env).is_empty());
    let out = rt().block_on(env.client().describe_instances().send()).unwrap();
    assert!(out.reservations().is_empty(), "{out:?}");
}

/// `--llm-webui HOST` with --domain: HOST gets its records too, with the
/// same ownership record, tagged on the instance; the dry run names them;
/// the admin's password file is made in the server's state directory; a
/// re-run changes nothing; destroy removes both names' records.
#[test]
fn the_web_uis_name_gets_records_of_its_own_and_they_leave_with_the_server() {
    let env = Ec2Env::start(BIN);
    let lab = make_zone(&env, "lab.example.org.", false);
    let webui = ["--llm", "local", "--llm-webui", "chat.lab.example.org"];
    let mut dry = vec!["ec2", "create", "srv", "--dry-run", "--domain", "srv.lab.example.org"];
    dry.extend(ACME);
    dry.extend(webui);
    let out = env.run(&dry);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("then: the web UI's DNS records, in the public Route 53 zone that holds chat.lab.example.org"),
        "{text}"
    );
    assert!(text.contains("\"UPSERT\"") && text.contains("chat.lab.example.org."), "{text}");
    assert!(!env.server_dir("srv").join("webui-admin-password").exists(), "a dry run made the password");
    let step =
        text.lines().find(|l| l.starts_with("  webui    : ")).unwrap_or_else(|| panic!("no webui step in\n{text}"));
    assert!(
        step.contains("start Open WebUI, check the admin's sign-in on the host, then route chat.lab.example.org"),
        "{step}"
    );

    let out = create(&env, "srv", "srv.lab.example.org", &webui);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (id, ip) = instance(&env, "srv");
    let txt = "\"heritage=image-provision,server=srv,account=123456789012,region=us-east-1\"";
    let mut expected = vec![
        record("srv.lab.example.org.", "A", &ip),
        record("_image-provision.srv.lab.example.org.", "TXT", txt),
        record("chat.lab.example.org.", "A", &ip),
        record("_image-provision.chat.lab.example.org.", "TXT", txt),
    ];
    expected.sort();
    let mut in_lab = records(&env, &lab);
    in_lab.sort();
    assert_eq!(in_lab, expected);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("web UI DNS chat.lab.example.org. A {ip} (Route 53 zone lab.example.org.)")),
        "{text}"
    );
    let password = env.server_dir("srv").join("webui-admin-password");
    assert!(
        text.contains(&format!(
            "web UI     https://chat.lab.example.org/ (admin admin@chat.lab.example.org, password in {})",
            password.display()
        )),
        "{text}"
    );
    let described = rt().block_on(env.client().describe_instances().instance_ids(&id).send()).unwrap();
    let tags = described.reservations()[0].instances()[0].tags().to_vec();
    assert_eq!(tag(&tags, "image-provision:webui-domain"), Some("chat.lab.example.org"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&password).unwrap().permissions().mode() & 0o777, 0o600);
    let kept = std::fs::read(&password).unwrap();

    let mut again = webui.to_vec();
    again.push("--json");
    let out = create(&env, "srv", "srv.lab.example.org", &again);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["webui"]["dns"]["changed"].as_bool(), Some(false), "{v}");
    assert_eq!(v["webui"]["password_file"].as_str(), Some(password.display().to_string().as_str()));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(String::from_utf8_lossy(&kept).trim()));
    assert_eq!(std::fs::read(&password).unwrap(), kept, "the password was replaced");

    let out = env.run(&["ec2", "destroy", "srv", "--yes", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(records(&env, &lab).is_empty(), "{:?}", records(&env, &lab));
}
