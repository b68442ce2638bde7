//! A fleet: servers NAME-1..NAME-N behind one internet-facing Application
//! Load Balancer, with an ACM certificate for the fleet's domain validated
//! through Route 53, and the domain an alias of the balancer. The servers
//! themselves are made by [`crate::create`] (tagged with the fleet) and
//! removed by [`crate::destroy`]; this module makes, finds and removes the
//! front: the balancer's security group, target group, balancer, listeners,
//! certificate and records. Everything is found again from tags alone.

mod api;
mod sdk;

use std::time::{Duration, Instant};

use serde::Serialize;

pub use api::*;

use crate::api::*;
use crate::dns::{self, DnsOutcome, Owner};
use crate::poll::poll_until;
use crate::{Error, Result, tags};

/// ELB names hold 32 characters: `ipf-` and the fleet's name.
pub const MAX_FLEET_NAME: usize = 28;
/// The most servers one fleet command makes.
pub const MAX_SERVERS: u32 = 20;

/// The health check the balancer runs on each server: the orchestrator's
/// /health through the server's Traefik, every 10 s, two answers in a row.
/// (The preprocess request the host steps send has proven the stack on the
/// server before it is registered; verify sends it again.)
pub fn health_check() -> HealthCheck {
    HealthCheck {
        path: "/health".into(),
        interval_secs: 10,
        timeout_secs: 5,
        healthy_threshold: 2,
        unhealthy_threshold: 3,
    }
}

/// ELB's TLS policy for the HTTPS listener: TLS 1.3 and 1.2 only, AWS's
/// recommended policy.
pub const TLS_POLICY: &str = "ELBSecurityPolicy-TLS13-1-2-2021-06";

const BALANCER_ACTIVE_TIMEOUT: Duration = Duration::from_secs(600);
/// ACM usually validates within minutes of the record appearing; AWS
/// allows it up to 72 hours before the request fails, which is not a wait.
const CERTIFICATE_TIMEOUT: Duration = Duration::from_secs(1800);
/// ACM writes the validation record's name and value a few seconds after the request.
const VALIDATION_RECORD_TIMEOUT: Duration = Duration::from_secs(120);
const BALANCER_GONE_TIMEOUT: Duration = Duration::from_secs(300);
/// A balancer's network interfaces, and its hold on the certificate, go a
/// while after it does.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(300);

/// Whether `name` may name a fleet: a server name (a DNS label) short
/// enough for ELB's names, so that NAME-N names its servers.
pub fn is_fleet_name(name: &str) -> bool {
    tags::is_server_name(name) && name.len() <= MAX_FLEET_NAME
}

/// Server `index` (from 1) of fleet `fleet`.
pub fn server_name(fleet: &str, index: u32) -> String {
    format!("{fleet}-{index}")
}

/// The index of `server` in fleet `fleet` (NAME-N), if it is one of its names.
pub fn member_index(fleet: &str, server: &str) -> Option<u32> {
    let n = server.strip_prefix(fleet)?.strip_prefix('-')?;
    if n.starts_with('0') {
        return None;
    }
    n.parse().ok().filter(|i| (1..=MAX_SERVERS * 10).contains(i))
}

/// The balancer's and the target group's name.
pub fn balancer_name(fleet: &str) -> String {
    format!("ipf-{fleet}")
}

/// The balancer's security group's name.
pub fn group_name(fleet: &str) -> String {
    format!("image-provision-fleet-{fleet}")
}

/// The tags of a fleet's own resources: no server-name tag (see [`tags::FLEET`]).
pub fn fleet_tags(fleet: &str, domain: Option<&str>) -> Vec<Tag> {
    let mut t =
        vec![Tag::new(tags::NAME, balancer_name(fleet)), Tag::new(tags::MANAGED, "true"), Tag::new(tags::FLEET, fleet)];
    t.extend(domain.map(|d| Tag::new(tags::DOMAIN, d)));
    t
}

fn is_ours(tags: &[Tag], fleet: &str) -> bool {
    tags::value_of(tags, tags::MANAGED).as_deref() == Some("true")
        && tags::value_of(tags, tags::FLEET).as_deref() == Some(fleet)
}

/// RequestCertificate's idempotency token (at most 32 word characters):
/// the fleet and the domain, hashed.
fn certificate_token(fleet: &str, domain: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{fleet}/{domain}"));
    let hex: String = digest.iter().take(14).map(|b| format!("{b:02x}")).collect();
    format!("ipf{hex}")
}

/// What the fleet is asked to be.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub name: String,
    /// The public host name: the certificate's, and an alias of the
    /// balancer. None: the balancer's own DNS name, over HTTP.
    pub domain: Option<String>,
    /// How long a server being removed keeps its requests in flight.
    pub deregistration_delay: Duration,
}

/// The fleet's front, as made or found.
#[derive(Debug, Clone, Serialize)]
pub struct Front {
    pub balancer: LoadBalancer,
    pub target_group: TargetGroup,
    pub security_group_id: String,
    pub vpc_id: String,
    /// One subnet per zone, in zone order: the servers are spread over them.
    pub subnets: Vec<Subnet>,
    pub certificate: Option<Certificate>,
    pub listeners: Vec<Listener>,
    /// The name the servers serve: the domain, or the balancer's DNS name.
    pub host: String,
    /// The domain's alias record.
    pub dns: Option<DnsOutcome>,
}

impl Front {
    /// The URL a person opens.
    pub fn url(&self) -> String {
        match &self.certificate {
            Some(_) => format!("https://{}/", self.host),
            None => format!("http://{}/", self.host),
        }
    }
}

/// [`poll_until`], its time-out said as what it waited for.
async fn wait_until<T, F, Fut>(what: &str, limit: Duration, look: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<std::result::Result<T, String>>>,
{
    poll_until(limit, look, |waited_secs, last| Error::FleetTimeout { what: what.to_owned(), waited_secs, last }).await
}

/// The fleet's balancer group: HTTP and HTTPS from anywhere (IPv4: the
/// balancer has IPv4 addresses only).
async fn ensure_group<A: Ec2Api>(
    api: &A,
    spec: &FleetSpec,
    vpc_id: &str,
    log: &mut impl FnMut(String),
) -> Result<String> {
    let name = group_name(&spec.name);
    let group = match api.security_group(vpc_id, &name).await? {
        Some(g) if api.security_groups_tagged(tags::FLEET, &spec.name).await?.iter().any(|o| o.id == g.id) => g,
        Some(g) => return Err(Error::NotOurs { what: format!("security group {name} ({})", g.id) }),
        None => {
            let description = format!("IMAGE fleet {}: its load balancer, HTTP and HTTPS", spec.name);
            let id = api.create_security_group(vpc_id, &name, &description, &fleet_tags(&spec.name, None)).await?;
            log(format!("created security group {name} ({id}) for the balancer"));
            SecurityGroup { id, name, vpc_id: vpc_id.to_owned(), ingress: Vec::new() }
        }
    };
    let wanted: Vec<IngressRule> = [80, 443].map(|port| IngressRule { port, cidr: "0.0.0.0/0".into() }).to_vec();
    let missing: Vec<IngressRule> = wanted.into_iter().filter(|r| !group.ingress.contains(r)).collect();
    if !missing.is_empty() {
        api.authorize_ingress(&group.id, &missing).await?;
        log(format!("opened 80 and 443 to the world on {}", group.id));
    }
    Ok(group.id)
}

async fn ensure_target_group<A: BalancerApi>(
    api: &A,
    spec: &FleetSpec,
    vpc_id: &str,
    log: &mut impl FnMut(String),
) -> Result<TargetGroup> {
    if let Some(g) =
        api.target_groups_tagged(tags::FLEET, &spec.name).await?.into_iter().find(|g| is_ours(&g.tags, &spec.name))
    {
        return Ok(g);
    }
    let name = balancer_name(&spec.name);
    let delay = spec.deregistration_delay.as_secs() as u32;
    let group = api.create_target_group(&name, vpc_id, &health_check(), delay, &fleet_tags(&spec.name, None)).await?;
    log(format!("created target group {name}: HTTP to port 80, health check GET /health, {delay} s drain"));
    Ok(group)
}

async fn ensure_balancer<A: BalancerApi>(
    api: &A,
    spec: &FleetSpec,
    subnets: &[Subnet],
    group_id: &str,
    log: &mut impl FnMut(String),
) -> Result<LoadBalancer> {
    let found =
        api.load_balancers_tagged(tags::FLEET, &spec.name).await?.into_iter().find(|b| is_ours(&b.tags, &spec.name));
    let balancer = match found {
        Some(b) => b,
        None => {
            let ids: Vec<String> = subnets.iter().map(|s| s.id.clone()).collect();
            let name = balancer_name(&spec.name);
            let tags = fleet_tags(&spec.name, spec.domain.as_deref());
            let b = api.create_load_balancer(&name, &ids, group_id, &tags).await?;
            let zones: Vec<&str> = subnets.iter().map(|s| s.availability_zone.as_str()).collect();
            log(format!("created load balancer {name} in {} ({})", zones.join(", "), b.dns_name));
            b
        }
    };
    if balancer.state == "active" {
        return Ok(balancer);
    }
    let arn = balancer.arn.clone();
    let state = wait_until("the load balancer to be active", BALANCER_ACTIVE_TIMEOUT, || async {
        Ok(match api.load_balancer(&arn).await? {
            Some(b) if b.state == "active" => Ok(b.state),
            Some(b) if b.state == "failed" => return Err(Error::FleetBalancerFailed(arn.clone())),
            Some(b) => Err(b.state),
            None => return Err(Error::FleetBalancerFailed(arn.clone())),
        })
    })
    .await?;
    log(format!("load balancer {} is {state}", balancer.name));
    Ok(LoadBalancer { state, ..balancer })
}

/// The certificate for DOMAIN: found by tags, or requested; its
/// validation record written in Route 53 (as the fleet's), and waited for
/// until ACM has issued it.
async fn ensure_certificate<A: Ec2Api + Route53Api + BalancerApi>(
    api: &A,
    spec: &FleetSpec,
    domain: &str,
    log: &mut impl FnMut(String),
) -> Result<Certificate> {
    let usable = |c: &Certificate| {
        is_ours(&c.tags, &spec.name)
            && dns::fqdn(&c.domain) == dns::fqdn(domain)
            && matches!(c.status.as_str(), "ISSUED" | "PENDING_VALIDATION")
    };
    let arn = match api.certificates_tagged(tags::FLEET, &spec.name).await?.into_iter().find(usable) {
        Some(c) if c.status == "ISSUED" => return Ok(c),
        Some(c) => c.arn,
        None => {
            let arn = api
                .request_certificate(
                    domain,
                    &certificate_token(&spec.name, domain),
                    &fleet_tags(&spec.name, Some(domain)),
                )
                .await?;
            log(format!("requested an ACM certificate for {domain} ({arn}), validated through DNS"));
            arn
        }
    };
    let (name, value) =
        wait_until("ACM to give the certificate's validation record", VALIDATION_RECORD_TIMEOUT, || async {
            Ok(match api.certificate(&arn).await? {
                Some(Certificate { validation_record: Some(r), .. }) => Ok(r),
                Some(c) => Err(c.status),
                None => Err("not found".to_owned()),
            })
        })
        .await?;
    let record = RecordSet {
        name: dns::fqdn(&name),
        kind: "CNAME".into(),
        ttl: Some(dns::RECORD_TTL),
        values: vec![value.clone()],
        alias: None,
    };
    let outcome = dns::publish_records(api, Owner::Fleet(&spec.name), &name, vec![record], &mut *log).await?;
    if !matches!(outcome, DnsOutcome::Published { .. }) {
        log(format!(
            "ACM waits for the CNAME {name} -> {value}: make it where {domain}'s DNS is served; waiting up to {} min",
            CERTIFICATE_TIMEOUT.as_secs() / 60
        ));
    }
    let started = Instant::now();
    let cert = wait_until(&format!("ACM to issue the certificate for {domain}"), CERTIFICATE_TIMEOUT, || async {
        Ok(match api.certificate(&arn).await? {
            Some(c) if c.status == "ISSUED" => Ok(c),
            Some(c) if c.status == "PENDING_VALIDATION" => Err(c.status),
            Some(c) => return Err(Error::FleetCertificate { domain: domain.to_owned(), status: c.status }),
            None => Err("not found".to_owned()),
        })
    })
    .await?;
    log(format!("ACM issued the certificate for {domain} after {:.0} s", started.elapsed().as_secs_f64()));
    Ok(cert)
}

/// The listeners the fleet wants: with a certificate, HTTPS to the servers
/// and HTTP redirected to HTTPS; without, HTTP to the servers.
fn wanted_listeners(target_group_arn: &str, certificate_arn: Option<&str>) -> Vec<ListenerSpec> {
    let forward = ListenerAction::Forward { target_group_arn: target_group_arn.to_owned() };
    match certificate_arn {
        Some(cert) => vec![
            ListenerSpec {
                port: 443,
                protocol: "HTTPS".into(),
                certificate_arn: Some(cert.to_owned()),
                ssl_policy: Some(TLS_POLICY.into()),
                action: forward,
            },
            ListenerSpec {
                port: 80,
                protocol: "HTTP".into(),
                certificate_arn: None,
                ssl_policy: None,
                action: ListenerAction::RedirectToHttps,
            },
        ],
        None => vec![ListenerSpec {
            port: 80,
            protocol: "HTTP".into(),
            certificate_arn: None,
            ssl_policy: None,
            action: forward,
        }],
    }
}

async fn ensure_listeners<A: BalancerApi>(
    api: &A,
    balancer: &LoadBalancer,
    wanted: &[ListenerSpec],
    log: &mut impl FnMut(String),
) -> Result<Vec<Listener>> {
    let mut have = api.listeners(&balancer.arn).await?;
    for w in wanted {
        let same = |l: &Listener| {
            l.port == w.port
                && l.protocol == w.protocol
                && l.certificate_arn == w.certificate_arn
                && l.action.as_ref() == Some(&w.action)
        };
        if have.iter().any(same) {
            continue;
        }
        // A listener on the port that does something else: this fleet's
        // own (its balancer is ours), replaced.
        if let Some(pos) = have.iter().position(|l| l.port == w.port) {
            let old = have.remove(pos);
            api.delete_listener(&old.arn).await?;
            log(format!(
                "removed the {} listener on port {} (it did not do what this run asks)",
                old.protocol, old.port
            ));
        }
        let made = api.create_listener(&balancer.arn, w).await?;
        let what = match &w.action {
            ListenerAction::Forward { .. } => "to the servers",
            ListenerAction::RedirectToHttps => "redirected to HTTPS",
        };
        log(format!("listener {} on port {} {what}", w.protocol, w.port));
        have.push(made);
    }
    Ok(have)
}

/// Make or find the fleet's front, converged to `spec`. The balancer is in
/// every zone of the default VPC (two at least).
pub async fn ensure_front<A: Ec2Api + Route53Api + BalancerApi>(
    api: &A,
    spec: &FleetSpec,
    mut log: impl FnMut(String),
) -> Result<Front> {
    let vpc_id = api.default_vpc().await?.ok_or(Error::NoDefaultVpc)?;
    let subnets = crate::create::zone_order(api.subnets(&vpc_id).await?, None);
    if subnets.len() < 2 {
        let zones = subnets.iter().map(|s| s.availability_zone.clone()).collect();
        return Err(Error::FleetZones { vpc_id, zones });
    }
    let security_group_id = ensure_group(api, spec, &vpc_id, &mut log).await?;
    let target_group = ensure_target_group(api, spec, &vpc_id, &mut log).await?;
    let balancer = ensure_balancer(api, spec, &subnets, &security_group_id, &mut log).await?;
    let certificate = match &spec.domain {
        Some(domain) => Some(ensure_certificate(api, spec, domain, &mut log).await?),
        None => None,
    };
    let wanted = wanted_listeners(&target_group.arn, certificate.as_ref().map(|c| c.arn.as_str()));
    let listeners = ensure_listeners(api, &balancer, &wanted, &mut log).await?;
    let dns = match &spec.domain {
        Some(domain) => {
            let alias = RecordSet {
                name: dns::fqdn(domain),
                kind: "A".into(),
                ttl: None,
                values: Vec::new(),
                alias: Some(AliasTarget {
                    zone_id: balancer.canonical_zone_id.clone(),
                    dns_name: dns::fqdn(&balancer.dns_name),
                }),
            };
            Some(dns::publish_records(api, Owner::Fleet(&spec.name), domain, vec![alias], &mut log).await?)
        }
        None => None,
    };
    let host = spec.domain.clone().unwrap_or_else(|| balancer.dns_name.to_ascii_lowercase());
    Ok(Front { balancer, target_group, security_group_id, vpc_id, subnets, certificate, listeners, host, dns })
}

/// Register the instance and wait until the balancer finds it healthy.
pub async fn register<A: BalancerApi>(
    api: &A,
    target_group_arn: &str,
    instance_id: &str,
    limit: Duration,
) -> Result<Duration> {
    let started = Instant::now();
    api.register_target(target_group_arn, instance_id).await?;
    wait_until(&format!("the balancer to find {instance_id} healthy"), limit, || async {
        let health = api.target_health(target_group_arn).await?;
        Ok(match health.iter().find(|h| h.instance_id == instance_id) {
            Some(h) if h.state == "healthy" => Ok(()),
            Some(h) => {
                Err(format!("{}{}", h.state, h.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()))
            }
            None => Err("not registered".to_owned()),
        })
    })
    .await?;
    Ok(started.elapsed())
}

/// Deregister the instance and wait while the balancer drains it (its
/// requests in flight finish, up to the deregistration delay).
pub async fn drain<A: BalancerApi>(
    api: &A,
    target_group_arn: &str,
    instance_id: &str,
    delay: Duration,
) -> Result<Duration> {
    let started = Instant::now();
    let registered = api.target_health(target_group_arn).await?.iter().any(|h| h.instance_id == instance_id);
    if !registered {
        return Ok(Duration::ZERO);
    }
    api.deregister_target(target_group_arn, instance_id).await?;
    wait_until(&format!("the balancer to drain {instance_id}"), delay + Duration::from_secs(60), || async {
        let health = api.target_health(target_group_arn).await?;
        Ok(match health.iter().find(|h| h.instance_id == instance_id) {
            None => Ok(()),
            Some(h) if h.state == "unused" => Ok(()),
            Some(h) => Err(h.state.clone()),
        })
    })
    .await?;
    Ok(started.elapsed())
}

/// A fleet as its tags show it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FleetView {
    pub name: String,
    pub balancer: Option<LoadBalancer>,
    pub target_group: Option<TargetGroup>,
    pub certificates: Vec<Certificate>,
    pub security_groups: Vec<String>,
    /// Its servers (live instances tagged with the fleet), in name order.
    pub servers: Vec<Instance>,
    /// Each registered server's health, as the balancer sees it.
    pub health: Vec<TargetHealth>,
}

impl FleetView {
    /// The domain its balancer was made for; with the balancer gone (a
    /// destroy cut short), its certificate's, so that the alias record made
    /// for the fleet is still found from tags.
    pub fn domain(&self) -> Option<String> {
        match &self.balancer {
            Some(b) => tags::value_of(&b.tags, tags::DOMAIN),
            None => self.certificates.first().map(|c| c.domain.clone()),
        }
    }
    pub fn found_anything(&self) -> bool {
        self.balancer.is_some()
            || self.target_group.is_some()
            || !self.certificates.is_empty()
            || !self.security_groups.is_empty()
            || !self.servers.is_empty()
    }
}

/// Fleet NAME's servers: live instances tagged with it whose server name
/// is one of NAME-N.
pub async fn servers<A: Ec2Api>(api: &A, fleet: &str) -> Result<Vec<Instance>> {
    let mut servers: Vec<Instance> = api
        .find_instances(None)
        .await?
        .into_iter()
        .filter(|i| i.is_live() && i.fleet.as_deref() == Some(fleet) && member_index(fleet, &i.name).is_some())
        .collect();
    servers.sort_by_key(|i| member_index(fleet, &i.name));
    Ok(servers)
}

/// Everything of fleet NAME, found by its tags.
pub async fn find<A: Ec2Api + BalancerApi>(api: &A, fleet: &str) -> Result<FleetView> {
    let balancer = api.load_balancers_tagged(tags::FLEET, fleet).await?.into_iter().find(|b| is_ours(&b.tags, fleet));
    let target_group =
        api.target_groups_tagged(tags::FLEET, fleet).await?.into_iter().find(|g| is_ours(&g.tags, fleet));
    let health = match &target_group {
        Some(g) => api.target_health(&g.arn).await?,
        None => Vec::new(),
    };
    Ok(FleetView {
        name: fleet.to_owned(),
        balancer,
        target_group,
        // Managed and the fleet's, as the balancer and the target group.
        certificates: api
            .certificates_tagged(tags::FLEET, fleet)
            .await?
            .into_iter()
            .filter(|c| is_ours(&c.tags, fleet))
            .collect(),
        security_groups: api.security_groups_tagged(tags::FLEET, fleet).await?.into_iter().map(|g| g.id).collect(),
        servers: servers(api, fleet).await?,
        health,
    })
}

/// The names of every fleet: from the servers' and the balancers' tags
/// (valid names only: a tag is anyone's to write).
pub async fn names<A: Ec2Api + BalancerApi>(api: &A) -> Result<Vec<String>> {
    let mut names: Vec<String> = api.find_instances(None).await?.into_iter().filter_map(|i| i.fleet).collect();
    names.extend(
        api.load_balancers_tagged(tags::MANAGED, "true")
            .await?
            .iter()
            .filter_map(|b| tags::value_of(&b.tags, tags::FLEET)),
    );
    names.retain(|n| is_fleet_name(n));
    names.sort();
    names.dedup();
    Ok(names)
}

/// What [`destroy_front`] removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FrontRemoval {
    pub balancer: Option<String>,
    pub target_group: Option<String>,
    pub certificates: Vec<String>,
    pub security_groups: Vec<String>,
    pub dns_records: Vec<String>,
    pub dns_left_alone: Vec<String>,
}

/// Remove the fleet's front (its servers are removed first, by the caller):
/// the balancer (its listeners with it), the target group, the alias and
/// validation records made for the fleet, the certificates, the group.
pub async fn destroy_front<A: Ec2Api + Route53Api + BalancerApi>(
    api: &A,
    view: &FleetView,
    mut log: impl FnMut(String),
) -> Result<FrontRemoval> {
    let fleet = view.name.as_str();
    let mut removal = FrontRemoval::default();
    if let Some(domain) = view.domain() {
        let r = dns::remove_owned(api, Owner::Fleet(fleet), &domain, &mut log).await?;
        removal.dns_records.extend(r.deleted);
        removal.dns_left_alone.extend(r.left_alone);
    }
    if let Some(b) = &view.balancer {
        api.delete_load_balancer(&b.arn).await?;
        let arn = b.arn.clone();
        wait_until("the load balancer to be gone", BALANCER_GONE_TIMEOUT, || async {
            Ok(match api.load_balancer(&arn).await? {
                None => Ok(()),
                Some(b) => Err(b.state),
            })
        })
        .await?;
        log(format!("deleted load balancer {} and its listeners", b.name));
        removal.balancer = Some(b.name.clone());
    }
    if let Some(g) = &view.target_group {
        api.delete_target_group(&g.arn).await?;
        log(format!("deleted target group {}", g.name));
        removal.target_group = Some(g.name.clone());
    }
    for cert in &view.certificates {
        if let Some((name, _)) = &cert.validation_record {
            let r = dns::remove_owned(api, Owner::Fleet(fleet), name, &mut log).await?;
            removal.dns_records.extend(r.deleted);
            removal.dns_left_alone.extend(r.left_alone);
        }
        let arn = cert.arn.clone();
        // The balancer's hold on it goes a little after the balancer.
        wait_until(&format!("ACM to release the certificate {arn}"), RELEASE_TIMEOUT, || async {
            Ok(match api.delete_certificate(&arn).await {
                Ok(()) => Ok(()),
                Err(Error::Aws(e)) if e.is("ResourceInUseException") => Err(e.message),
                Err(e) => return Err(e),
            })
        })
        .await?;
        log(format!("deleted the certificate for {} ({})", cert.domain, cert.arn));
        removal.certificates.push(cert.arn.clone());
    }
    for id in &view.security_groups {
        wait_until(&format!("the balancer's network interfaces to leave {id}"), RELEASE_TIMEOUT, || async {
            Ok(match api.delete_security_group(id).await {
                Ok(()) => Ok(()),
                Err(Error::Aws(e)) if e.is("DependencyViolation") => Err(e.message),
                Err(e) => return Err(e),
            })
        })
        .await?;
        log(format!("deleted security group {id}"));
        removal.security_groups.push(id.clone());
    }
    Ok(removal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_names_fit_elb_and_name_their_servers() {
        assert!(is_fleet_name("web"));
        assert!(is_fleet_name(&"a".repeat(MAX_FLEET_NAME)));
        assert!(!is_fleet_name(&"a".repeat(MAX_FLEET_NAME + 1)));
        assert!(!is_fleet_name("Web") && !is_fleet_name("-web") && !is_fleet_name(""));
        assert!(balancer_name(&"a".repeat(MAX_FLEET_NAME)).len() <= 32);
        assert_eq!(server_name("web", 3), "web-3");
        assert_eq!(member_index("web", "web-3"), Some(3));
        for not in ["web", "web-", "web-0", "web-03", "web-x", "webs-1", "web-1-2", "other-1"] {
            assert_eq!(member_index("web", not), None, "{not}");
        }
    }

    #[test]
    fn the_certificate_token_is_acms_shape_and_per_fleet_and_domain() {
        let t = certificate_token("web", "image.example.org");
        assert!(t.len() <= 32 && t.bytes().all(|b| b.is_ascii_alphanumeric()), "{t}");
        assert_ne!(t, certificate_token("web2", "image.example.org"));
        assert_ne!(t, certificate_token("web", "other.example.org"));
    }

    #[test]
    fn with_a_certificate_https_forwards_and_http_redirects() {
        let with = wanted_listeners("tg", Some("cert"));
        assert_eq!(with.len(), 2);
        assert_eq!((with[0].port, with[0].protocol.as_str()), (443, "HTTPS"));
        assert_eq!(with[0].ssl_policy.as_deref(), Some(TLS_POLICY));
        assert_eq!(with[1].action, ListenerAction::RedirectToHttps);
        let without = wanted_listeners("tg", None);
        assert_eq!(without.len(), 1);
        assert_eq!(without[0].action, ListenerAction::Forward { target_group_arn: "tg".into() });
    }

    #[test]
    fn a_fleets_own_resources_carry_no_server_name() {
        let t = fleet_tags("web", Some("image.example.org"));
        assert!(tags::value_of(&t, tags::SERVER_NAME).is_none());
        assert!(is_ours(&t, "web") && !is_ours(&t, "web2"));
    }
}
