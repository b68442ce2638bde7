use std::time::Duration;

/// Canonical's AWS account: the only owner whose Ubuntu images we trust.
pub const CANONICAL_OWNER: &str = "099720109477";
/// AWS's Deep Learning AMIs' account (owner alias "amazon").
pub const DLAMI_OWNER: &str = "898082745236";

/// Which image family a server starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseImage {
    /// Canonical's Ubuntu server image: the host steps install everything.
    Ubuntu,
    /// AWS's Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu): its
    /// NVIDIA driver, Docker and container toolkit come installed, so the
    /// host steps skip the driver install and its reboot.
    Dlami,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UbuntuRelease {
    Jammy2204,
    Noble2404,
}

impl UbuntuRelease {
    /// The AMI name glob. Anchored at the family prefix: other Canonical
    /// families (ubuntu-eks, ubuntu-pro, minimal) mention jammy too.
    pub fn image_pattern(self) -> &'static str {
        match self {
            UbuntuRelease::Jammy2204 => "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*",
            UbuntuRelease::Noble2404 => "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*",
        }
    }

    /// The Deep Learning Base AMI's name glob for this release.
    pub fn dlami_pattern(self) -> &'static str {
        match self {
            UbuntuRelease::Jammy2204 => "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *",
            UbuntuRelease::Noble2404 => "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 24.04) *",
        }
    }

    /// The owner and name glob of the newest image to launch.
    pub fn image_source(self, base: BaseImage) -> (&'static str, &'static str) {
        match base {
            BaseImage::Ubuntu => (CANONICAL_OWNER, self.image_pattern()),
            BaseImage::Dlami => (DLAMI_OWNER, self.dlami_pattern()),
        }
    }

    pub fn version(self) -> &'static str {
        match self {
            UbuntuRelease::Jammy2204 => "22.04",
            UbuntuRelease::Noble2404 => "24.04",
        }
    }
}

/// Where the instance's SSH key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// The public half, in OpenSSH format, of a key the CLI holds (generated
    /// into the state directory, or the user's `--ssh-key`).
    Public(String),
}

/// Everything `ec2 create` needs, already validated by the CLI.
#[derive(Debug, Clone)]
pub struct CreateSpec {
    pub name: String,
    pub ami: Option<String>,
    pub ubuntu: UbuntuRelease,
    pub base_image: BaseImage,
    pub instance_type: String,
    pub volume_size_gib: i32,
    pub volume_type: String,
    /// gp3's throughput and IOPS; None: EBS's defaults.
    pub volume_throughput_mibps: Option<i32>,
    pub volume_iops: Option<i32>,
    /// The KMS key the root volume is encrypted with; None: the account's
    /// default EBS key. The volume is encrypted either way.
    pub kms_key_id: Option<String>,
    pub subnet: Option<String>,
    pub ssh_cidrs: Vec<String>,
    /// `ssh_cidrs` were asked for in this run (a flag or the config file),
    /// not the default: only then does a re-run change an existing group's
    /// SSH rules to them.
    pub ssh_cidrs_asked: bool,
    pub key: KeySource,
    pub spot: bool,
    pub spot_only: bool,
    /// RFC 3339 UTC time after which `destroy --expired` removes the server.
    pub expires_at: Option<String>,
    pub user_data: Option<String>,
    /// The idle stop (`--autostop`), as its tag's value: a duration (`30m`)
    /// gives one (a shutdown from inside then stops the instance, never
    /// terminates it), `off` removes it; None: as the server has it.
    pub autostop: Option<String>,
    /// Find or allocate a tagged Elastic IP, associated once the instance runs.
    pub elastic_ip: bool,
    /// The host name whose DNS records are made for the server (tagged on
    /// its instance and Elastic IP); None: no DNS records.
    pub dns_domain: Option<String>,
    /// The web UI's host name whose DNS records are made for the server
    /// too (tagged on its instance); None: none.
    pub webui_dns_domain: Option<String>,
    /// How long to wait for running + SSH banner.
    pub ready_timeout: Duration,
    /// The fleet the server serves in (tagged on its instance); None: a
    /// server of its own.
    pub fleet: Option<String>,
    /// A fleet's balancer's security group: the only source of the
    /// server's web traffic (HTTP, HTTPS); None: from anywhere.
    pub web_from_group: Option<String>,
}

/// One GPU of an instance type, with its memory as nvidia-smi reports it
/// (GiB), for the families an IMAGE server runs on; None for others. The
/// local LLM is sized to it before launch.
pub fn gpu_of(instance_type: &str) -> Option<(&'static str, f64)> {
    let family = instance_type.split('.').next()?;
    let (gpu, mib) = match family {
        "g5" => ("NVIDIA A10G", 23028.0),
        "g6" => ("NVIDIA L4", 23034.0),
        "g6e" => ("NVIDIA L40S", 46068.0),
        "g4dn" => ("NVIDIA T4", 15360.0),
        "p4d" => ("NVIDIA A100 40GB", 40960.0),
        "p4de" | "p5" => ("NVIDIA A100/H100 80GB", 81559.0),
        _ => return None,
    };
    Some((gpu, mib / 1024.0))
}
