//! The steps in the order they run, and which facts each one plans from.
//! The refusals every step shares (an unsupported distribution, a user who
//! cannot get root) and the repair of an interrupted dpkg before any step
//! that runs apt are made here, once, not in each step.

use crate::gather::Facts;
use crate::host_facts::{HostFacts, Sudo};
use crate::plan::Plan;
use crate::settings::{Autostop, Config, Expiry};
use crate::steps;

/// The steps, in the order they run.
/// What the steps before this one did in this run, where a plan depends on
/// it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Earlier {
    /// In a dry run: the nvidia step would install the driver (so a reboot
    /// would follow).
    pub driver_would_install: bool,
    /// The stack step brought the stack up (or, in a dry run, would): the
    /// health step proves it with the request however well it looks.
    pub stack_changed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Host,
    Ready,
    Apt,
    Docker,
    Nvidia,
    Reboot,
    GpuCheck,
    Layout,
    Pull,
    Traefik,
    Llm,
    WebUi,
    Stack,
    Health,
    Upkeep,
}

impl Step {
    /// In the order they run. The layout and the background pull come right
    /// after Docker, so the pull (the longest wait) overlaps the driver
    /// install; Traefik and the stack come after the reboot.
    pub const ALL: [Step; 15] = [
        Step::Host,
        Step::Ready,
        Step::Apt,
        Step::Docker,
        Step::Layout,
        Step::Pull,
        Step::Nvidia,
        Step::Reboot,
        Step::GpuCheck,
        Step::Traefik,
        Step::Llm,
        Step::WebUi,
        Step::Stack,
        Step::Health,
        Step::Upkeep,
    ];

    /// The IMAGE steps (not run with --no-stack).
    pub fn is_image(self) -> bool {
        matches!(self, Step::Layout | Step::Pull | Step::Traefik | Step::Llm | Step::WebUi | Step::Stack | Step::Health)
    }

    /// The steps this configuration runs, in order. The upkeep step runs
    /// with the stack or an expiry to set or remove: without either, nothing
    /// that runs by itself changes.
    pub fn for_config(cfg: &Config) -> Vec<Step> {
        Step::ALL
            .into_iter()
            .filter(|s| cfg.image.is_some() || !s.is_image())
            .filter(|s| {
                *s != Step::Upkeep
                    || cfg.image.is_some()
                    || cfg.expiry != Expiry::Keep
                    || cfg.autostop != Autostop::Keep
            })
            .collect()
    }

    /// Only the host's expiry (`ec2 create NAME --ttl D --no-bootstrap` on
    /// a server that exists): what host it is, then the upkeep step, which
    /// without the stack changes only the power-off.
    pub const EXPIRY_ONLY: [Step; 2] = [Step::Host, Step::Upkeep];

    pub fn name(self) -> &'static str {
        match self {
            Step::Host => "host",
            Step::Ready => "ready",
            Step::Apt => "apt",
            Step::Docker => "docker",
            Step::Nvidia => "nvidia",
            Step::Reboot => "reboot",
            Step::GpuCheck => "gpu-check",
            Step::Layout => "layout",
            Step::Pull => "pull",
            Step::Traefik => "traefik",
            Step::Llm => "llm",
            Step::WebUi => "webui",
            Step::Stack => "stack",
            Step::Health => "health",
            Step::Upkeep => "upkeep",
        }
    }

    /// Runs apt: an interrupted dpkg is finished first.
    fn runs_apt(self) -> bool {
        matches!(self, Step::Apt | Step::Docker | Step::Nvidia)
    }

    /// This step's plan from the facts and what the steps before it did in
    /// this run.
    pub fn plan(self, f: &Facts, cfg: &Config, earlier: Earlier) -> Plan {
        // Every step needs a supported distribution and root; the first
        // step reports why not.
        let fam = match f.host.family(cfg.force_distro) {
            Ok(fam) => fam,
            Err(message) => {
                return Plan::Refuse {
                    message,
                    hint: "use a supported image, or pass --force-distro to try anyway (at your own risk)".into(),
                    usage: true,
                };
            }
        };
        if let Some(refusal) = sudo_refusal(&f.host) {
            return refusal;
        }
        let gid = f.docker.gid.as_deref();
        let plan = match (self, &cfg.image) {
            (Step::Host, _) => steps::host::plan(&f.host, cfg),
            (Step::Ready, _) => steps::ready::plan(&f.ready, cfg),
            (Step::Apt, _) => steps::apt::plan(&f.apt, cfg),
            (Step::Docker, _) => steps::docker::plan(&f.host, &f.sources, &f.docker, cfg, fam),
            (Step::Nvidia, _) => steps::nvidia::plan(&f.host, &f.sources, &f.docker, &f.nvidia, cfg, fam),
            (Step::Reboot, _) => steps::reboot::plan(&f.host, &f.nvidia, &f.reboot, cfg, earlier.driver_would_install),
            (Step::GpuCheck, _) => {
                let deployed =
                    cfg.image.as_ref().is_some_and(|img| steps::stack::deployed(gid, &f.stack, &f.files, img));
                steps::gpu_check::plan(&f.host, &f.docker, &f.nvidia, cfg, fam, deployed)
            }
            (Step::Upkeep, _) => steps::upkeep::plan(&f.upkeep, &f.files, cfg),
            (_, None) => Plan::Skip("--no-stack".into()),
            (Step::Layout, Some(img)) => {
                steps::layout::plan(gid, &f.host.user, &f.layout, &f.files, &f.stack.site_services(img), img)
            }
            (Step::Pull, Some(img)) => {
                let deployed = steps::stack::deployed(gid, &f.stack, &f.files, img);
                steps::pull::plan(gid, &f.layout, &f.containers, deployed, &f.pull, img)
            }
            (Step::Traefik, Some(img)) => steps::traefik::plan(&f.containers, &f.files, &f.traefik, img),
            (Step::Llm, Some(img)) => {
                steps::llm::plan(f.nvidia.smi.as_ref(), &f.host.user, &f.containers, &f.files, &f.llm, img)
            }
            (Step::WebUi, Some(img)) => steps::webui::plan(&f.containers, &f.files, &f.webui, img),
            (Step::Stack, Some(img)) => {
                let cuda_check =
                    cfg.gpu.then(|| steps::gpu_check::cuda_check(&img.base_dir, fam, steps::gpu_check::Unpulled::Pull));
                let facts = steps::stack::StackInputs {
                    docker_gid: gid,
                    layout: &f.layout,
                    containers: &f.containers,
                    pull: &f.pull,
                    stack: &f.stack,
                    files: &f.files,
                };
                steps::stack::plan(facts, cuda_check, img)
            }
            (Step::Health, Some(img)) => steps::health::plan(&f.stack, &f.health, img, earlier.stack_changed),
        };
        if self.runs_apt() { steps::apt::repair_first(plan, &f.apt, self == Step::Apt) } else { plan }
    }
}

fn sudo_refusal(host: &HostFacts) -> Option<Plan> {
    let user = &host.user;
    let (message, hint) = match host.sudo {
        Sudo::Root | Sudo::NoPassword => return None,
        Sudo::NeedsPassword => (
            format!("{user} cannot use sudo without a password, and bootstrap runs unattended"),
            format!(
                "allow it (a sudoers line `{user} ALL=(ALL) NOPASSWD:ALL`, e.g. in /etc/sudoers.d/90-{user}) or connect as root"
            ),
        ),
        Sudo::Missing => (
            format!("{user} is not root and sudo is not installed"),
            "connect as root, or install sudo and give the user passwordless sudo".into(),
        ),
    };
    Some(Plan::Refuse { message, hint, usage: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_dpkg_is_finished_before_apt() {
        let f = Facts::parse(&format!(
            "{}dpkg.interrupted=yes\napt.lists_age=10\napt.upgradable=0\n",
            crate::host_facts::DEBIAN12_A10G
        ));
        let cfg = Config::default();
        let cmds = Step::Apt.plan(&f, &cfg, Earlier::default()).commands();
        assert_eq!(cmds.len(), 1);
        assert!(cmds[0].ends_with("dpkg --force-confdef --force-confold --configure -a"), "{cmds:?}");
        let cmds = Step::Nvidia.plan(&f, &cfg, Earlier::default()).commands();
        assert!(cmds[0].ends_with("--configure -a"), "{cmds:?}");
        // Ready and the GPU check never run apt.
        assert!(matches!(Step::Ready.plan(&f, &cfg, Earlier::default()), Plan::Ok(_)));
    }

    #[test]
    fn every_step_refuses_a_host_it_cannot_handle() {
        let cfg = Config::default();
        let centos = Facts::parse("os.id=centos\nos.version=9\nuser=root\nsudo=root\n");
        assert!(matches!(Step::Host.plan(&centos, &cfg, Earlier::default()), Plan::Refuse { usage: true, .. }));
        let forced = Config { force_distro: true, ..Config::default() };
        assert!(
            matches!(Step::Host.plan(&centos, &forced, Earlier::default()), Plan::Ok(why) if why.contains("(forced)"))
        );
        let no_sudo = Facts::parse("os.id=debian\nos.version=12\nuser=admin\nsudo=password\n");
        assert!(matches!(Step::Docker.plan(&no_sudo, &cfg, Earlier::default()), Plan::Refuse { usage: false, .. }));
    }

    /// Every path a step writes (an upload, a link) is one the files facts
    /// report on: what is there decides whether the step writes and
    /// whether it keeps a copy first (template's Writes takes a path the
    /// facts do not report on as absent).
    #[test]
    fn every_written_path_is_watched() {
        use crate::plan::{Action, Plan};
        use crate::settings::Llm;
        let mut img = crate::settings::ImageConfig::with_site();
        img.llm = Llm::Local;
        img.webui = Some(crate::settings::WebUi { host: "chat.example.org".into(), admin_password: "pw".into() });
        img.env_files = vec![
            ("maps.env".into(), b"K=v\n".to_vec()),
            ("hf.env".into(), b"HF_TOKEN=t\n".to_vec()),
            ("healthcheck.env".into(), b"SLACK_WEBHOOK_URL=u\n".to_vec()),
        ];
        let cfg = Config {
            image: Some(img),
            expiry: crate::settings::Expiry::At("2030-01-01T00:00:00Z".into()),
            ..Config::default()
        };
        let watched = crate::gather::FactsInputs::for_config(&cfg).files;
        let facts = Facts::parse(&format!(
            "{}docker.gid=999\ncontainers.listed=yes\ndocker.networks=bridge\nlayout.clone=yes\n\
             nvidia.smi=NVIDIA A10G, 570.195.03, 23028 MiB\nstack.llm_services=graphic-caption\n",
            crate::host_facts::DEBIAN12_A10G
        ));
        let mut written = Vec::new();
        for step in [Step::Layout, Step::Traefik, Step::Llm, Step::WebUi, Step::Stack, Step::Upkeep] {
            let Plan::Act { actions, .. } = step.plan(&facts, &cfg, Earlier::default()) else {
                panic!("{step:?} writes nothing here")
            };
            for action in actions {
                match action {
                    Action::Upload { path, .. } => written.push(path),
                    Action::Change(cmd) if cmd.argv()[0] == "ln" => written.push(cmd.argv()[4].to_string()),
                    _ => {}
                }
            }
        }
        assert!(written.len() >= 20, "{written:#?}");
        for path in &written {
            assert!(watched.contains(path), "{path} is written but not watched: {watched:#?}");
        }
    }
}
