//! `ec2 destroy`: remove everything of a server, found by tags alone, and
//! the DNS records made for it.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::api::*;
use crate::poll::poll_delays;
use crate::{Error, Result, tags};

/// What destroy removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DestroyReport {
    pub name: String,
    pub instances: Vec<String>,
    pub security_groups: Vec<String>,
    pub key_pairs: Vec<String>,
    pub addresses: Vec<String>,
    /// Elastic IPs associated with its instance that image-provision did not
    /// allocate for it (no managed tags naming it): kept, still allocated.
    pub addresses_left_alone: Vec<String>,
    /// DNS records deleted, one record set a line.
    pub dns_records: Vec<String>,
    /// DNS records of the server's domain that were not made for it: kept.
    pub dns_left_alone: Vec<String>,
}

impl DestroyReport {
    pub fn found_anything(&self) -> bool {
        !(self.instances.is_empty()
            && self.security_groups.is_empty()
            && self.key_pairs.is_empty()
            && self.addresses.is_empty()
            && self.dns_records.is_empty())
    }
}

/// How long to wait for termination, and for a group's network interfaces to go.
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(600);
const GROUP_DELETE_TIMEOUT: Duration = Duration::from_secs(300);

pub async fn destroy<A: Ec2Api + Route53Api>(
    api: &A,
    name: &str,
    mut log: impl FnMut(String),
) -> Result<DestroyReport> {
    let mut report = DestroyReport { name: name.to_owned(), ..Default::default() };
    let instances: Vec<Instance> = api.find_instances(Some(name)).await?;

    // NAME's own Elastic IPs, found by their tags (associated or not, e.g.
    // after a create killed before it associated one). Another address
    // associated with its instance is the account's, not ours: it stays
    // allocated (it comes loose when the instance terminates) and is said.
    let addresses = api.managed_addresses(name).await?;
    for instance in &instances {
        for address in api.addresses(&instance.id).await? {
            let ours = address.managed_for.as_deref() == Some(name);
            if !ours && !report.addresses_left_alone.contains(&address.public_ip) {
                log(format!(
                    "left alone: Elastic IP {} ({}) on {} was not allocated by image-provision for {name}; \
                     it stays allocated (release it yourself if nothing needs it)",
                    address.public_ip, address.allocation_id, instance.id
                ));
                report.addresses_left_alone.push(address.public_ip);
            }
        }
    }
    // The DNS records first: they name the addresses about to go.
    let mut domains: Vec<&str> = instances
        .iter()
        .flat_map(|i| [i.domain.as_deref(), i.webui_domain.as_deref()])
        .flatten()
        .chain(addresses.iter().filter_map(|a| a.domain.as_deref()))
        .collect();
    domains.sort();
    domains.dedup();
    for domain in domains {
        let removal = crate::dns::remove(api, name, domain, &mut log).await?;
        report.dns_records.extend(removal.deleted);
        report.dns_left_alone.extend(removal.left_alone);
    }
    for address in addresses {
        api.release_address(&address).await?;
        log(format!("released Elastic IP {}", address.public_ip));
        report.addresses.push(address.public_ip);
    }

    for instance in &instances {
        // Moving the instance to its VPC's default group frees our group at
        // once, instead of after the network interface is gone (SkyPilot: a
        // 58 s teardown became 13 s).
        if instance.is_live()
            && let Some(vpc) = &instance.vpc_id
            && let Some(default_group) = api.default_security_group(vpc).await?
            && !instance.security_group_ids.contains(&default_group)
        {
            match api.set_instance_security_groups(&instance.id, std::slice::from_ref(&default_group)).await {
                Ok(()) => {}
                // Not fatal: deleting the group is retried below either way.
                Err(e) => log(format!("could not move {} to the default group: {e}", instance.id)),
            }
        }
        if instance.state != "shutting-down" {
            api.terminate_instance(&instance.id).await?;
        }
        log(format!("terminating {}", instance.id));
    }
    for instance in &instances {
        wait_terminated(api, &instance.id).await?;
        log(format!("terminated {}", instance.id));
        report.instances.push(instance.id.clone());
    }

    for group in api.managed_security_groups(name).await? {
        delete_group_retrying(api, &group.id).await?;
        log(format!("deleted security group {} ({})", group.name, group.id));
        report.security_groups.push(group.id);
    }

    let key_name = tags::resource_name(name);
    if let Some(key) = api.key_pair(&key_name).await? {
        api.delete_key_pair(&key).await?;
        log(format!("deleted key pair {key_name}"));
        report.key_pairs.push(key_name);
    }
    Ok(report)
}

async fn wait_terminated<A: Ec2Api>(api: &A, instance_id: &str) -> Result<()> {
    if api.is_dry_run() {
        return Ok(());
    }
    let start = Instant::now();
    let mut delays = poll_delays();
    loop {
        let state = match api.instance(instance_id).await? {
            None => return Ok(()),
            Some(i) if i.state == "terminated" => return Ok(()),
            Some(i) => i.state,
        };
        if start.elapsed() > TERMINATE_TIMEOUT {
            return Err(Error::Timeout {
                instance_id: instance_id.to_owned(),
                what: "terminate",
                waited_secs: start.elapsed().as_secs(),
                last: format!("state {state}"),
            });
        }
        tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(5))).await;
    }
}

/// DeleteSecurityGroup fails with DependencyViolation while a network
/// interface still uses the group; that clears within a minute or two.
async fn delete_group_retrying<A: Ec2Api>(api: &A, group_id: &str) -> Result<()> {
    let start = Instant::now();
    let mut delays = poll_delays();
    loop {
        match api.delete_security_group(group_id).await {
            Ok(()) => return Ok(()),
            Err(Error::Aws(e)) if e.is("InvalidGroup.NotFound") => return Ok(()),
            Err(Error::Aws(e)) if e.is("DependencyViolation") && start.elapsed() < GROUP_DELETE_TIMEOUT => {
                tracing::debug!(group_id, "security group still in use, retrying");
            }
            Err(e) => return Err(e),
        }
        tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(5))).await;
    }
}

/// What `destroy --expired` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExpiredSweep {
    pub destroyed: Vec<DestroyReport>,
    /// Expired instances left alone because their name tag is not a server
    /// name (an empty name, a path, ...): nothing of them was touched.
    pub left_alone: Vec<BadlyNamed>,
}

/// An instance whose name tag image-provision will not act on.
#[derive(Debug, Clone, Serialize)]
pub struct BadlyNamed {
    pub instance_id: String,
    /// The tag's value, as read.
    pub name: String,
}

impl BadlyNamed {
    /// What a person can do about it.
    pub fn advice(&self) -> String {
        format!(
            "instance {} has expired, but its tag {}={:?} is not a server name, so it was left alone: \
             terminate it in the EC2 console (or `aws ec2 terminate-instances --instance-ids {}`) if it is \
             yours, or give it a valid name tag and run `ec2 destroy --expired` again",
            self.instance_id,
            tags::SERVER_NAME,
            self.name,
            self.instance_id
        )
    }
}

/// The expired managed servers at `now`: the names to destroy (each a valid
/// server name), and the instances whose name tag is not one.
pub fn expired(instances: Vec<Instance>, now: jiff::Timestamp) -> (Vec<String>, Vec<BadlyNamed>) {
    let (mut names, mut bad) = (Vec::new(), Vec::new());
    for i in instances.into_iter().filter(|i| i.has_expired(now)) {
        if tags::is_server_name(&i.name) {
            names.push(i.name);
        } else {
            bad.push(BadlyNamed { instance_id: i.id, name: i.name });
        }
    }
    names.sort();
    names.dedup();
    (names, bad)
}

/// Destroy every managed server whose expires-at tag is before `now` (RFC 3339).
pub async fn destroy_expired<A: Ec2Api + Route53Api>(
    api: &A,
    now: jiff::Timestamp,
    mut log: impl FnMut(String),
) -> Result<ExpiredSweep> {
    let (names, left_alone) = expired(api.find_instances(None).await?, now);
    let mut sweep = ExpiredSweep { left_alone, ..Default::default() };
    for bad in &sweep.left_alone {
        log(bad.advice());
    }
    for name in names {
        log(format!("{name} has expired"));
        sweep.destroyed.push(destroy(api, &name, &mut log).await?);
    }
    Ok(sweep)
}
