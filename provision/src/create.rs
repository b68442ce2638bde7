//! `ec2 create`: find or make every resource of a server, by tags, so that a
//! re-run (or a run after a killed one) converges on exactly one of each.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::ami::{Holds, LaunchImage};
use crate::api::*;
use crate::poll::poll_delays;
use crate::spec::{CreateSpec, KeySource};
use crate::{AwsError, Error, Result, tags};

/// What `create` found or made.
#[derive(Debug, Clone)]
pub struct Created {
    pub instance: Instance,
    /// True when a live instance of this NAME already existed.
    pub reused: bool,
    pub image_id: String,
    pub security_group_id: String,
    pub key_pair_name: String,
    /// Availability zones tried, in order, the last one being where it runs.
    pub zones_tried: Vec<String>,
    pub spot: bool,
    /// When the server expires after this run (RFC 3339 UTC): the spec's
    /// expiry when it has one, else a reused server's own; None: never.
    pub expires_at: Option<String>,
    /// Its Elastic IP, found or allocated; associated by [`wait_for_ssh`].
    pub elastic_ip: Option<Address>,
    /// Launched from an image `ami bake` made: what it holds (its tags).
    pub baked: Option<Holds>,
}

/// Progress lines for a person, one per thing done.
pub type CreateReport = Vec<String>;

/// AWS codes that mean "no room for this instance type here; another zone may
/// have it".
const CAPACITY_CODES: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "Unsupported",
    "InstanceTypeNotSupported",
    "SpotMaxPriceTooLow",
    "MaxSpotInstanceCountExceeded",
    "InsufficientFreeAddressesInSubnet",
];

fn is_capacity_error(e: &Error) -> Option<&AwsError> {
    match e {
        Error::Aws(a) if a.code.as_deref().is_some_and(|c| CAPACITY_CODES.contains(&c)) => Some(a),
        _ => None,
    }
}

/// The ingress rules of a server's group: SSH from `ssh_cidrs`, web from
/// anywhere, or only from the group `web_from_group` (a fleet's balancer:
/// HTTP alone, as the balancer ends TLS).
pub fn ingress_rules(ssh_cidrs: &[String], web_from_group: Option<&str>) -> Vec<IngressRule> {
    let mut rules: Vec<IngressRule> = ssh_cidrs.iter().map(|c| IngressRule { port: 22, cidr: c.clone() }).collect();
    match web_from_group {
        Some(group) => rules.push(IngressRule { port: 80, cidr: group.to_owned() }),
        None => {
            for port in [80, 443] {
                rules.extend(["0.0.0.0/0", "::/0"].iter().map(|c| IngressRule { port, cidr: (*c).into() }));
            }
        }
    }
    rules
}

/// One subnet per availability zone, in zone order, the given one first.
pub(crate) fn zone_order(mut subnets: Vec<Subnet>, first: Option<&str>) -> Vec<Subnet> {
    // Prefer the zone's default subnet: it gives instances a public IP.
    subnets.sort_by(|a, b| {
        (a.availability_zone.as_str(), !a.default_for_az, a.id.as_str()).cmp(&(
            b.availability_zone.as_str(),
            !b.default_for_az,
            b.id.as_str(),
        ))
    });
    let mut by_zone: BTreeMap<String, Subnet> = BTreeMap::new();
    for s in subnets {
        by_zone.entry(s.availability_zone.clone()).or_insert(s);
    }
    let mut ordered: Vec<Subnet> = by_zone.into_values().collect();
    if let Some(first) = first
        && let Some(pos) = ordered.iter().position(|s| s.id == first)
    {
        let s = ordered.remove(pos);
        ordered.insert(0, s);
    }
    ordered
}

async fn pick_image<A: Ec2Api>(api: &A, spec: &CreateSpec) -> Result<LaunchImage> {
    if let Some(name_or_id) = &spec.ami {
        return crate::ami::launch_image(api, name_or_id).await;
    }
    let (owner, pattern) = spec.ubuntu.image_source(spec.base_image);
    let prefix = pattern.trim_end_matches('*');
    let images = api.find_images(owner, pattern).await?;
    // EC2's name filter is a whole-name glob already; checking the prefix here
    // as well keeps a lax endpoint from handing us another family's image.
    images
        .into_iter()
        .filter(|i| api.is_dry_run() || i.name.starts_with(prefix))
        .max_by(|a, b| a.creation_date.cmp(&b.creation_date))
        .map(|image| LaunchImage { image, baked: None })
        .ok_or_else(|| Error::NoImage { owner: owner.into(), pattern: pattern.into() })
}

async fn subnets_to_try<A: Ec2Api>(api: &A, spec: &CreateSpec) -> Result<(String, Vec<Subnet>)> {
    let (vpc_id, first) = match &spec.subnet {
        Some(id) => {
            let s = api.subnet(id).await?.ok_or_else(|| Error::SubnetNotFound(id.clone()))?;
            (s.vpc_id, Some(id.as_str()))
        }
        None => (api.default_vpc().await?.ok_or(Error::NoDefaultVpc)?, None),
    };
    let subnets = zone_order(api.subnets(&vpc_id).await?, first);
    if subnets.is_empty() {
        return Err(Error::NoSubnets(vpc_id));
    }
    Ok((vpc_id, subnets))
}

/// The ports whose rules image-provision decides; a rule on another port of
/// the group (one a person added by hand) is left alone.
const MANAGED_PORTS: [u16; 3] = [22, 80, 443];

async fn ensure_security_group<A: Ec2Api>(
    api: &A,
    spec: &CreateSpec,
    vpc_id: &str,
    log: &mut impl FnMut(String),
) -> Result<String> {
    let group_name = tags::resource_name(&spec.name);
    let (id, existing) = match api.security_group(vpc_id, &group_name).await? {
        Some(g) => {
            log(format!("security group {} ({}) exists", g.name, g.id));
            (g.id, g.ingress)
        }
        None => {
            let description = format!("IMAGE server {}: SSH, HTTP, HTTPS", spec.name);
            let tags = tags::managed_tags(&spec.name, spec.expires_at.as_deref());
            let id = api.create_security_group(vpc_id, &group_name, &description, &tags).await?;
            log(format!("created security group {group_name} ({id})"));
            (id, Vec::new())
        }
    };
    converge_ingress(api, &id, &existing, &spec.ssh_cidrs, spec.web_from_group.as_deref(), log).await?;
    Ok(id)
}

/// Make the group's rules on SSH, HTTP and HTTPS exactly those asked for:
/// missing ones added, ones no longer asked for (a wider SSH range after
/// `--ssh-cidr` narrowed it, IPv4 or IPv6) revoked, each said.
async fn converge_ingress<A: Ec2Api>(
    api: &A,
    group_id: &str,
    existing: &[IngressRule],
    ssh_cidrs: &[String],
    web_from_group: Option<&str>,
    log: &mut impl FnMut(String),
) -> Result<()> {
    let wanted = ingress_rules(ssh_cidrs, web_from_group);
    let said = |rules: &[IngressRule]| rules.iter().map(|r| format!("{}<-{}", r.port, r.cidr)).collect::<Vec<_>>();
    let missing: Vec<IngressRule> = wanted.iter().filter(|r| !existing.contains(r)).cloned().collect();
    if !missing.is_empty() {
        api.authorize_ingress(group_id, &missing).await?;
        log(format!("opened {}", said(&missing).join(" ")));
    }
    let unwanted: Vec<IngressRule> =
        existing.iter().filter(|r| MANAGED_PORTS.contains(&r.port) && !wanted.contains(r)).cloned().collect();
    if !unwanted.is_empty() {
        api.revoke_ingress(group_id, &unwanted).await?;
        log(format!("closed {} (no longer asked for)", said(&unwanted).join(" ")));
    }
    Ok(())
}

/// A server that exists is brought to this run's settings where EC2 lets
/// them change on a running instance: its group's rules and its instance
/// metadata's lock. (Its volume's encryption is fixed at launch.)
async fn converge_existing<A: Ec2Api>(
    api: &A,
    spec: &CreateSpec,
    instance: &Instance,
    log: &mut impl FnMut(String),
) -> Result<()> {
    let group_name = tags::resource_name(&spec.name);
    match instance.vpc_id.as_deref() {
        Some(vpc) => match api.security_group(vpc, &group_name).await? {
            Some(g) if instance.security_group_ids.contains(&g.id) => {
                // Without --ssh-cidr this run, SSH stays open to whom it is.
                let kept: Vec<String> = g.ingress.iter().filter(|r| r.port == 22).map(|r| r.cidr.clone()).collect();
                let ssh = if spec.ssh_cidrs_asked || kept.is_empty() { &spec.ssh_cidrs } else { &kept };
                converge_ingress(api, &g.id, &g.ingress, ssh, spec.web_from_group.as_deref(), log).await?;
            }
            _ => log(format!(
                "{} does not use security group {group_name}: its rules were left as they are",
                instance.id
            )),
        },
        None => log(format!("{} has no VPC: its security group was left as it is", instance.id)),
    }
    if !instance.imds_locked {
        api.lock_instance_metadata(&instance.id).await?;
        log(format!(
            "{}: instance metadata now requires IMDSv2 tokens, hop limit 1 (containers cannot reach it)",
            instance.id
        ));
    }
    Ok(())
}

async fn ensure_key_pair<A: Ec2Api>(api: &A, spec: &CreateSpec, log: &mut impl FnMut(String)) -> Result<String> {
    let name = tags::resource_name(&spec.name);
    let KeySource::Public(public_key) = &spec.key;
    // No live instance uses this key pair (create reuses servers before it
    // gets here), so replace any old one: its private half may be gone with a
    // deleted state directory, and a server launched with it would be
    // unreachable.
    if let Some(old) = api.key_pair(&name).await? {
        api.delete_key_pair(&old).await?;
        log(format!("replaced old key pair {name}"));
    }
    let tags = tags::managed_tags(&spec.name, spec.expires_at.as_deref());
    api.import_key_pair(&name, public_key, &tags).await?;
    log(format!("imported key pair {name}"));
    Ok(name)
}

/// `--ttl` on a server that exists: its expiry moves to `expires_at` on the
/// instance and on everything made for it (found as destroy finds it), and a
/// shutdown from inside it now terminates it, as after a launch with `--ttl`
/// (unless it has an idle stop: `idle`; then it stops, and `destroy
/// --expired` terminates it).
async fn move_expiry<A: Ec2Api>(
    api: &A,
    instance: &Instance,
    expires_at: &str,
    idle: bool,
    log: &mut impl FnMut(String),
) -> Result<()> {
    let name = &instance.name;
    // Before the tags, so that an expiry tag always comes with a terminating
    // shutdown, even when this run is killed in between.
    if !idle && !api.shutdown_terminates(&instance.id).await? {
        api.set_shutdown_terminates(&instance.id).await?;
        log(format!("{name} now terminates, rather than stops, when it shuts itself down"));
    }
    let mut resources = vec![instance.id.clone()];
    resources.extend(instance.volume_ids.iter().cloned());
    resources.extend(api.managed_security_groups(name).await?.into_iter().map(|g| g.id));
    resources.extend(api.key_pair(&tags::resource_name(name)).await?.map(|k| k.id));
    resources.extend(api.managed_addresses(name).await?.into_iter().map(|a| a.allocation_id));
    resources.retain(|id| !id.is_empty());
    api.create_tags(&resources, &[Tag::new(tags::EXPIRES_AT, expires_at)]).await?;
    log(match &instance.expires_at {
        Some(old) => format!("expiry of {name} moved from {old} to {expires_at}"),
        None => format!("expiry of {name} set to {expires_at}"),
    });
    Ok(())
}

/// `--autostop` on a server that exists: given (`30m`), a shutdown from
/// inside it stops it from now on (set before the tag, so the tag always
/// comes with a stopping shutdown), and its autostop tag says so; `off`
/// (when it had one): the tag says `off`, and a server with an expiry
/// terminates on shutdown again.
async fn converge_autostop<A: Ec2Api>(
    api: &A,
    instance: &Instance,
    autostop: &str,
    expires: bool,
    log: &mut impl FnMut(String),
) -> Result<()> {
    let name = &instance.name;
    let tag = |value: &str| vec![Tag::new(tags::AUTOSTOP, value)];
    if autostop != tags::AUTOSTOP_OFF {
        if api.shutdown_terminates(&instance.id).await? {
            api.set_shutdown_stops(&instance.id).await?;
            log(format!("{name} now stops, rather than terminates, when it shuts itself down (--autostop)"));
        }
        if instance.autostop.as_deref() != Some(autostop) {
            api.create_tags(std::slice::from_ref(&instance.id), &tag(autostop)).await?;
            log(format!("{name} stops itself after {autostop} without a request"));
        }
    } else if instance.stops_when_idle() {
        api.create_tags(std::slice::from_ref(&instance.id), &tag(tags::AUTOSTOP_OFF)).await?;
        if expires && !api.shutdown_terminates(&instance.id).await? {
            api.set_shutdown_terminates(&instance.id).await?;
            log(format!("{name} terminates again when it shuts itself down (its --ttl)"));
        }
        log(format!("{name} no longer stops itself when idle"));
    }
    Ok(())
}

/// The tags of server NAME's Elastic IP, and of its instance at launch:
/// the managed ones and, when DNS records are made for it, its domain.
fn server_tags(spec: &CreateSpec, expires_at: Option<&str>) -> Vec<Tag> {
    let mut server_tags = tags::managed_tags(&spec.name, expires_at);
    server_tags.extend(spec.dns_domain.as_ref().map(|d| Tag::new(tags::DOMAIN, d)));
    server_tags.extend(spec.webui_dns_domain.as_ref().map(|d| Tag::new(tags::WEBUI_DOMAIN, d)));
    server_tags.extend(spec.fleet.as_ref().map(|f| Tag::new(tags::FLEET, f)));
    server_tags
}

/// The Elastic IP of server NAME, found by its tags or allocated (tagged at
/// allocation, so a run killed right after finds it again).
async fn ensure_elastic_ip<A: Ec2Api>(
    api: &A,
    spec: &CreateSpec,
    expires_at: Option<&str>,
    log: &mut impl FnMut(String),
) -> Result<Address> {
    let found = api.managed_addresses(&spec.name).await?;
    // Two only if another run raced this one: keep using the one in use.
    if let Some(address) = found.iter().find(|a| a.instance_id.is_some()).or(found.first()) {
        log(format!("Elastic IP {} ({}) exists", address.public_ip, address.allocation_id));
        return Ok(address.clone());
    }
    let address = api.allocate_address(&server_tags(spec, expires_at)).await?;
    log(format!("allocated Elastic IP {} ({})", address.public_ip, address.allocation_id));
    Ok(address)
}

/// Associate the Elastic IP with the instance unless it already is. EC2
/// associates only an instance that runs (or is stopped), not a pending one.
pub async fn associate_elastic_ip<A: Ec2Api>(
    api: &A,
    address: &Address,
    instance_id: &str,
    mut log: impl FnMut(String),
) -> Result<()> {
    if address.instance_id.as_deref() == Some(instance_id) {
        return Ok(());
    }
    api.associate_address(&address.allocation_id, instance_id).await?;
    log(format!("associated Elastic IP {} with {instance_id}", address.public_ip));
    Ok(())
}

/// DNS records are about to be made for DOMAIN: the instance and its Elastic
/// IP carry DOMAIN in their domain tag first (a launch or an allocation of
/// this run tagged them already), so that destroy finds the records even
/// after a run killed in between. A server whose records were made for
/// another name has those deleted first.
async fn tag_domain<A: Ec2Api + Route53Api>(
    api: &A,
    created: &mut Created,
    domain: &str,
    log: &mut impl FnMut(String),
) -> Result<()> {
    let instance = &mut created.instance;
    if let Some(old) = instance.domain.as_deref().filter(|old| *old != domain) {
        crate::dns::remove(api, &instance.name, old, &mut *log).await?;
    }
    let mut untagged = Vec::new();
    if instance.domain.as_deref() != Some(domain) {
        untagged.push(instance.id.clone());
        instance.domain = Some(domain.to_owned());
    }
    if let Some(address) = created.elastic_ip.as_mut().filter(|a| a.domain.as_deref() != Some(domain)) {
        untagged.push(address.allocation_id.clone());
        address.domain = Some(domain.to_owned());
    }
    if !untagged.is_empty() {
        api.create_tags(&untagged, &[Tag::new(tags::DOMAIN, domain)]).await?;
    }
    Ok(())
}

/// The web UI's DNS records are about to be made for HOST: the instance
/// carries HOST in its webui-domain tag first, as [`tag_domain`] does for
/// the server's own name; records made for another web UI name are
/// deleted first.
async fn tag_webui_domain<A: Ec2Api + Route53Api>(
    api: &A,
    instance: &mut Instance,
    host: &str,
    log: &mut impl FnMut(String),
) -> Result<()> {
    if instance.webui_domain.as_deref() == Some(host) {
        return Ok(());
    }
    if let Some(old) = instance.webui_domain.as_deref() {
        crate::dns::remove(api, &instance.name, old, &mut *log).await?;
    }
    api.create_tags(std::slice::from_ref(&instance.id), &[Tag::new(tags::WEBUI_DOMAIN, host)]).await?;
    instance.webui_domain = Some(host.to_owned());
    Ok(())
}

/// Create (or find) the server NAME, and its Elastic IP with `spec.elastic_ip`.
/// Does not wait for it: see [`wait_for_ssh`], which also associates the
/// Elastic IP, and [`crate::dns::publish`] for its DNS records.
pub async fn create<A: Ec2Api + Route53Api>(
    api: &A,
    spec: &CreateSpec,
    mut log: impl FnMut(String),
) -> Result<Created> {
    let mut created = find_or_launch(api, spec, &mut log).await?;
    if spec.elastic_ip {
        created.elastic_ip = Some(ensure_elastic_ip(api, spec, created.expires_at.as_deref(), &mut log).await?);
    }
    if let Some(domain) = &spec.dns_domain {
        tag_domain(api, &mut created, domain, &mut log).await?;
    }
    if let Some(host) = &spec.webui_dns_domain {
        tag_webui_domain(api, &mut created.instance, host, &mut log).await?;
    }
    Ok(created)
}

async fn find_or_launch<A: Ec2Api>(api: &A, spec: &CreateSpec, log: &mut impl FnMut(String)) -> Result<Created> {
    if let Some(mut existing) = api.find_instances(Some(&spec.name)).await?.into_iter().find(Instance::is_live) {
        if !matches!(existing.state.as_str(), "pending" | "running") {
            return Err(Error::InstanceFailed { instance_id: existing.id, state: existing.state });
        }
        // A fleet's server is the fleet's to change: its group admits only
        // the balancer, its host serves behind it.
        if let Some(fleet) = existing.fleet.as_ref().filter(|f| spec.fleet.as_ref() != Some(*f)) {
            return Err(Error::FleetServer { name: spec.name.clone(), fleet: fleet.clone() });
        }
        log(format!("server {} exists: instance {} ({}), reusing it", spec.name, existing.id, existing.state));
        converge_existing(api, spec, &existing, log).await?;
        let idle = match &spec.autostop {
            Some(a) => a != tags::AUTOSTOP_OFF,
            None => existing.stops_when_idle(),
        };
        if let Some(at) = &spec.expires_at {
            move_expiry(api, &existing, at, idle, log).await?;
            existing.expires_at = Some(at.clone());
        }
        if let Some(autostop) = &spec.autostop {
            converge_autostop(api, &existing, autostop, existing.expires_at.is_some(), log).await?;
            existing.autostop = Some(autostop.clone());
        }
        let security_group_id = existing.security_group_ids.first().cloned().unwrap_or_default();
        return Ok(Created {
            expires_at: existing.expires_at.clone(),
            image_id: existing.image_id.clone().unwrap_or_default(),
            key_pair_name: existing.key_name.clone().unwrap_or_default(),
            zones_tried: existing.availability_zone.iter().cloned().collect(),
            instance: existing,
            reused: true,
            security_group_id,
            spot: false,
            elastic_ip: None,
            baked: None,
        });
    }

    let LaunchImage { image, baked } = pick_image(api, spec).await?;
    match &baked {
        Some(h) => log(format!(
            "image {} {}: baked by image-provision from {} (commit {}, driver {}, {} image digests)",
            image.id,
            image.name,
            image.tag(tags::SOURCE_SERVER).unwrap_or("?"),
            h.repo_commit.get(..12).unwrap_or(&h.repo_commit),
            h.driver_branch.as_deref().unwrap_or("none"),
            h.digests.len()
        )),
        None => log(format!("image {} {}", image.id, image.name)),
    }
    let (vpc_id, subnets) = subnets_to_try(api, spec).await?;
    let security_group_id = ensure_security_group(api, spec, &vpc_id, log).await?;
    let key_pair_name = ensure_key_pair(api, spec, log).await?;

    let volume_tags = tags::managed_tags(&spec.name, spec.expires_at.as_deref());
    let mut instance_tags = server_tags(spec, spec.expires_at.as_deref());
    // An idle stop must only stop: the instance then stops on a shutdown
    // from inside (EC2's default), its expiry's power-off included, and
    // `destroy --expired` terminates it once expired.
    let idle = spec.autostop.as_deref().is_some_and(|a| a != tags::AUTOSTOP_OFF);
    if idle {
        instance_tags.extend(spec.autostop.as_ref().map(|a| Tag::new(tags::AUTOSTOP, a)));
    }
    let mut markets = Vec::new();
    if spec.spot {
        markets.push(true);
    }
    if !spec.spot || !spec.spot_only {
        markets.push(false);
    }
    let mut zones_tried = Vec::new();
    let mut last_capacity_error = None;
    for spot in markets {
        for subnet in &subnets {
            let market = if spot { "spot" } else { "on-demand" };
            zones_tried.push(format!("{} ({market})", subnet.availability_zone));
            let request = RunInstancesRequest {
                image_id: image.id.clone(),
                instance_type: spec.instance_type.clone(),
                key_name: key_pair_name.clone(),
                security_group_ids: vec![security_group_id.clone()],
                subnet_id: subnet.id.clone(),
                client_token: tags::client_token(&spec.name, &format!("{security_group_id}/{}/{market}", subnet.id)),
                root_device_name: image.root_device_name.clone(),
                volume_size_gib: spec.volume_size_gib,
                volume_type: spec.volume_type.clone(),
                volume_throughput_mibps: spec.volume_throughput_mibps,
                volume_iops: spec.volume_iops,
                delete_on_termination: true,
                encrypted: true,
                kms_key_id: spec.kms_key_id.clone(),
                metadata_hop_limit: 1,
                spot,
                // Spot one-time requests must terminate on interruption; a TTL
                // server should stop costing money when it shuts itself down,
                // unless it stops itself when idle (then it only stops).
                shutdown_terminates: (spec.expires_at.is_some() && !idle) || spot,
                instance_tags: instance_tags.clone(),
                volume_tags: volume_tags.clone(),
                user_data: spec.user_data.clone(),
            };
            match api.run_instance(&request).await {
                Ok(instance) => {
                    log(format!(
                        "launched {} {} in {} ({market})",
                        instance.id, spec.instance_type, subnet.availability_zone
                    ));
                    return Ok(Created {
                        instance,
                        reused: false,
                        image_id: image.id,
                        security_group_id,
                        key_pair_name,
                        zones_tried,
                        spot,
                        expires_at: spec.expires_at.clone(),
                        elastic_ip: None,
                        baked,
                    });
                }
                Err(e) => match is_capacity_error(&e) {
                    Some(a) => {
                        log(format!("no capacity in {} ({market}): {}", subnet.availability_zone, a.message));
                        last_capacity_error = Some(a.clone());
                    }
                    None => return Err(e),
                },
            }
        }
    }
    Err(Error::NoCapacity {
        instance_type: spec.instance_type.clone(),
        zones: zones_tried,
        last: last_capacity_error.expect("at least one attempt was made"),
    })
}

/// An instance that runs and answers SSH, and how long each took.
#[derive(Debug, Clone)]
pub struct SshReady {
    pub instance: Instance,
    /// From the first look to running with a public IP.
    pub to_running: Duration,
    /// From running to SSH's banner.
    pub to_ssh: Duration,
}

/// Wait until the instance runs with a public IP and `ssh_addr` (or the
/// public IP's port 22) answers with an SSH banner. With `elastic_ip`, it is
/// associated once the instance runs, and the public IP waited for is the
/// Elastic IP. Returns the instance as last seen.
pub async fn wait_for_ssh<A: Ec2Api>(
    api: &A,
    instance_id: &str,
    elastic_ip: Option<&Address>,
    ssh_addr_override: Option<SocketAddr>,
    timeout: Duration,
    mut log: impl FnMut(String),
) -> Result<SshReady> {
    let start = Instant::now();
    let mut delays = poll_delays();
    let mut last: String;
    let timed_out = |what, last: &str| Error::Timeout {
        instance_id: instance_id.to_owned(),
        what,
        waited_secs: start.elapsed().as_secs(),
        last: last.to_owned(),
    };
    let mut associated = false;
    let instance = loop {
        match api.instance(instance_id).await? {
            Some(i) if i.state == "running" && !associated && elastic_ip.is_some() => {
                if let Some(address) = elastic_ip {
                    associate_elastic_ip(api, address, instance_id, &mut log).await?;
                }
                associated = true;
                continue;
            }
            Some(i)
                if i.state == "running"
                    && i.public_ip.is_some()
                    && elastic_ip.is_none_or(|a| i.public_ip.as_deref() == Some(&a.public_ip)) =>
            {
                break i;
            }
            Some(i) if matches!(i.state.as_str(), "terminated" | "shutting-down" | "stopped" | "stopping") => {
                return Err(Error::InstanceFailed { instance_id: instance_id.to_owned(), state: i.state });
            }
            Some(i) => last = format!("state {}, public IP {}", i.state, i.public_ip.as_deref().unwrap_or("none")),
            None => last = "not visible yet".into(),
        }
        if start.elapsed() > timeout {
            return Err(timed_out("run with a public IP", &last));
        }
        tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(5))).await;
    };
    let to_running = start.elapsed();
    let ip = instance.public_ip.clone().unwrap_or_default();
    log(format!("{instance_id} is running at {ip}"));
    let addr = match ssh_addr_override {
        Some(a) => a,
        None => format!("{ip}:22").parse().map_err(|_| timed_out("report a usable public IP", &ip))?,
    };
    let mut delays = poll_delays();
    loop {
        match ssh_banner(addr).await {
            Ok(banner) => {
                log(format!("SSH answers at {addr}: {banner}"));
                return Ok(SshReady { instance, to_running, to_ssh: start.elapsed() - to_running });
            }
            Err(why) => last = format!("SSH at {addr}: {why}"),
        }
        if start.elapsed() > timeout {
            return Err(timed_out("answer on SSH", &last));
        }
        tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(5))).await;
    }
}

/// Connect and read the server's identification line. A bare TCP accept is
/// not enough: during boot something may accept and close at once.
async fn ssh_banner(addr: SocketAddr) -> std::result::Result<String, String> {
    let mut stream = tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(256);
    let read = async {
        let mut chunk = [0u8; 256];
        // RFC 4253 lets a server send other lines before its banner.
        while buf.len() < 4096 {
            let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed before sending a banner".to_string());
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(line) = String::from_utf8_lossy(&buf).lines().find(|l| l.starts_with("SSH-")) {
                return Ok(line.trim_end().to_string());
            }
        }
        Err("no SSH banner in the first 4 KiB".to_string())
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.map_err(|_| "no banner within 5 s".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(id: &str, az: &str, default: bool) -> Subnet {
        Subnet { id: id.into(), vpc_id: "vpc".into(), availability_zone: az.into(), default_for_az: default }
    }

    #[test]
    fn zone_order_keeps_one_subnet_per_zone_and_puts_the_chosen_first() {
        let s = vec![
            subnet("s-c", "us-east-1c", true),
            subnet("s-a2", "us-east-1a", false),
            subnet("s-a", "us-east-1a", true),
            subnet("s-b", "us-east-1b", true),
        ];
        let ids: Vec<_> = zone_order(s.clone(), None).into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["s-a", "s-b", "s-c"]);
        let ids: Vec<_> = zone_order(s, Some("s-b")).into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["s-b", "s-a", "s-c"]);
    }

    #[test]
    fn ingress_rules_narrow_only_ssh() {
        let rules = ingress_rules(&["203.0.113.0/24".into()], None);
        assert!(rules.contains(&IngressRule { port: 22, cidr: "203.0.113.0/24".into() }));
        assert!(!rules.iter().any(|r| r.port == 22 && r.cidr == "0.0.0.0/0"));
        for port in [80, 443] {
            assert!(rules.contains(&IngressRule { port, cidr: "0.0.0.0/0".into() }));
            assert!(rules.contains(&IngressRule { port, cidr: "::/0".into() }));
        }
    }

    #[test]
    fn a_fleet_server_takes_web_traffic_from_its_balancer_only() {
        let rules = ingress_rules(&["0.0.0.0/0".into()], Some("sg-balancer"));
        assert!(rules.contains(&IngressRule { port: 80, cidr: "sg-balancer".into() }));
        assert!(!rules.iter().any(|r| r.port != 22 && !r.is_group()), "{rules:?}");
        assert!(!rules.iter().any(|r| r.port == 443), "the balancer ends TLS: {rules:?}");
    }
}
