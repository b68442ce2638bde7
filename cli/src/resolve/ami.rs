//! `ami bake | list | delete`, resolved.

use std::time::Duration;

use image_provision_playbooks::validate::shown;
use image_provision_provision::AwsOptions;

use super::*;
use crate::args::{AmiDeleteArgs, BakeArgs, ServerArgs};
use crate::config::ConfigFile;
use crate::errors::UsageError;

/// How long `ami bake` waits for its image to be available, by default:
/// EC2 copies every written block of the volume to S3 for a first image.
pub const DEFAULT_BAKE_TIMEOUT: Duration = Duration::from_secs(3600);

/// `ami bake`, resolved.
pub struct BakeSettings {
    pub server_name: String,
    pub image_name: String,
    pub aws: AwsOptions,
    pub timeout: Duration,
    /// Only put back what a cut bake held aside.
    pub restore_only: bool,
    /// How to reach the server, as verify reaches it by NAME.
    pub server: ServerSettings,
    pub dry_run: bool,
    pub json: bool,
}

/// An image name given on the command line (IMAGE_NAME).
pub fn check_image_name(flag: &str, name: &str) -> Result<(), UsageError> {
    if image_provision_provision::tags::is_image_name(name) {
        Ok(())
    } else {
        Err(UsageError::new(format!("{flag} {} is not an image name", shown(name))).hint(
            "use 3 to 128 lowercase letters, digits, dots, hyphens and underscores, a letter or digit first, \
             e.g. image-2026.12.07",
        ))
    }
}

pub(super) fn bake(a: &BakeArgs, file: &ConfigFile, hooks: &TestHooks) -> Result<BakeSettings, UsageError> {
    check_name(&a.server)?;
    let image_name = match &a.name {
        Some(n) => {
            check_image_name("--name", n)?;
            n.clone()
        }
        None => {
            let now = jiff::Timestamp::now().strftime("%Y%m%d-%H%M").to_string();
            format!("{}-{now}", a.server)
        }
    };
    if a.restore && a.name.is_some() {
        return Err(UsageError::new("--restore makes no image: --name has nothing to name")
            .hint("run `ami bake SERVER --restore` alone, then bake again"));
    }
    let as_verify = ServerArgs {
        name: Some(a.server.clone()),
        identity: a.identity.clone(),
        ssh_user: a.ssh_user.clone(),
        aws: a.aws.clone(),
        base_dir: a.base_dir.clone(),
        json: a.json,
        ..Default::default()
    };
    Ok(BakeSettings {
        server_name: a.server.clone(),
        image_name,
        aws: aws_options(&a.aws, &file.ec2, hooks)?,
        timeout: duration_or("--bake-timeout", a.bake_timeout.as_ref(), DEFAULT_BAKE_TIMEOUT)?,
        restore_only: a.restore,
        server: server(&as_verify, file, hooks)?,
        dry_run: a.dry_run,
        json: a.json,
    })
}

/// `ami delete`, resolved.
pub struct AmiDeleteSettings {
    pub name: String,
    pub aws: AwsOptions,
    pub yes: bool,
    pub dry_run: bool,
    pub json: bool,
}

pub(super) fn ami_delete(
    a: &AmiDeleteArgs,
    file: &ConfigFile,
    hooks: &TestHooks,
) -> Result<AmiDeleteSettings, UsageError> {
    check_image_name("image name", &a.name)?;
    Ok(AmiDeleteSettings {
        name: a.name.clone(),
        aws: aws_options(&a.aws, &file.ec2, hooks)?,
        yes: a.yes,
        dry_run: a.dry_run,
        json: a.json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bake_with(f: &dyn Fn(&mut BakeArgs)) -> Result<BakeSettings, UsageError> {
        let mut a = BakeArgs { server: "web".into(), ..Default::default() };
        f(&mut a);
        let hooks = TestHooks { ssh_addr: None, https_check: true, kill_after_calls: None };
        bake(&a, &ConfigFile::default(), &hooks)
    }

    #[test]
    fn a_bake_names_its_image_after_the_server_unless_named() {
        let s = bake_with(&|_| {}).unwrap_or_else(|e| panic!("{}", e.message));
        assert!(
            s.image_name.starts_with("web-") && s.image_name.len() == "web-20261207-0415".len(),
            "{}",
            s.image_name
        );
        assert!(image_provision_provision::tags::is_image_name(&s.image_name));
        assert_eq!(s.timeout, DEFAULT_BAKE_TIMEOUT);
        let s = bake_with(&|a| a.name = Some("web-2026.12.07".into())).unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(s.image_name, "web-2026.12.07");
    }

    #[test]
    fn bad_bake_input_is_refused() {
        let refused = |f: &dyn Fn(&mut BakeArgs)| bake_with(f).err().expect("refused").message;
        assert!(refused(&|a| a.name = Some("Web 1".into())).starts_with("--name"));
        assert!(refused(&|a| a.server = "Web".into()).contains("not a DNS label"));
        assert!(refused(&|a| a.bake_timeout = Some("-1m".into())).starts_with("--bake-timeout"));
        assert!(
            refused(&|a| {
                a.restore = true;
                a.name = Some("web-img".into())
            })
            .starts_with("--restore")
        );
    }
}
