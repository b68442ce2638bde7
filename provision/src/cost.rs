//! What a server costs, as an estimate: the instance (on-demand from AWS's
//! Price List API, or spot from EC2's DescribeSpotPriceHistory), the root
//! volume by size and type with any gp3 throughput and IOPS above the
//! baseline, and its public IPv4 address (AWS charges each one by the hour,
//! an Elastic IP's too). Where the price list cannot be read (no network,
//! no `pricing:GetProducts` permission, a dry run), a price table shipped
//! with the tool, dated, answers instead, and the estimate says so.

use serde_json::Value;

use crate::api::{Ec2Api, PriceListApi};

/// When the table's prices were read from AWS's price list (us-east-1,
/// Linux, on-demand); other regions differ by a few percent.
pub const PRICES_OF: &str = "2026-11, us-east-1";
/// AWS bills a month as 730 hours.
pub const HOURS_A_MONTH: f64 = 730.0;
/// USD an hour for a public IPv4 address, in use or idle.
pub const PUBLIC_IPV4_HOURLY: f64 = 0.005;

/// On-demand Linux, USD an hour, for the types an IMAGE server runs on.
const ON_DEMAND: &[(&str, f64)] = &[
    ("g4dn.xlarge", 0.526),
    ("g4dn.2xlarge", 0.752),
    ("g5.xlarge", 1.006),
    ("g5.2xlarge", 1.212),
    ("g5.4xlarge", 1.624),
    ("g5.8xlarge", 2.448),
    ("g5.12xlarge", 5.672),
    ("g5.16xlarge", 4.096),
    ("g5.24xlarge", 8.144),
    ("g5.48xlarge", 16.288),
    ("g6.xlarge", 0.8048),
    ("g6.2xlarge", 0.9776),
    ("g6e.xlarge", 1.861),
    ("g6e.2xlarge", 2.242),
    ("p4d.24xlarge", 21.958),
];

/// EBS, USD a GB-month, by volume type.
const VOLUME_GB_MONTH: &[(&str, f64)] =
    &[("gp3", 0.08), ("gp2", 0.10), ("io1", 0.125), ("io2", 0.125), ("st1", 0.045), ("sc1", 0.015), ("standard", 0.05)];
/// gp3 above its baseline: USD a MiB/s-month over 125, an IOPS-month over 3000.
const GP3_THROUGHPUT_MONTH: f64 = 0.04;
const GP3_IOPS_MONTH: f64 = 0.005;

/// The instance's on-demand price from the table.
pub fn on_demand_hourly(instance_type: &str) -> Option<f64> {
    ON_DEMAND.iter().find(|(t, _)| *t == instance_type).map(|(_, p)| *p)
}

/// The root volume's monthly price.
pub fn volume_monthly(volume_type: &str, size_gib: i32, throughput: Option<i32>, iops: Option<i32>) -> Option<f64> {
    let per_gb = VOLUME_GB_MONTH.iter().find(|(t, _)| *t == volume_type).map(|(_, p)| *p)?;
    let mut month = per_gb * f64::from(size_gib);
    if volume_type == "gp3" {
        month += GP3_THROUGHPUT_MONTH * f64::from((throughput.unwrap_or(125) - 125).max(0));
        month += GP3_IOPS_MONTH * f64::from((iops.unwrap_or(3000) - 3000).max(0));
    }
    Some(month)
}

/// Where an on-demand price came from.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// AWS's Price List API, asked now.
    PriceList,
    /// The table shipped with the tool ([`PRICES_OF`]).
    Table,
}

/// Where the instance's price came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstancePrice {
    OnDemand {
        hourly: f64,
        source: Source,
    },
    /// The lowest current spot price EC2 reported for the type.
    Spot {
        hourly: f64,
    },
    /// Neither known (a type outside the table and the price list unread).
    Unknown,
}

/// What is being priced.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub instance_type: &'a str,
    pub spot: bool,
    pub volume_type: &'a str,
    pub size_gib: i32,
    pub throughput: Option<i32>,
    pub iops: Option<i32>,
}

/// What AWS answered for an estimate (None where it did not).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quotes {
    pub spot_hourly: Option<f64>,
    /// The price list's on-demand price an hour.
    pub listed_hourly: Option<f64>,
    /// The price list's price a GB-month of the volume type.
    pub listed_gb_month: Option<f64>,
    /// The region the price list was asked about.
    pub region: String,
    /// Why the price list gave no price, when it gave none.
    pub unlisted: Option<String>,
}

/// The whole estimate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub instance_type: String,
    pub instance: InstancePrice,
    pub volume_monthly: Option<f64>,
    pub volume_source: Source,
    pub public_ipv4_hourly: f64,
    /// All of it, when every part is known.
    pub hourly: Option<f64>,
    pub monthly: Option<f64>,
    /// Said with every figure: where the prices came from, and that they are
    /// not a bill.
    pub basis: String,
}

impl Estimate {
    pub fn new(asked: &Asked, quotes: &Quotes) -> Estimate {
        let instance = match (quotes.spot_hourly, quotes.listed_hourly, on_demand_hourly(asked.instance_type)) {
            (Some(hourly), _, _) => InstancePrice::Spot { hourly },
            (None, Some(hourly), _) => InstancePrice::OnDemand { hourly, source: Source::PriceList },
            (None, None, Some(hourly)) => InstancePrice::OnDemand { hourly, source: Source::Table },
            (None, None, None) => InstancePrice::Unknown,
        };
        let (volume_monthly, volume_source) = match quotes.listed_gb_month {
            Some(per_gb) => (Some(per_gb * f64::from(asked.size_gib) + above_baseline(asked)), Source::PriceList),
            None => (volume_monthly(asked.volume_type, asked.size_gib, asked.throughput, asked.iops), Source::Table),
        };
        let instance_hourly = match instance {
            InstancePrice::OnDemand { hourly, .. } | InstancePrice::Spot { hourly } => Some(hourly),
            InstancePrice::Unknown => None,
        };
        let hourly = instance_hourly.zip(volume_monthly).map(|(i, v)| i + v / HOURS_A_MONTH + PUBLIC_IPV4_HOURLY);
        let mut listed = Vec::new();
        if matches!(instance, InstancePrice::OnDemand { source: Source::PriceList, .. }) {
            listed.push("the instance");
        }
        if volume_source == Source::PriceList {
            listed.push("the volume");
        }
        let basis = if listed.is_empty() {
            let why = quotes.unlisted.as_deref().unwrap_or("not asked");
            format!(
                "an estimate: AWS list prices of {PRICES_OF} shipped with the tool (AWS's price list: {why}), \
                 spot from EC2 when asked; taxes and data transfer not included"
            )
        } else {
            format!(
                "an estimate: {} from AWS's price list for {} now, the rest from list prices of {PRICES_OF}; \
                 taxes and data transfer not included",
                listed.join(" and "),
                quotes.region
            )
        };
        Estimate {
            instance_type: asked.instance_type.to_string(),
            instance,
            volume_monthly,
            volume_source,
            public_ipv4_hourly: PUBLIC_IPV4_HOURLY,
            hourly,
            monthly: hourly.map(|h| h * HOURS_A_MONTH),
            basis,
        }
    }

    /// One line for a person.
    pub fn line(&self) -> String {
        let instance = match &self.instance {
            InstancePrice::OnDemand { hourly, .. } => format!("{} on-demand ${hourly:.3}/h", self.instance_type),
            InstancePrice::Spot { hourly } => format!("{} spot ${hourly:.3}/h (now)", self.instance_type),
            InstancePrice::Unknown => format!("{} (price not known here)", self.instance_type),
        };
        let volume = self.volume_monthly.map(|v| format!("volume ${v:.2}/month")).unwrap_or("volume ?".into());
        let total = match (self.hourly, self.monthly) {
            (Some(h), Some(m)) => format!("about ${h:.2}/h, ${m:.0}/month"),
            _ => "total not known".into(),
        };
        format!("{total} ({instance}; {volume}; public IPv4 ${PUBLIC_IPV4_HOURLY:.3}/h; {})", self.basis)
    }
}

/// gp3's provisioned throughput and IOPS above its baseline, a month (from
/// the table: the price list prices them as separate products).
fn above_baseline(asked: &Asked) -> f64 {
    gp3_extra(asked.volume_type, asked.throughput, asked.iops)
}

fn gp3_extra(volume_type: &str, throughput: Option<i32>, iops: Option<i32>) -> f64 {
    if volume_type != "gp3" {
        return 0.0;
    }
    GP3_THROUGHPUT_MONTH * f64::from((throughput.unwrap_or(125) - 125).max(0))
        + GP3_IOPS_MONTH * f64::from((iops.unwrap_or(3000) - 3000).max(0))
}

/// What a stopped server still costs: no instance hours, but its EBS
/// volumes by the GB-month and its public IPv4 addresses (its Elastic IPs:
/// AWS bills an address by the hour whether or not its instance runs).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WhileStopped {
    /// All its volumes, a month; None when a volume's type has no price here.
    pub volume_monthly: Option<f64>,
    pub volume_source: Source,
    /// How many public IPv4 addresses it keeps (Elastic IPs).
    pub public_ipv4: usize,
    pub public_ipv4_hourly: f64,
    /// All of it, an hour.
    pub hourly: Option<f64>,
}

/// What the `volumes` and `public_ipv4` addresses of a stopped server cost,
/// each volume type at its price-list price a GB-month (`listed`) when
/// known, else the table's.
pub fn while_stopped(
    volumes: &[crate::api::Volume],
    listed: &std::collections::BTreeMap<String, f64>,
    public_ipv4: usize,
) -> WhileStopped {
    let mut all_listed = !volumes.is_empty();
    let monthly: Option<f64> = volumes
        .iter()
        .map(|v| {
            let extra = gp3_extra(&v.volume_type, v.throughput_mibps, v.iops);
            match listed.get(&v.volume_type) {
                Some(per_gb) => Some(per_gb * f64::from(v.size_gib) + extra),
                None => {
                    all_listed = false;
                    volume_monthly(&v.volume_type, v.size_gib, v.throughput_mibps, v.iops)
                }
            }
        })
        .sum();
    let addresses = PUBLIC_IPV4_HOURLY * public_ipv4 as f64;
    WhileStopped {
        volume_monthly: monthly,
        volume_source: if all_listed { Source::PriceList } else { Source::Table },
        public_ipv4,
        public_ipv4_hourly: addresses,
        hourly: monthly.map(|m| m / HOURS_A_MONTH + addresses),
    }
}

/// The price-list filters for a Linux, shared-tenancy, on-demand instance
/// of this type in this region, with no software licensed in.
fn instance_filters<'a>(instance_type: &'a str, region: &'a str) -> [(&'static str, &'a str); 6] {
    [
        ("instanceType", instance_type),
        ("regionCode", region),
        ("operatingSystem", "Linux"),
        ("tenancy", "Shared"),
        ("preInstalledSw", "NA"),
        ("capacitystatus", "Used"),
    ]
}

/// The lowest positive on-demand USD price, per `unit`, in price-list
/// documents whose product attributes hold `attribute`; None when no
/// document has one (or none parses).
fn lowest_on_demand(documents: &[String], attribute: (&str, &str), unit: &str) -> Option<f64> {
    documents
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|d| d["product"]["attributes"][attribute.0] == attribute.1)
        .flat_map(|d| {
            let terms = d["terms"]["OnDemand"].as_object().cloned().unwrap_or_default();
            terms.into_iter().flat_map(|(_, term)| {
                let dims = term["priceDimensions"].as_object().cloned().unwrap_or_default();
                dims.into_iter().map(|(_, dim)| dim)
            })
        })
        .filter(|dim| dim["unit"] == unit)
        .filter_map(|dim| dim["pricePerUnit"]["USD"].as_str()?.parse::<f64>().ok())
        .filter(|p| *p > 0.0)
        .min_by(f64::total_cmp)
}

/// Why a price-list look-up gave no price, in a few words.
fn why(e: &crate::Error) -> String {
    match e {
        crate::Error::Aws(a) => a.code.clone().unwrap_or_else(|| a.message.clone()),
        other => other.to_string(),
    }
}

/// The instance's on-demand price from AWS's price list (None: no product
/// matched), or why the list could not be read.
pub async fn listed_hourly<A: PriceListApi>(
    api: &A,
    region: &str,
    instance_type: &str,
) -> std::result::Result<Option<f64>, String> {
    let docs = api.products("AmazonEC2", &instance_filters(instance_type, region)).await.map_err(|e| why(&e))?;
    Ok(lowest_on_demand(&docs, ("instanceType", instance_type), "Hrs"))
}

/// A volume type's price a GB-month from AWS's price list, like
/// [`listed_hourly`].
pub async fn listed_gb_month<A: PriceListApi>(
    api: &A,
    region: &str,
    volume_type: &str,
) -> std::result::Result<Option<f64>, String> {
    let filters = [("productFamily", "Storage"), ("volumeApiName", volume_type), ("regionCode", region)];
    let docs = api.products("AmazonEC2", &filters).await.map_err(|e| why(&e))?;
    Ok(lowest_on_demand(&docs, ("volumeApiName", volume_type), "GB-Mo"))
}

/// The estimate for a launch in `region`: the instance and volume from AWS's
/// price list where it answers, the table otherwise; with `spot`, EC2's
/// current spot price for the type (the on-demand price is the ceiling a
/// spot instance pays, so it stands in when EC2 gives none).
pub async fn estimate<A: Ec2Api + PriceListApi>(api: &A, region: &str, asked: &Asked<'_>) -> Estimate {
    let mut quotes = Quotes { region: region.to_owned(), ..Quotes::default() };
    if asked.spot {
        quotes.spot_hourly = api.spot_price(asked.instance_type).await.ok().flatten();
    }
    let mut readable = true;
    if quotes.spot_hourly.is_none() {
        match listed_hourly(api, region, asked.instance_type).await {
            Ok(Some(p)) => quotes.listed_hourly = Some(p),
            Ok(None) => quotes.unlisted = Some(format!("no price for {} in {region}", asked.instance_type)),
            Err(why) => (quotes.unlisted, readable) = (Some(why), false),
        }
    }
    // A list that could not be read once is not asked again: each try may
    // wait for its time limit.
    if readable {
        match listed_gb_month(api, region, asked.volume_type).await {
            Ok(Some(p)) => quotes.listed_gb_month = Some(p),
            Ok(None) => {
                quotes.unlisted.get_or_insert(format!("no price for {} volumes in {region}", asked.volume_type));
            }
            Err(why) => quotes.unlisted = Some(why),
        }
    }
    if api.is_dry_run() {
        quotes.unlisted = Some("not asked in a dry run".into());
    }
    Estimate::new(asked, &quotes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stopped g5.xlarge's default 1000 GiB gp3 and its Elastic IP: the
    /// volume by the GB-month, the address by the hour; listed prices win.
    #[test]
    fn a_stopped_server_costs_its_volumes_and_its_addresses() {
        let gp3 = |size_gib, throughput_mibps| crate::api::Volume {
            id: "vol-1".into(),
            size_gib,
            volume_type: "gp3".into(),
            iops: Some(3000),
            throughput_mibps,
        };
        let none = Default::default();
        let c = while_stopped(&[gp3(1000, Some(125))], &none, 1);
        assert_eq!((c.volume_monthly, c.volume_source, c.public_ipv4), (Some(80.0), Source::Table, 1));
        assert!((c.hourly.unwrap() - (80.0 / 730.0 + 0.005)).abs() < 1e-9, "{c:?}");
        // No Elastic IP: a stopped instance has no public address to pay for.
        let c = while_stopped(&[gp3(100, Some(250))], &none, 0);
        assert!((c.volume_monthly.unwrap() - (8.0 + 125.0 * 0.04)).abs() < 1e-9, "{c:?}");
        assert_eq!(c.public_ipv4_hourly, 0.0);
        let listed = [("gp3".to_string(), 0.1)].into_iter().collect();
        let c = while_stopped(&[gp3(1000, None)], &listed, 2);
        assert_eq!((c.volume_monthly, c.volume_source), (Some(100.0), Source::PriceList));
        assert!((c.hourly.unwrap() - (100.0 / 730.0 + 0.01)).abs() < 1e-9, "{c:?}");
        let odd = crate::api::Volume { volume_type: "io9".into(), ..gp3(10, None) };
        assert_eq!(while_stopped(&[odd], &none, 0).hourly, None);
    }

    fn asked(instance_type: &str) -> Asked<'_> {
        Asked { instance_type, spot: false, volume_type: "gp3", size_gib: 1000, throughput: None, iops: None }
    }

    fn table_only() -> Quotes {
        Quotes { region: "us-east-1".into(), unlisted: Some("AccessDeniedException".into()), ..Quotes::default() }
    }

    /// A g5.xlarge with the default 1000 GiB gp3 and its public address,
    /// from the table; gp3 above its baseline; spot; a type outside the table.
    #[test]
    fn the_estimate_adds_instance_volume_and_address() {
        let e = Estimate::new(&asked("g5.xlarge"), &table_only());
        assert_eq!(e.volume_monthly, Some(80.0));
        let h = e.hourly.unwrap();
        assert!((h - (1.006 + 80.0 / 730.0 + 0.005)).abs() < 1e-9, "{h}");
        assert!((e.monthly.unwrap() - h * 730.0).abs() < 1e-9);
        assert!(
            e.line().starts_with("about $1.12/h, $818/month (g5.xlarge on-demand $1.006/h; volume $80.00/month"),
            "{}",
            e.line()
        );
        assert!(
            e.line().contains("an estimate: AWS list prices of 2026-11, us-east-1 shipped with the tool (AWS's price list: AccessDeniedException)"),
            "{}",
            e.line()
        );
        let fast =
            Estimate::new(&Asked { throughput: Some(500), iops: Some(6000), ..asked("g5.xlarge") }, &table_only());
        assert_eq!(fast.volume_monthly, Some(80.0 + 375.0 * 0.04 + 3000.0 * 0.005));
        let spot = Estimate::new(&asked("g5.xlarge"), &Quotes { spot_hourly: Some(0.4021), ..table_only() });
        assert_eq!(spot.instance, InstancePrice::Spot { hourly: 0.4021 });
        assert!(spot.line().contains("spot $0.402/h"), "{}", spot.line());
        let odd = Estimate::new(&asked("x9.huge"), &table_only());
        assert_eq!((odd.instance.clone(), odd.hourly), (InstancePrice::Unknown, None));
        assert!(odd.line().starts_with("total not known"), "{}", odd.line());
    }

    /// The recorded GetProducts answers (tests/fixtures/price-list): the
    /// on-demand term's price, not the reserved one's; a document for
    /// another type is not taken; the volume's GB-month; gp3's extras from
    /// the table on top; the basis says where each came from.
    #[test]
    fn price_list_documents_give_the_on_demand_price() {
        let docs = |text: &str| -> Vec<String> {
            let v: Value = serde_json::from_str(text).unwrap();
            v["PriceList"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_owned()).collect()
        };
        let instance = docs(include_str!("../../tests/fixtures/price-list/g5.xlarge-us-east-1.json"));
        let storage = docs(include_str!("../../tests/fixtures/price-list/gp3-us-east-1.json"));
        assert_eq!(lowest_on_demand(&instance, ("instanceType", "g5.xlarge"), "Hrs"), Some(1.1111));
        assert_eq!(lowest_on_demand(&instance, ("instanceType", "g5.2xlarge"), "Hrs"), None);
        assert_eq!(lowest_on_demand(&instance, ("instanceType", "g5.xlarge"), "GB-Mo"), None);
        assert_eq!(lowest_on_demand(&storage, ("volumeApiName", "gp3"), "GB-Mo"), Some(0.0888));
        assert_eq!(lowest_on_demand(&["not json".into()], ("instanceType", "g5.xlarge"), "Hrs"), None);

        let quotes = Quotes {
            listed_hourly: Some(1.1111),
            listed_gb_month: Some(0.0888),
            region: "us-east-1".into(),
            ..Quotes::default()
        };
        let e = Estimate::new(&Asked { throughput: Some(250), ..asked("g5.xlarge") }, &quotes);
        assert_eq!(e.instance, InstancePrice::OnDemand { hourly: 1.1111, source: Source::PriceList });
        assert_eq!(e.volume_source, Source::PriceList);
        assert!((e.volume_monthly.unwrap() - (88.8 + 125.0 * 0.04)).abs() < 1e-9, "{:?}", e.volume_monthly);
        assert!(
            e.line().contains("the instance and the volume from AWS's price list for us-east-1 now"),
            "{}",
            e.line()
        );
        let instance_only = Estimate::new(&asked("g5.xlarge"), &Quotes { listed_gb_month: None, ..quotes });
        assert_eq!(instance_only.volume_source, Source::Table);
        assert!(instance_only.line().contains("the instance from AWS's price list"), "{}", instance_only.line());
    }
}
