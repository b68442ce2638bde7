//! The configuration file: read and parsed, nothing more. Its values are
//! layered under the flags, and checked, in [`crate::resolve`].

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::errors::UsageError;

pub const DEFAULT_CONFIG: &str = "image-provision.toml";

/// The whole file. Unknown keys are errors: a misspelt option silently
/// ignored is worse than a refusal.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub ec2: Ec2Config,
    /// The host steps' options, for `bootstrap` and `ec2 create` alike.
    #[serde(default)]
    pub host: HostConfig,
}

/// `[host]`: every option of the host steps, named as the flags are.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    pub no_gpu: Option<bool>,
    pub force_distro: Option<bool>,
    pub nvidia_driver: Option<String>,
    pub nvidia_repo: Option<String>,
    pub nvidia_repo_key: Option<String>,
    pub docker_repo: Option<String>,
    pub docker_repo_key: Option<String>,
    pub registry_mirror: Option<String>,
    pub reboot_timeout: Option<String>,
    pub cloud_init_timeout: Option<String>,
    pub apt_lock_timeout: Option<String>,
    pub command_timeout: Option<String>,
    pub no_stack: Option<bool>,
    pub domain: Option<String>,
    pub acme_email: Option<String>,
    pub acme_staging: Option<bool>,
    pub acme_server: Option<String>,
    pub registry_tag: Option<String>,
    pub image_profile: Option<String>,
    /// NAME = PATH, e.g. `"llm.env" = "/home/me/image/llm.env"`.
    pub env_files: Option<std::collections::BTreeMap<String, PathBuf>>,
    pub no_llm: Option<bool>,
    pub llm: Option<String>,
    pub llm_model: Option<String>,
    pub llm_timeout: Option<String>,
    pub llm_webui: Option<String>,
    pub overpass_url: Option<String>,
    pub nominatim_fallback: Option<String>,
    pub pii_logging: Option<bool>,
    pub base_dir: Option<String>,
    pub repo_url: Option<String>,
    /// A path, or "none" (see `--repo-credentials`).
    pub repo_credentials: Option<String>,
    pub repo_branch: Option<String>,
    pub no_imageup: Option<bool>,
    pub imageup_timeout: Option<String>,
    pub health_timeout: Option<String>,
    pub no_dns_check: Option<bool>,
    pub dns_timeout: Option<String>,
    pub no_start_at_boot: Option<bool>,
    pub healthcheck_every: Option<String>,
    pub auto_update: Option<String>,
    pub prune: Option<String>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Ec2Config {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub ami: Option<String>,
    pub base_image: Option<String>,
    pub ubuntu: Option<String>,
    pub instance_type: Option<String>,
    /// TOML's integers: a negative or huge one reaches the range check.
    pub volume_size: Option<i64>,
    pub volume_throughput: Option<i64>,
    pub volume_iops: Option<i64>,
    pub volume_type: Option<String>,
    pub subnet: Option<String>,
    pub kms_key: Option<String>,
    pub ssh_cidr: Option<Vec<String>>,
    pub ssh_key: Option<PathBuf>,
    pub ssh_user: Option<String>,
    pub spot: Option<bool>,
    pub spot_only: Option<bool>,
    pub ttl: Option<String>,
    pub ready_timeout: Option<String>,
    pub no_elastic_ip: Option<bool>,
    pub no_dns: Option<bool>,
}

/// Read the file named by `--config`, or ./image-provision.toml if present.
pub fn load(explicit: Option<&Path>) -> Result<(ConfigFile, Option<PathBuf>), UsageError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let p = PathBuf::from(DEFAULT_CONFIG);
            if !p.exists() {
                return Ok((ConfigFile::default(), None));
            }
            p
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        UsageError::new(format!("cannot read config file {}: {e}", path.display()))
            .hint("pass an existing file with --config, or create one from examples/image-provision.toml")
    })?;
    let file = parse(&text).map_err(|msg| {
        UsageError::new(format!("config file {}: {msg}", path.display()))
            .hint("see examples/image-provision.toml for every option and its type")
    })?;
    Ok((file, Some(path)))
}

/// Parse the file's text; the error names the line and what is wrong.
pub fn parse(text: &str) -> Result<ConfigFile, String> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
        let what = e.message().to_owned();
        match line {
            Some(line) => format!("line {line}: {what}"),
            None => what,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_line() {
        let err = parse("[ec2]\ninstance_type = \"g5.xlarge\"\nvolume_size = \"big\"\n").unwrap_err();
        assert!(err.starts_with("line 3:"), "{err}");
        let err = parse("[ec2]\ninstance_typ = \"x\"\n").unwrap_err();
        assert!(err.starts_with("line 2:") && err.contains("instance_typ"), "{err}");
        let err = parse("[ec2\n").unwrap_err();
        assert!(err.starts_with("line 1:"), "{err}");
        assert!(parse("[host]\ndomian = \"x\"\n").unwrap_err().contains("unknown field `domian`"));
    }
}
