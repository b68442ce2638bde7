//! What a server costs, as an estimate: the instance (on-demand from a
//! price table shipped with the tool, or spot from EC2's
//! DescribeSpotPriceHistory), the root volume by size and type with any
//! gp3 throughput and IOPS above the baseline, and its public IPv4 address
//! (AWS charges each one by the hour, an Elastic IP's too).

use crate::Result;
use crate::api::Ec2Api;

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

/// Where the instance's price came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstancePrice {
    /// The shipped table's on-demand price.
    OnDemand { hourly: f64 },
    /// The lowest current spot price EC2 reported for the type.
    Spot { hourly: f64 },
    /// Neither known (a type outside the table).
    Unknown,
}

/// The whole estimate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub instance_type: String,
    pub instance: InstancePrice,
    pub volume_monthly: Option<f64>,
    pub public_ipv4_hourly: f64,
    /// All of it, when every part is known.
    pub hourly: Option<f64>,
    pub monthly: Option<f64>,
    /// Said with every figure: these are not a bill.
    pub basis: String,
}

impl Estimate {
    pub fn new(
        instance_type: &str,
        spot_hourly: Option<f64>,
        volume_type: &str,
        size_gib: i32,
        throughput: Option<i32>,
        iops: Option<i32>,
    ) -> Estimate {
        let instance = match (spot_hourly, on_demand_hourly(instance_type)) {
            (Some(hourly), _) => InstancePrice::Spot { hourly },
            (None, Some(hourly)) => InstancePrice::OnDemand { hourly },
            (None, None) => InstancePrice::Unknown,
        };
        let volume_monthly = volume_monthly(volume_type, size_gib, throughput, iops);
        let instance_hourly = match instance {
            InstancePrice::OnDemand { hourly } | InstancePrice::Spot { hourly } => Some(hourly),
            InstancePrice::Unknown => None,
        };
        let hourly = instance_hourly.zip(volume_monthly).map(|(i, v)| i + v / HOURS_A_MONTH + PUBLIC_IPV4_HOURLY);
        Estimate {
            instance_type: instance_type.to_string(),
            instance,
            volume_monthly,
            public_ipv4_hourly: PUBLIC_IPV4_HOURLY,
            hourly,
            monthly: hourly.map(|h| h * HOURS_A_MONTH),
            basis: format!(
                "an estimate: AWS list prices of {PRICES_OF}, spot from EC2 when asked; taxes and data transfer not included"
            ),
        }
    }

    /// One line for a person.
    pub fn line(&self) -> String {
        let instance = match &self.instance {
            InstancePrice::OnDemand { hourly } => format!("{} on-demand ${hourly:.3}/h", self.instance_type),
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

/// The estimate for a launch: with `spot`, EC2's current spot price for
/// the type (None where it cannot be had: the table's on-demand price is
/// the ceiling a spot instance pays).
pub async fn estimate<A: Ec2Api>(
    api: &A,
    instance_type: &str,
    spot: bool,
    volume_type: &str,
    size_gib: i32,
    throughput: Option<i32>,
    iops: Option<i32>,
) -> Result<Estimate> {
    let spot_hourly = if spot { api.spot_price(instance_type).await.ok().flatten() } else { None };
    Ok(Estimate::new(instance_type, spot_hourly, volume_type, size_gib, throughput, iops))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A g5.xlarge with the default 1000 GiB gp3 and its public address;
    /// gp3 above its baseline; spot; a type outside the table.
    #[test]
    fn the_estimate_adds_instance_volume_and_address() {
        let e = Estimate::new("g5.xlarge", None, "gp3", 1000, None, None);
        assert_eq!(e.volume_monthly, Some(80.0));
        let h = e.hourly.unwrap();
        assert!((h - (1.006 + 80.0 / 730.0 + 0.005)).abs() < 1e-9, "{h}");
        assert!((e.monthly.unwrap() - h * 730.0).abs() < 1e-9);
        assert!(
            e.line().starts_with("about $1.12/h, $818/month (g5.xlarge on-demand $1.006/h; volume $80.00/month"),
            "{}",
            e.line()
        );
        assert!(e.line().contains("an estimate"), "{}", e.line());
        let fast = Estimate::new("g5.xlarge", None, "gp3", 1000, Some(500), Some(6000));
        assert_eq!(fast.volume_monthly, Some(80.0 + 375.0 * 0.04 + 3000.0 * 0.005));
        let spot = Estimate::new("g5.xlarge", Some(0.4021), "gp3", 1000, None, None);
        assert_eq!(spot.instance, InstancePrice::Spot { hourly: 0.4021 });
        assert!(spot.line().contains("spot $0.402/h"), "{}", spot.line());
        let odd = Estimate::new("x9.huge", None, "gp3", 100, None, None);
        assert_eq!((odd.instance.clone(), odd.hourly), (InstancePrice::Unknown, None));
        assert!(odd.line().starts_with("total not known"), "{}", odd.line());
    }
}
