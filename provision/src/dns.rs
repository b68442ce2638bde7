//! The server's name in Route 53: an A (and AAAA) record for DOMAIN in the
//! public hosted zone that holds it, with an ownership TXT record beside it
//! so that destroy removes only what was made for this server.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::api::*;
use crate::poll::poll_until;
use crate::{Error, Result, tags};

/// How long resolvers may keep the records: short, because a name whose
/// server was destroyed may soon point at another.
pub const RECORD_TTL: i64 = 60;

/// Route 53 usually reaches every name server within a minute.
const IN_SYNC_TIMEOUT: Duration = Duration::from_secs(300);

/// `name` fully qualified, as Route 53 writes names: lowercase, final dot.
pub fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.').to_ascii_lowercase())
}

/// Whether two host names are the same, whatever their case and final dot.
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.').eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// The public hosted zone that holds `domain`: of the zones named `domain`
/// or one of its parent domains, the longest (a zone for a parent loses to
/// one delegated below it). Private zones are ignored: they answer only
/// inside their VPCs, not to the browsers and the certificate authority that
/// look the name up.
pub fn zone_for<'a>(domain: &str, zones: &'a [HostedZone]) -> Option<&'a HostedZone> {
    let domain = fqdn(domain);
    zones
        .iter()
        .filter(|z| !z.private)
        .filter(|z| {
            let zone = fqdn(&z.name);
            domain == zone || domain.ends_with(&format!(".{zone}"))
        })
        .max_by_key(|z| fqdn(&z.name).len())
}

/// One record set as a line: `srv.example.org. A 203.0.113.7`, or
/// `web.example.org. A alias web-1.elb.amazonaws.com.`.
pub fn describe(record: &RecordSet) -> String {
    match &record.alias {
        Some(a) => format!("{} {} alias {}", record.name, record.kind, a.dns_name),
        None => format!("{} {} {}", record.name, record.kind, record.values.join(" ")),
    }
}

/// What [`publish`] did.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DnsOutcome {
    /// The records are in the zone and every Route 53 name server has them.
    Published { zone: String, zone_id: String, records: Vec<RecordSet>, changed: bool },
    /// No public hosted zone of the account holds DOMAIN: these records are
    /// to be made by hand, wherever DOMAIN's DNS is served.
    NoZone { records: Vec<RecordSet> },
    /// DOMAIN has records that were not made for this server: left as they are.
    LeftAlone { zone: String, existing: Vec<RecordSet>, wanted: Vec<RecordSet> },
}

/// The address records DOMAIN should have for the server.
fn address_records(domain: &str, ipv4: &str, ipv6: Option<&str>) -> Vec<RecordSet> {
    let record = |kind: &str, value: &str| RecordSet {
        name: fqdn(domain),
        kind: kind.into(),
        ttl: Some(RECORD_TTL),
        values: vec![value.to_owned()],
        alias: None,
    };
    let mut records = vec![record("A", ipv4)];
    records.extend(ipv6.map(|v6| record("AAAA", v6)));
    records
}

/// Who DOMAIN's records are made for: a server, or a fleet (its balancer's
/// alias, its certificate's validation record). The ownership record names
/// it, with the account and the region.
#[derive(Debug, Clone, Copy)]
pub enum Owner<'a> {
    Server(&'a str),
    Fleet(&'a str),
}

impl std::fmt::Display for Owner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Server(name) => write!(f, "{name}"),
            Owner::Fleet(name) => write!(f, "fleet {name}"),
        }
    }
}

impl Owner<'_> {
    /// The ownership value written now.
    async fn value<A: Ec2Api>(&self, api: &A) -> Result<String> {
        let (account, region) = (api.account_id().await?, api.region());
        Ok(match self {
            Owner::Server(name) => tags::ownership_value(name, &account, &region),
            Owner::Fleet(name) => tags::fleet_ownership_value(name, &account, &region),
        })
    }

    /// Every value read as this owner's: a server's from before the
    /// account and region were written too.
    async fn values<A: Ec2Api>(&self, api: &A) -> Result<Vec<String>> {
        let mut values = vec![self.value(api).await?];
        if let Owner::Server(name) = self {
            values.push(tags::legacy_ownership_value(name));
        }
        Ok(values)
    }
}

/// What a zone holds at DOMAIN, and whether it was made for the owner.
struct Current {
    /// A, AAAA and CNAME record sets at DOMAIN.
    at_domain: Vec<RecordSet>,
    /// The ownership TXT record, if any.
    ownership: Option<RecordSet>,
    owned: bool,
}

async fn current<A: Ec2Api + Route53Api>(
    api: &A,
    zone: &HostedZone,
    owner: Owner<'_>,
    domain: &str,
) -> Result<Current> {
    let at_domain: Vec<RecordSet> = api
        .record_sets(&zone.id, &fqdn(domain))
        .await?
        .into_iter()
        .filter(|r| matches!(r.kind.as_str(), "A" | "AAAA" | "CNAME"))
        .collect();
    let ownership = api
        .record_sets(&zone.id, &fqdn(&tags::ownership_record_name(domain)))
        .await?
        .into_iter()
        .find(|r| r.kind == "TXT");
    let ours = owner.values(api).await?;
    let owned = ownership.as_ref().is_some_and(|r| r.values.iter().any(|v| ours.contains(v)));
    Ok(Current { at_domain, ownership, owned })
}

async fn find_zone<A: Ec2Api + Route53Api>(api: &A, domain: &str) -> Result<Option<HostedZone>> {
    let zones = api.hosted_zones().await?;
    // A dry run's one zone is a placeholder for the zone a real run would find.
    Ok(if api.is_dry_run() { zones.into_iter().next() } else { zone_for(domain, &zones).cloned() })
}

/// Point DOMAIN at the server's addresses (`ipv4`, and `ipv6` when it has
/// one) in the public hosted zone that holds DOMAIN, with the ownership TXT
/// record, in one change batch, and wait until Route 53 has it everywhere.
/// Records of DOMAIN made for anything else are left alone; so is a name no
/// zone of the account holds (the outcome says what to create by hand).
pub async fn publish<A: Ec2Api + Route53Api>(
    api: &A,
    server: &str,
    domain: &str,
    ipv4: &str,
    ipv6: Option<&str>,
    log: impl FnMut(String),
) -> Result<DnsOutcome> {
    publish_records(api, Owner::Server(server), domain, address_records(domain, ipv4, ipv6), log).await
}

/// Give DOMAIN the `wanted` record sets (at DOMAIN itself: A, AAAA, an
/// alias or a CNAME), made for `owner`, as [`publish`] does for a server.
pub async fn publish_records<A: Ec2Api + Route53Api>(
    api: &A,
    owner: Owner<'_>,
    domain: &str,
    wanted: Vec<RecordSet>,
    mut log: impl FnMut(String),
) -> Result<DnsOutcome> {
    let Some(zone) = find_zone(api, domain).await? else {
        let by_hand: Vec<String> = wanted.iter().map(describe).collect();
        log(format!("no Route 53 zone of this account holds {domain}: create by hand {}", by_hand.join(", ")));
        return Ok(DnsOutcome::NoZone { records: wanted });
    };
    let now = current(api, &zone, owner, domain).await?;
    if !now.at_domain.is_empty() && !now.owned {
        let theirs: Vec<String> = now.at_domain.iter().map(describe).collect();
        let want: Vec<String> = wanted.iter().map(describe).collect();
        log(format!(
            "{domain} already has records not made for {owner} ({}): left alone; make {} by hand",
            theirs.join(", "),
            want.join(", ")
        ));
        return Ok(DnsOutcome::LeftAlone { zone: zone.name, existing: now.at_domain, wanted });
    }
    let ownership = RecordSet {
        name: fqdn(&tags::ownership_record_name(domain)),
        kind: "TXT".into(),
        ttl: Some(RECORD_TTL),
        values: vec![owner.value(api).await?],
        alias: None,
    };
    let mut changes: Vec<RecordChange> = wanted
        .iter()
        .chain([&ownership])
        .filter(|r| !now.at_domain.contains(r) && now.ownership.as_ref() != Some(*r))
        .map(|r| RecordChange { action: ChangeAction::Upsert, record: r.clone() })
        .collect();
    // A record this owner no longer wants (an AAAA once the server lost IPv6).
    changes.extend(
        now.at_domain
            .iter()
            .filter(|r| !wanted.iter().any(|w| w.kind == r.kind))
            .map(|r| RecordChange { action: ChangeAction::Delete, record: r.clone() }),
    );
    let records: Vec<String> = wanted.iter().map(describe).collect();
    if changes.is_empty() {
        log(format!("DNS: {} already in zone {}", records.join(", "), zone.name));
        return Ok(DnsOutcome::Published { zone: zone.name, zone_id: zone.id, records: wanted, changed: false });
    }
    let started = Instant::now();
    let change_id = api.change_record_sets(&zone.id, &format!("image-provision: {owner}"), &changes).await?;
    wait_in_sync(api, &change_id).await?;
    log(format!(
        "DNS: {} in zone {}, on every Route 53 name server after {:.1}s",
        records.join(", "),
        zone.name,
        started.elapsed().as_secs_f64()
    ));
    Ok(DnsOutcome::Published { zone: zone.name, zone_id: zone.id, records: wanted, changed: true })
}

/// What [`remove`] did, each record set as a line ([`describe`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DnsRemoval {
    pub deleted: Vec<String>,
    /// Records of DOMAIN not made for this server.
    pub left_alone: Vec<String>,
}

/// Delete DOMAIN's address records and its ownership record, only if the
/// ownership record names server `server`; anything else at DOMAIN is left
/// alone and reported.
pub async fn remove<A: Ec2Api + Route53Api>(
    api: &A,
    server: &str,
    domain: &str,
    log: impl FnMut(String),
) -> Result<DnsRemoval> {
    remove_owned(api, Owner::Server(server), domain, log).await
}

/// [`remove`], for any owner.
pub async fn remove_owned<A: Ec2Api + Route53Api>(
    api: &A,
    owner: Owner<'_>,
    domain: &str,
    mut log: impl FnMut(String),
) -> Result<DnsRemoval> {
    let mut removal = DnsRemoval::default();
    let Some(zone) = find_zone(api, domain).await? else {
        log(format!("no Route 53 zone of this account holds {domain}: no DNS record to delete"));
        return Ok(removal);
    };
    let now = current(api, &zone, owner, domain).await?;
    if !now.owned {
        removal.left_alone = now.at_domain.iter().map(describe).collect();
        if !removal.left_alone.is_empty() {
            log(format!(
                "left alone, not made for {owner}: {} (no ownership record names it)",
                removal.left_alone.join(", ")
            ));
        }
        return Ok(removal);
    }
    let doomed: Vec<RecordSet> = now.at_domain.into_iter().chain(now.ownership).collect();
    let changes: Vec<RecordChange> =
        doomed.iter().map(|r| RecordChange { action: ChangeAction::Delete, record: r.clone() }).collect();
    let change_id = api.change_record_sets(&zone.id, &format!("image-provision: destroy {owner}"), &changes).await?;
    wait_in_sync(api, &change_id).await?;
    removal.deleted = doomed.iter().map(describe).collect();
    log(format!("deleted DNS records {}", removal.deleted.join(", ")));
    Ok(removal)
}

/// Poll GetChange until the change is INSYNC.
async fn wait_in_sync<A: Route53Api>(api: &A, change_id: &str) -> Result<()> {
    let look = || async { Ok(if api.change_in_sync(change_id).await? { Ok(()) } else { Err("PENDING".to_owned()) }) };
    poll_until(IN_SYNC_TIMEOUT, look, |waited_secs, _| Error::DnsNotInSync {
        change_id: change_id.to_owned(),
        waited_secs,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str, private: bool) -> HostedZone {
        HostedZone { id: format!("/hostedzone/{name}{private}"), name: name.into(), private }
    }

    #[test]
    fn the_longest_public_zone_holding_the_name_wins() {
        let zones = vec![
            zone("example.org.", false),
            zone("lab.example.org.", true),
            zone("lab.example.org.", false),
            zone("ample.org.", false),
            zone("b.lab.example.org.", false),
        ];
        let found = zone_for("srv.lab.example.org", &zones).unwrap();
        assert_eq!((found.name.as_str(), found.private), ("lab.example.org.", false));
        assert_eq!(zone_for("SRV.Lab.Example.org.", &zones).unwrap().name, "lab.example.org.");
        assert_eq!(zone_for("lab.example.org", &zones).unwrap().name, "lab.example.org.", "the zone's apex");
        assert_eq!(zone_for("www.example.org", &zones).unwrap().name, "example.org.");
        assert!(zone_for("srv.example.com", &zones).is_none());
        assert!(zone_for("notexample.org", &[zone("example.org.", false)]).is_none(), "labels, not characters");
        assert!(zone_for("srv.lab.example.org", &[zone("lab.example.org.", true)]).is_none(), "private only");
    }

    #[test]
    fn an_aaaa_record_only_with_an_ipv6_address() {
        let kinds =
            |v6| address_records("srv.example.org", "203.0.113.7", v6).into_iter().map(|r| r.kind).collect::<Vec<_>>();
        assert_eq!(kinds(None), ["A"]);
        assert_eq!(kinds(Some("2001:db8::7")), ["A", "AAAA"]);
        assert_eq!(address_records("Srv.example.org", "203.0.113.7", None)[0].name, "srv.example.org.");
    }
}
