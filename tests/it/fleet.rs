//! `fleet create | scale | list | destroy` against moto's EC2, ELB v2, ACM
//! and Route 53, read back with the SDK (not through image-provision's own
//! view); faults from the fault proxy; bad input.

use aws_sdk_ec2::types::{Filter, InstanceStateName};
use aws_sdk_route53::types::RrType;
use image_provision_testsupport::ec2env::*;
use serde_json::json;

use crate::BIN;

const DOMAIN: &str = "www.example.org";

/// A public hosted zone; returns its id.
fn make_zone(env: &Ec2Env, name: &str) -> String {
    let req = env.route53().create_hosted_zone().name(name).caller_reference(name);
    rt().block_on(req.send()).unwrap().hosted_zone().unwrap().id().to_owned()
}

/// The zone's record sets other than SOA and NS: (name, type, values or alias target).
fn records(env: &Ec2Env, zone_id: &str) -> Vec<(String, String, String)> {
    let out = rt().block_on(env.route53().list_resource_record_sets().hosted_zone_id(zone_id).send()).unwrap();
    out.resource_record_sets()
        .iter()
        .filter(|r| !matches!(r.r#type(), RrType::Soa | RrType::Ns))
        .map(|r| {
            let value = match r.alias_target() {
                Some(a) => format!("alias {}", a.dns_name()),
                None => r.resource_records().iter().map(|v| v.value()).collect::<Vec<_>>().join(" "),
            };
            (r.name().to_owned(), r.r#type().as_str().to_owned(), value)
        })
        .collect()
}

/// Live instances tagged with fleet FLEET: (server name, id, zone, group ids).
fn servers(env: &Ec2Env, fleet: &str) -> Vec<(String, String, String, Vec<String>)> {
    let filter = Filter::builder().name("tag:image-provision:fleet").values(fleet).build();
    let out = rt().block_on(env.client().describe_instances().filters(filter).send()).unwrap();
    let mut live: Vec<_> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| {
            !matches!(
                i.state().and_then(|s| s.name()),
                Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown)
            )
        })
        .map(|i| {
            let name = i.tags().iter().find(|t| t.key() == Some("image-provision:name")).and_then(|t| t.value());
            (
                name.unwrap_or_default().to_owned(),
                i.instance_id().unwrap().to_owned(),
                i.placement().and_then(|p| p.availability_zone()).unwrap_or_default().to_owned(),
                i.security_groups().iter().filter_map(|g| g.group_id()).map(str::to_owned).collect(),
            )
        })
        .collect();
    live.sort();
    live
}

fn balancers(env: &Ec2Env) -> Vec<aws_sdk_elasticloadbalancingv2::types::LoadBalancer> {
    rt().block_on(env.elb().describe_load_balancers().send()).unwrap().load_balancers().to_vec()
}

fn target_groups(env: &Ec2Env) -> Vec<aws_sdk_elasticloadbalancingv2::types::TargetGroup> {
    rt().block_on(env.elb().describe_target_groups().send()).unwrap().target_groups().to_vec()
}

fn certificates(env: &Ec2Env) -> Vec<String> {
    let out = rt().block_on(env.acm().list_certificates().send()).unwrap();
    out.certificate_summary_list().iter().filter_map(|c| c.certificate_arn()).map(str::to_owned).collect()
}

/// Security groups tagged with fleet FLEET.
fn fleet_groups(env: &Ec2Env, fleet: &str) -> Vec<String> {
    let filter = Filter::builder().name("tag:image-provision:fleet").values(fleet).build();
    let out = rt().block_on(env.client().describe_security_groups().filters(filter).send()).unwrap();
    out.security_groups().iter().filter_map(|g| g.group_id()).map(str::to_owned).collect()
}

/// Group GROUP's TCP ingress: (port, source) with source a CIDR or a group id.
fn ingress(env: &Ec2Env, group: &str) -> Vec<(i32, String)> {
    let out = rt().block_on(env.client().describe_security_groups().group_ids(group).send()).unwrap();
    let mut rules = Vec::new();
    for p in out.security_groups()[0].ip_permissions() {
        let port = p.from_port().unwrap_or_default();
        rules.extend(p.ip_ranges().iter().filter_map(|r| r.cidr_ip()).map(|c| (port, c.to_owned())));
        rules.extend(p.ipv6_ranges().iter().filter_map(|r| r.cidr_ipv6()).map(|c| (port, c.to_owned())));
        rules.extend(p.user_id_group_pairs().iter().filter_map(|g| g.group_id()).map(|g| (port, g.to_owned())));
    }
    rules.sort();
    rules
}

fn create(env: &Ec2Env, more: &[&str]) -> std::process::Output {
    let mut args = vec!["fleet", "create", "web", "--no-bootstrap"];
    args.extend(more);
    env.run(&args)
}

#[test]
fn fleet_create_scale_list_destroy() {
    let env = Ec2Env::start(BIN);
    let zone = make_zone(&env, "example.org");
    let out = create(&env, &["--count", "2", "--domain", DOMAIN]);
    assert_eq!(out.status.code(), Some(0));

    // The balancer: internet-facing, in two zones at least, behind its own group.
    let lbs = balancers(&env);
    assert_eq!(lbs.len(), 1, "{lbs:?}");
    let lb = &lbs[0];
    assert_eq!(lb.load_balancer_name(), Some("ipf-web"));
    assert_eq!(lb.scheme().map(|s| s.as_str()), Some("internet-facing"));
    assert!(lb.availability_zones().len() >= 2, "{lb:?}");
    let lb_groups = lb.security_groups().to_vec();
    assert_eq!(lb_groups.len(), 1);
    assert_eq!(ingress(&env, &lb_groups[0]), vec![(80, "0.0.0.0/0".into()), (443, "0.0.0.0/0".into())]);

    // One target group: HTTP to port 80, the health check on /health.
    let tgs = target_groups(&env);
    assert_eq!(tgs.len(), 1);
    assert_eq!((tgs[0].protocol().map(|p| p.as_str()), tgs[0].port()), (Some("HTTP"), Some(80)));
    assert_eq!(tgs[0].health_check_path(), Some("/health"));
    let tg_arn = tgs[0].target_group_arn().unwrap().to_owned();

    // The certificate, issued, and the listeners: HTTPS with it, HTTP redirected.
    let certs = certificates(&env);
    assert_eq!(certs.len(), 1);
    let cert = rt().block_on(env.acm().describe_certificate().certificate_arn(&certs[0]).send()).unwrap();
    let cert = cert.certificate().unwrap();
    assert_eq!(cert.domain_name(), Some(DOMAIN));
    assert_eq!(cert.status().map(|s| s.as_str()), Some("ISSUED"));
    let listeners = rt()
        .block_on(env.elb().describe_listeners().load_balancer_arn(lb.load_balancer_arn().unwrap()).send())
        .unwrap();
    let mut seen: Vec<(i32, String, String)> = listeners
        .listeners()
        .iter()
        .map(|l| {
            let action = l.default_actions()[0].r#type().unwrap().as_str().to_owned();
            (l.port().unwrap(), l.protocol().unwrap().as_str().to_owned(), action)
        })
        .collect();
    seen.sort();
    assert_eq!(seen, vec![(80, "HTTP".into(), "redirect".into()), (443, "HTTPS".into(), "forward".into())]);
    let https = listeners.listeners().iter().find(|l| l.port() == Some(443)).unwrap();
    assert_eq!(https.certificates()[0].certificate_arn(), Some(certs[0].as_str()));
    assert_eq!(https.default_actions()[0].target_group_arn(), Some(tg_arn.as_str()));

    // The records: the domain an alias of the balancer, the validation
    // CNAME, each with the fleet's ownership record beside it.
    let recs = records(&env, &zone);
    let lb_dns = lb.dns_name().unwrap().to_ascii_lowercase();
    assert!(
        recs.iter().any(|(n, t, v)| n == "www.example.org." && t == "A" && *v == format!("alias {lb_dns}.")),
        "{recs:?}"
    );
    let validation = cert.domain_validation_options()[0].resource_record().unwrap();
    assert!(recs.iter().any(|(n, t, v)| n == validation.name() && t == "CNAME" && v == validation.value()), "{recs:?}");
    let owners: Vec<_> = recs.iter().filter(|(n, t, _)| t == "TXT" && n.starts_with("_image-provision.")).collect();
    assert_eq!(owners.len(), 2, "{recs:?}");
    assert!(owners.iter().all(|(_, _, v)| v.contains("fleet=web")), "{owners:?}");

    // The servers: NAME-1, NAME-2, in two zones, web traffic from the balancer only.
    let made = servers(&env, "web");
    assert_eq!(made.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(), ["web-1", "web-2"]);
    assert_ne!(made[0].2, made[1].2, "spread over the zones: {made:?}");
    for (_, _, _, groups) in &made {
        let rules = ingress(&env, &groups[0]);
        assert!(rules.contains(&(80, lb_groups[0].clone())), "{rules:?}");
        assert!(rules.iter().all(|(port, _)| *port == 22 || *port == 80), "{rules:?}");
        assert!(!rules.iter().any(|(port, src)| *port == 80 && src.contains('/')), "{rules:?}");
    }
    let summary = stdout(&out);
    assert!(summary.contains("url        https://www.example.org/"), "{summary}");
    assert!(summary.contains("not registered"), "--no-bootstrap says so: {summary}");

    // A re-run converges: nothing new.
    let again = create(&env, &["--count", "2", "--domain", DOMAIN]);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!((balancers(&env).len(), target_groups(&env).len(), certificates(&env).len()), (1, 1, 1));
    assert_eq!(
        servers(&env, "web").iter().map(|s| s.1.clone()).collect::<Vec<_>>(),
        made.iter().map(|s| s.1.clone()).collect::<Vec<_>>()
    );
    assert_eq!(records(&env, &zone), recs);

    // Another domain for the fleet, or `ec2 create` of one of its servers: refused, nothing changed.
    let other = create(&env, &["--count", "2", "--domain", "other.example.org"]);
    assert_eq!(other.status.code(), Some(2));
    assert!(stderr(&other).contains("does not change its domain"), "{}", stderr(&other));
    let single = env.run(&["ec2", "create", "web-1", "--no-bootstrap"]);
    assert_eq!(single.status.code(), Some(1));
    assert!(stderr(&single).contains("serves in fleet web"), "{}", stderr(&single));
    assert_eq!(records(&env, &zone), recs);
    assert_eq!(ingress(&env, &made[0].3[0]), ingress(&env, &made[0].3[0]));

    // list, then scale down: the highest-numbered goes.
    let list = env.run(&["fleet", "list"]);
    assert_eq!(list.status.code(), Some(0));
    let text = stdout(&list);
    assert!(text.contains("web") && text.contains("https://www.example.org/") && text.contains("web-2"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&env.run(&["fleet", "list", "--json"]))).unwrap();
    assert_eq!(json[0]["name"], "web");
    assert_eq!(json[0]["servers"].as_array().unwrap().len(), 2);

    let scaled = env.run(&["fleet", "scale", "web", "--count", "1", "--no-bootstrap", "--domain", DOMAIN]);
    assert_eq!(scaled.status.code(), Some(0));
    assert_eq!(servers(&env, "web").iter().map(|s| s.0.as_str()).collect::<Vec<_>>(), ["web-1"]);
    assert!(stdout(&scaled).contains("removed    web-2"), "{}", stdout(&scaled));

    // Someone's certificate carrying the fleet's tag but not image-provision's
    // managed tag: not ours, so destroy leaves it.
    let tag = aws_sdk_acm::types::Tag::builder().key("image-provision:fleet").value("web").build().unwrap();
    let foreign = rt().block_on(env.acm().request_certificate().domain_name("other.example.org").tags(tag).send());
    let foreign = foreign.unwrap().certificate_arn().unwrap().to_owned();

    // destroy: nothing left, found from tags alone.
    let gone = env.run(&["fleet", "destroy", "web", "--yes"]);
    assert_eq!(gone.status.code(), Some(0));
    assert!(balancers(&env).is_empty());
    assert!(target_groups(&env).is_empty());
    assert_eq!(certificates(&env), vec![foreign], "only the one not ours is left");
    assert!(records(&env, &zone).is_empty(), "{:?}", records(&env, &zone));
    assert!(servers(&env, "web").is_empty());
    assert!(fleet_groups(&env, "web").is_empty());
    let again = env.run(&["fleet", "destroy", "web", "--yes"]);
    assert_eq!(again.status.code(), Some(0));
    assert!(stdout(&again).contains("nothing to remove"), "{}", stdout(&again));
}

#[test]
fn without_a_domain_the_balancer_serves_http_under_its_own_name() {
    let env = Ec2Env::start(BIN);
    let out = env.run(&["fleet", "create", "plain", "--count", "1", "--no-bootstrap", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let lb = &balancers(&env)[0];
    assert_eq!(v["url"], format!("http://{}/", lb.dns_name().unwrap().to_ascii_lowercase()));
    let listeners = rt()
        .block_on(env.elb().describe_listeners().load_balancer_arn(lb.load_balancer_arn().unwrap()).send())
        .unwrap();
    let only: Vec<_> =
        listeners.listeners().iter().map(|l| (l.port().unwrap(), l.protocol().unwrap().as_str().to_owned())).collect();
    assert_eq!(only, vec![(80, "HTTP".to_owned())]);
    assert!(certificates(&env).is_empty());
    assert_eq!(v["servers"][0]["state"], "made");
    assert_eq!(env.run(&["fleet", "destroy", "plain", "--yes"]).status.code(), Some(0));
    assert!(balancers(&env).is_empty() && target_groups(&env).is_empty());
}

#[test]
fn a_killed_fleet_create_run_again_converges_to_n_servers_and_one_balancer() {
    let env = Ec2Env::start(BIN);
    make_zone(&env, "example.org");
    // Cut off at several points: within the front, and within a server.
    for calls in [6, 14, 30] {
        let out = create_killed(&env, calls);
        assert_eq!(out.status.code(), Some(137), "killed after {calls} calls");
    }
    let out = create(&env, &["--count", "2", "--domain", DOMAIN]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!((balancers(&env).len(), target_groups(&env).len(), certificates(&env).len()), (1, 1, 1));
    assert_eq!(servers(&env, "web").iter().map(|s| s.0.as_str()).collect::<Vec<_>>(), ["web-1", "web-2"]);
    assert_eq!(fleet_groups(&env, "web").len(), 1, "one balancer group");

    // A destroy cut short again and again, each run going further (the
    // next cut 6 calls later into what is left), until one finishes: what
    // is left each time is found from tags (the alias from the
    // certificate's domain once the balancer is gone).
    let mut cuts = 0;
    for calls in (6..).step_by(6).take(40) {
        let out = env
            .cmd()
            .args(["fleet", "destroy", "web", "--yes"])
            .env("IMAGE_PROVISION_TEST_KILL_AFTER_CALLS", calls.to_string())
            .output()
            .unwrap();
        match out.status.code() {
            Some(137) => cuts += 1,
            Some(0) => break,
            other => panic!("destroy cut after {calls} calls: {other:?} {}", String::from_utf8_lossy(&out.stderr)),
        }
    }
    assert!(cuts >= 3, "cut {cuts} times");
    assert_eq!(env.run(&["fleet", "destroy", "web", "--yes"]).status.code(), Some(0));
    assert!(balancers(&env).is_empty() && target_groups(&env).is_empty() && certificates(&env).is_empty());
    assert!(servers(&env, "web").is_empty() && fleet_groups(&env, "web").is_empty());
    let zone = rt().block_on(env.route53().list_hosted_zones().send()).unwrap().hosted_zones()[0].id().to_owned();
    assert!(records(&env, &zone).is_empty(), "{:?}", records(&env, &zone));
}

fn create_killed(env: &Ec2Env, calls: usize) -> std::process::Output {
    let out = env
        .cmd()
        .args(["fleet", "create", "web", "--no-bootstrap", "--count", "2", "--domain", DOMAIN])
        .env("IMAGE_PROVISION_TEST_KILL_AFTER_CALLS", calls.to_string())
        .output()
        .unwrap();
    eprintln!("killed after {calls}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn a_zone_out_of_capacity_and_a_throttled_call_are_taken_in_stride() {
    let rules = json!([
        fault("RunInstances", "InsufficientInstanceCapacity", Some(1)),
        fault("CreateLoadBalancer", "Throttling", Some(1)),
    ]);
    let env = Ec2Env::start_with_faults(BIN, Some(rules));
    let out = create(&env, &["--count", "2"]);
    assert_eq!(out.status.code(), Some(0));
    let calls = env.proxy_calls();
    let hit = |code: &str| calls.iter().filter(|(_, i)| i.as_deref() == Some(code)).count();
    assert_eq!((hit("InsufficientInstanceCapacity"), hit("Throttling")), (1, 1), "both faults were hit");
    assert!(stderr(&out).contains("no capacity in"), "{}", stderr(&out));
    assert_eq!(balancers(&env).len(), 1, "the throttled call was retried, once made");
    assert_eq!(servers(&env, "web").len(), 2);
}

#[test]
fn one_failing_server_does_not_stop_the_others_and_the_summary_says_why() {
    // No capacity anywhere for web-2 (its instance's first tag, Name, is
    // web-2): it fails in every zone; web-1 is made.
    let rule = json!([{
        "action": "RunInstances", "when": {"TagSpecification.1.Tag.1.Value": "web-2"},
        "code": "InsufficientInstanceCapacity", "message": "none here"
    }]);
    let env = Ec2Env::start_with_faults(BIN, Some(rule));
    let out = create(&env, &["--count", "2"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let web2 = text.lines().find(|l| l.starts_with("web-2")).unwrap_or_default();
    assert!(web2.contains("failed") && web2.contains("no capacity for g5.xlarge"), "{text}");
    let web1 = text.lines().find(|l| l.starts_with("web-1")).unwrap_or_default();
    assert!(web1.contains("made"), "{text}");
    assert!(stderr(&out).contains("1 of 2 servers of fleet web failed: web-2"), "{}", stderr(&out));
    assert_eq!(servers(&env, "web").iter().map(|s| s.0.as_str()).collect::<Vec<_>>(), ["web-1"]);
}

#[test]
fn bad_fleet_input_is_refused_before_anything_is_made() {
    let env = Ec2Env::start(BIN);
    let long = "a".repeat(29);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["fleet", "create", &long, "--count", "2"], "at most 28 characters"),
        (vec!["fleet", "create", "Web", "--count", "2"], "is not a DNS label"),
        (vec!["fleet", "create", "web", "--count", "0"], "--count 0 is not between 1 and 20"),
        (vec!["fleet", "create", "web", "--count", "21"], "--count 21 is not between 1 and 20"),
        (vec!["fleet", "create", "web", "--count", "2", "--parallel", "0"], "--parallel 0"),
        (
            vec!["fleet", "create", "web", "--count", "2", "--domain", DOMAIN, "--acme-email", "a@example.org"],
            "--acme-email does not apply",
        ),
        (vec!["fleet", "create", "web", "--count", "2", "--subnet", "subnet-1"], "--subnet does not apply"),
        (vec!["fleet", "create", "web", "--count", "2", "--dry-run"], "--dry-run does not apply"),
        (vec!["fleet", "create", "web", "--count", "2", "--domain", "bad domain"], "--domain"),
        (vec!["fleet", "create", "web", "--count", "2", "--drain", "-5s"], "--drain"),
        (vec!["fleet", "scale", "web", "--count", "1", "--no-llm"], "no fleet named web"),
        (vec!["fleet", "destroy", "Web", "--yes"], "not a fleet's name"),
        (vec!["fleet", "destroy", "web"], "pass --yes"),
    ];
    for (args, says) in cases {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    let webui = env.run(&[
        "fleet",
        "create",
        "web",
        "--count",
        "2",
        "--llm",
        "local",
        "--domain",
        DOMAIN,
        "--llm-webui",
        "chat.example.org",
    ]);
    assert_eq!(webui.status.code(), Some(2));
    assert!(stderr(&webui).contains("--llm-webui does not apply"), "{}", stderr(&webui));
    assert!(balancers(&env).is_empty() && target_groups(&env).is_empty() && certificates(&env).is_empty());
    assert!(servers(&env, "web").is_empty());
}

/// A server behind the balancer, on a booted test host (real systemd,
/// Docker, compose v2 and Traefik; the stand-in stack): the host steps set it
/// up to serve HTTP on port 80 alone (the balancer ends TLS: no ACME, no
/// 443), prove the stack with the preprocess request over that route, and
/// only then is it registered at the balancer.
#[test]
fn a_server_behind_the_balancer_serves_http_on_80_and_is_registered_once_proven() {
    use image_provision_testsupport::cli;
    use image_provision_testsupport::testhost::{Distro, TestHost};

    let env = Ec2Env::start(BIN);
    make_zone(&env, "example.org");
    let host = TestHost::boot(Distro::Ubuntu2204Standin);
    host.enable_pinned_bootstrap_standins();
    host.enable_image_server_standins();
    host.enable_registry();
    crate::ec2_bootstrap::host_key_installed(&env, &host, "web-1");

    let mut cmd = env.cmd();
    cmd.args(["fleet", "create", "web", "--count", "1", "--domain", DOMAIN, "--no-llm", "--ssh-key"])
        .arg(&host.client_key)
        .args(["--imageup-timeout", "3m", "--repo-url", "https://github.com/Shared-Reality-Lab/IMAGE-server.git"]);
    // Behind the balancer the check needs no ACME server: it runs for real.
    cli::with_standins(&mut cmd, &host)
        .env("IMAGE_PROVISION_TEST_SSH_ADDR", host.addr())
        .env_remove("IMAGE_PROVISION_TEST_NO_HTTPS_HEALTH");
    let out = cli::run(&mut cmd, "fleet create web");
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let row = text.lines().find(|l| l.starts_with("web-1")).unwrap_or_default();
    assert!(row.contains("healthy"), "{text}");
    let err = stderr(&out);
    assert!(
        err.contains("web-1: ") && err.contains("POST /render/preprocess answered in "),
        "the stack was proven: {err}"
    );
    assert!(err.contains(&format!("http://{DOMAIN}/health")), "the health check went over HTTP: {err}");

    // Traefik publishes 80 alone: no redirect, no ACME, the VPC's forwarded headers believed.
    let compose = host.sh_ok("cat /var/docker/traefik/docker-compose.yml");
    assert!(compose.contains("\"80:80\"") && !compose.contains("443"), "{compose}");
    assert!(!compose.contains("acme") && !compose.contains("redirections"), "{compose}");
    assert!(compose.contains("forwardedHeaders.trustedIPs"), "{compose}");
    // The site on port 80 by its name; /health also by any Host (the balancer's check sends its IP).
    let by_name = host.sh_ok(&format!("curl -fsS -H 'Host: {DOMAIN}' http://127.0.0.1/health"));
    assert!(!by_name.is_empty());
    let by_ip =
        host.sh(&format!("curl -fsS -o /dev/null -w '%{{http_code}}' -H 'Host: 10.0.3.7' http://{}/health", host.ip));
    assert_eq!(String::from_utf8_lossy(&by_ip.stdout), "200", "{by_ip:?}");
    assert!(!host.sh("curl -sk --max-time 5 https://127.0.0.1/").status.success(), "nothing on 443");

    // Registered once proven: the balancer's target group holds it.
    let tg = target_groups(&env)[0].target_group_arn().unwrap().to_owned();
    let health = rt().block_on(env.elb().describe_target_health().target_group_arn(&tg).send()).unwrap();
    let registered: Vec<_> = health.target_health_descriptions().iter().filter_map(|d| d.target()?.id()).collect();
    let web1 = servers(&env, "web");
    assert_eq!(registered, vec![web1[0].1.as_str()]);

    // verify NAME reads the mode from the server and checks over HTTP.
    let mut v = env.cmd();
    v.args(["verify", "web-1", "--json", "--identity"]).arg(&host.client_key);
    cli::with_standins(&mut v, &host)
        .env("IMAGE_PROVISION_TEST_SSH_ADDR", host.addr())
        .env_remove("IMAGE_PROVISION_TEST_NO_HTTPS_HEALTH");
    let verify = cli::run(&mut v, "verify web-1");
    assert_eq!(verify.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(report["healthy"], true);
    let check = report["checks"].as_array().unwrap().iter().find(|c| c["name"] == "http").cloned().unwrap_or_default();
    assert_eq!(check["status"], "ok", "{check}");
    assert!(check["detail"].as_str().unwrap_or_default().contains(&format!("http://{DOMAIN}/health")), "{check}");
}
