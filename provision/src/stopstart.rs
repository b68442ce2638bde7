//! `ec2 stop` and `ec2 start`: the instance of server NAME (found by its
//! tags, as destroy finds it) stopped and started again, its volumes, its
//! Elastic IP and its DNS records kept.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::api::*;
use crate::create::{SshReady, wait_for_ssh};
use crate::poll::poll_delays;
use crate::{Error, Result};

/// What `stop` did.
#[derive(Debug, Clone, Serialize)]
pub struct StopReport {
    pub name: String,
    pub instance_id: String,
    /// It was stopped already: nothing was asked of EC2.
    pub already_stopped: bool,
    /// Kept, and still billed while stopped.
    pub volume_ids: Vec<String>,
    /// Its Elastic IPs, kept (still associated) and still billed.
    pub elastic_ips: Vec<String>,
    /// The host name whose DNS records were made for it: kept.
    pub domain: Option<String>,
    pub expires_at: Option<String>,
    /// From the StopInstances call to the state `stopped`.
    #[serde(serialize_with = "seconds")]
    pub waited: Duration,
}

/// What `start` did.
#[derive(Debug, Clone)]
pub struct StartReport {
    pub name: String,
    /// The instance, running, its public address as it is now.
    pub instance: Instance,
    /// It was running (or starting) already: nothing was asked of EC2.
    pub already_running: bool,
    /// Its Elastic IP, when it has one of ours: the address does not change.
    pub elastic_ip: Option<Address>,
    pub to_running: Duration,
    pub to_ssh: Duration,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 10.0).round() / 10.0)
}

/// The one live instance of server NAME: tagged managed and named NAME
/// (what image-provision made for it), in any state but terminated.
pub async fn the_instance<A: Ec2Api>(api: &A, name: &str) -> Result<Instance> {
    let mut found: Vec<Instance> = api
        .find_instances(Some(name))
        .await?
        .into_iter()
        .filter(|i| i.name == name && i.state != "terminated")
        .collect();
    match found.len() {
        0 => Err(Error::NoServer(name.to_owned())),
        1 => Ok(found.remove(0)),
        _ => Err(Error::ManyInstances { name: name.to_owned(), ids: found.into_iter().map(|i| i.id).collect() }),
    }
}

/// Wait until the instance is in state `wanted`, within `timeout`. Any
/// other state but an ending one is "not yet" (DescribeInstances may show
/// the state before a call for a moment).
async fn wait_state<A: Ec2Api>(
    api: &A,
    instance_id: &str,
    wanted: &str,
    what: &'static str,
    timeout: Duration,
) -> Result<Instance> {
    let start = Instant::now();
    let mut delays = poll_delays();
    loop {
        let last = match api.instance(instance_id).await? {
            Some(i) if i.state == wanted => return Ok(i),
            Some(i) if matches!(i.state.as_str(), "terminated" | "shutting-down") => {
                return Err(Error::Ending { instance_id: instance_id.to_owned(), state: i.state });
            }
            Some(i) => format!("state {}", i.state),
            None => return Err(Error::InstanceVanished(instance_id.to_owned())),
        };
        if start.elapsed() > timeout {
            return Err(Error::Timeout {
                instance_id: instance_id.to_owned(),
                what,
                waited_secs: start.elapsed().as_secs(),
                last,
            });
        }
        tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(5))).await;
    }
}

/// Stop server NAME and wait (within `timeout`) until it is stopped. A
/// stopped server is left as it is; a stopping one is waited for.
pub async fn stop<A: Ec2Api>(
    api: &A,
    name: &str,
    timeout: Duration,
    mut log: impl FnMut(String),
) -> Result<StopReport> {
    let instance = the_instance(api, name).await?;
    let id = instance.id.clone();
    let started = Instant::now();
    let already_stopped = match instance.state.as_str() {
        "stopped" => true,
        "stopping" => {
            log(format!("{id} is stopping already: waiting for it to stop (time limit {} s)", timeout.as_secs()));
            false
        }
        "pending" | "running" => {
            api.stop_instance(&id).await?;
            log(format!("stopping {id}: waiting for it to stop (time limit {} s)", timeout.as_secs()));
            false
        }
        _ => return Err(Error::Ending { instance_id: id, state: instance.state }),
    };
    let instance = if already_stopped || api.is_dry_run() {
        instance
    } else {
        let i = wait_state(api, &id, "stopped", "stop", timeout).await?;
        log(format!("{id} stopped after {:.1}s", started.elapsed().as_secs_f64()));
        i
    };
    let elastic_ips = api.addresses(&id).await?.into_iter().map(|a| a.public_ip).collect();
    Ok(StopReport {
        name: name.to_owned(),
        instance_id: id,
        already_stopped,
        volume_ids: instance.volume_ids,
        elastic_ips,
        domain: instance.domain,
        expires_at: instance.expires_at,
        waited: started.elapsed(),
    })
}

/// Start server NAME, wait (within `timeout` in all) until it runs with its
/// public address (its Elastic IP, re-associated if it came loose) and
/// answers SSH. A running server is only checked; a stopping one is waited
/// for before it is started.
pub async fn start<A: Ec2Api>(
    api: &A,
    name: &str,
    ssh_addr_override: Option<SocketAddr>,
    timeout: Duration,
    mut log: impl FnMut(String),
) -> Result<StartReport> {
    let began = Instant::now();
    let instance = the_instance(api, name).await?;
    let id = instance.id.clone();
    let already_running = match instance.state.as_str() {
        "pending" | "running" => true,
        "stopping" => {
            log(format!("{id} is still stopping: waiting for it to stop before starting it"));
            wait_state(api, &id, "stopped", "stop", timeout).await?;
            false
        }
        "stopped" => false,
        _ => return Err(Error::Ending { instance_id: id, state: instance.state }),
    };
    if !already_running {
        api.start_instance(&id).await?;
        log(format!("starting {id}"));
    }
    // NAME's own Elastic IP (allocated for it, by its tags): the one on the
    // instance, else one come loose.
    let ours: Vec<Address> =
        api.managed_addresses(name).await?.into_iter().filter(|a| a.managed_for.as_deref() == Some(name)).collect();
    let elastic_ip = ours
        .iter()
        .find(|a| a.instance_id.as_deref() == Some(id.as_str()))
        .or_else(|| ours.iter().find(|a| a.instance_id.is_none()))
        .cloned();
    if api.is_dry_run() {
        return Ok(StartReport {
            name: name.to_owned(),
            instance,
            already_running,
            elastic_ip,
            to_running: Duration::ZERO,
            to_ssh: Duration::ZERO,
        });
    }
    let running = wait_state(api, &id, "running", "run", timeout).await?;
    // EC2 keeps an Elastic IP on a stopped instance; should the running
    // instance show another address all the same, associate it again.
    if let Some(a) = &elastic_ip
        && a.instance_id.as_deref() == Some(id.as_str())
        && running.public_ip.as_deref() != Some(a.public_ip.as_str())
    {
        api.associate_address(&a.allocation_id, &id).await?;
        log(format!("associated Elastic IP {} with {id} again", a.public_ip));
    }
    let left = timeout.saturating_sub(began.elapsed());
    let SshReady { instance, to_running, to_ssh } =
        wait_for_ssh(api, &id, elastic_ip.as_ref(), ssh_addr_override, left, &mut log).await?;
    Ok(StartReport { name: name.to_owned(), instance, already_running, elastic_ip, to_running, to_ssh })
}
