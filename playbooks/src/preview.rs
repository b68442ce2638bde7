//! What the host steps would do on a host that does not exist yet (`ec2
//! create --dry-run`): each step planned from the facts of a fresh cloud
//! image (nothing of ours installed, cloud-init still running, an NVIDIA
//! GPU), the IMAGE steps from those facts as the steps before them leave
//! them (Docker running with its group, then the clone). Plans, not
//! guesses: the same code that plans a real run.

use crate::gather::Facts;
use crate::plan::Plan;
use crate::sequence::{Earlier, Step};
use crate::settings::Config;

/// The Ubuntu release a fresh image runs: its version and codename.
pub struct FreshImage<'a> {
    pub version: &'a str,
    pub codename: &'a str,
    /// The image's login user.
    pub user: &'a str,
    /// A GPU-ready image (AWS's Deep Learning Base AMI): its NVIDIA driver,
    /// Docker with compose v2 and the container toolkit come installed.
    pub gpu_ready: bool,
    /// The instance type's GPU and its memory in MiB, as nvidia-smi will
    /// report them (the local LLM is sized to it), when known.
    pub gpu: Option<(&'a str, u32)>,
}

/// What a GPU-ready image's facts show before the first run.
const GPU_READY: &str = "nvidia.smi=the instance's NVIDIA GPU, its preinstalled driver, ? MiB\n\
    nvidia.daemon_json=yes\npkg.nvidia-container-toolkit=preinstalled\n\
    docker.version=Docker (preinstalled)\ndocker.compose=Docker Compose version v2 (preinstalled)\n\
    docker.enabled=enabled\ndocker.active=active\ndocker.runtimes=nvidia runc\n";

fn fresh_facts(image: &FreshImage, more: &str) -> Facts {
    Facts::parse(&format!(
        "os.id=ubuntu\nos.version={v}\nos.codename={c}\nos.pretty=Ubuntu {v} (a fresh image)\nuser={u}\n\
         sudo=nopasswd\ngpu=00:1e.0 3D controller [0302]: the instance's NVIDIA GPU\ncloud_init=running\n{ready}{more}",
        v = image.version,
        c = image.codename,
        u = image.user,
        ready = if image.gpu_ready { GPU_READY } else { "" },
    ))
}

/// Each step this configuration runs, with what it would do.
pub fn preview(cfg: &Config, image: &FreshImage) -> Vec<(Step, String)> {
    const DOCKER: &str = "docker.gid=999\ncontainers.listed=yes\ndocker.networks=bridge host none\n";
    let fresh = fresh_facts(image, "");
    // After the docker step: the group exists, the daemon lists containers;
    // the IMAGE working directory is still empty.
    let with_docker = fresh_facts(image, &format!("{DOCKER}layout.dirs_missing=cache testing/warmup\n"));
    // After the layout step: the clone is there; then the pull it starts.
    let with_clone = fresh_facts(image, &format!("{DOCKER}layout.clone=yes\n"));
    let pulling = fresh_facts(image, &format!("{DOCKER}layout.clone=yes\npull.state=running\n"));
    // With an expiry, cloud-init has armed the power-off from the user data.
    let armed = fresh_facts(image, &cfg.expiry.at().map(crate::steps::upkeep::armed_facts).unwrap_or_default());
    // After the driver: nvidia-smi gives the GPU's memory, which sizes a
    // local LLM; none of its files is there yet.
    let absent: String = cfg
        .image
        .as_ref()
        .map(|img| crate::steps::llm::written_files(img).iter().map(|p| format!("file.{p}=absent\n")).collect())
        .unwrap_or_default();
    let with_gpu = image.gpu.map(|(name, mib)| {
        fresh_facts(image, &format!("{DOCKER}layout.clone=yes\nnvidia.smi={name}, (the driver), {mib} MiB\n{absent}"))
    });
    Step::for_config(cfg)
        .into_iter()
        .map(|step| {
            let facts = match step {
                Step::Layout | Step::Traefik | Step::WebUi => &with_docker,
                Step::Pull => &with_clone,
                Step::Stack | Step::Health => &pulling,
                Step::Upkeep => &armed,
                Step::Llm => with_gpu.as_ref().unwrap_or(&fresh),
                _ => &fresh,
            };
            let what = match step.plan(facts, cfg, Earlier { driver_would_install: true, stack_changed: true }) {
                Plan::Act { why, .. } => why,
                Plan::Ok(why) => why,
                Plan::Skip(why) => format!("skipped: {why}"),
                Plan::Pending(why) => format!("after the steps above: {why}"),
                // The GPU check's refusal: no driver yet on a fresh image.
                Plan::Refuse { .. } if step == Step::GpuCheck => {
                    "check nvidia-smi and Docker's nvidia runtime once the steps above have run".into()
                }
                Plan::Refuse { message, .. } => format!("would stop: {message}"),
            };
            (step, what)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::ImageConfig;

    /// Every step says what it would install or write on a fresh image.
    #[test]
    fn a_fresh_image_gets_every_step() {
        let cfg = Config { image: Some(ImageConfig::with_site()), ..Config::default() };
        let image = FreshImage { version: "22.04", codename: "jammy", user: "ubuntu", gpu_ready: false, gpu: None };
        let plan = preview(&cfg, &image);
        let names: Vec<&str> = plan.iter().map(|(s, _)| s.name()).collect();
        assert_eq!(names, Step::for_config(&cfg).iter().map(|s| s.name()).collect::<Vec<_>>());
        let what = |name: &str| plan.iter().find(|(s, _)| s.name() == name).map(|(_, w)| w.clone()).unwrap();
        assert!(what("ready").contains("cloud-init running"), "{}", what("ready"));
        assert!(what("docker").contains("install docker.io docker-compose-v2"), "{}", what("docker"));
        assert!(what("docker").contains("add ubuntu to the docker group"), "{}", what("docker"));
        assert!(what("nvidia").contains("install nvidia-driver-580-server"), "{}", what("nvidia"));
        assert!(what("nvidia").contains("install nvidia-container-toolkit"), "{}", what("nvidia"));
        assert!(what("reboot").contains("NVIDIA driver"), "{}", what("reboot"));
        assert!(
            what("layout").contains("clone https://github.com/Shared-Reality-Lab/IMAGE-server.git"),
            "{}",
            what("layout")
        );
        assert!(what("layout").contains("write .env") && what("layout").contains("write site-docker-compose.yml"));
        assert!(what("layout").contains("create /var/docker/image/cache"), "{}", what("layout"));
        assert!(what("pull").contains("start pulling"), "{}", what("pull"));
        assert!(what("traefik").contains("write /var/docker/traefik/docker-compose.yml"), "{}", what("traefik"));
        assert!(what("stack").contains("bin/imageup"), "{}", what("stack"));
        assert!(what("health").contains("https://image.example.org/health"), "{}", what("health"));
        for (step, w) in &plan {
            assert!(!w.starts_with("would stop") && !w.starts_with("after the steps above"), "{}: {w}", step.name());
            // Nothing of the host's own on a fresh image: nothing to copy.
            assert!(!w.contains("keep a copy") && !w.contains("keep copies"), "{}: {w}", step.name());
        }
    }

    /// A GPU-ready image (--base-image dlami): no driver install, no reboot.
    #[test]
    fn a_gpu_ready_image_gets_no_driver_and_no_reboot() {
        let cfg = Config { image: Some(ImageConfig::with_site()), ..Config::default() };
        let image = FreshImage { version: "22.04", codename: "jammy", user: "ubuntu", gpu_ready: true, gpu: None };
        let plan = preview(&cfg, &image);
        let what = |name: &str| plan.iter().find(|(s, _)| s.name() == name).map(|(_, w)| w.clone()).unwrap();
        assert!(!what("nvidia").contains("install nvidia"), "{}", what("nvidia"));
        assert!(!what("docker").contains("install docker.io"), "{}", what("docker"));
        assert_eq!(what("reboot"), "no reboot needed");
    }

    /// --llm ollama on an instance whose GPU is known: the llm step's plan
    /// is Ollama's, sized to that GPU, as a real run would plan it.
    #[test]
    fn the_local_llm_is_planned_for_the_instance_gpu() {
        use crate::settings::{Llm, Runtime};
        let mut img = ImageConfig { llm: Llm::Local, ..ImageConfig::with_site() };
        img.local_llm.runtime = Runtime::Ollama;
        let cfg = Config { image: Some(img), ..Config::default() };
        let llm_of = |gpu| {
            let image = FreshImage { version: "22.04", codename: "jammy", user: "ubuntu", gpu_ready: false, gpu };
            preview(&cfg, &image).into_iter().find(|(s, _)| *s == Step::Llm).unwrap().1
        };
        let a10g = llm_of(Some(("NVIDIA A10G", 23028)));
        assert!(a10g.contains("write /var/docker/ollama/docker-compose.yml"), "{a10g}");
        assert!(
            a10g.contains("write config/ollama.env (qwen2.5vl:7b on a 22.5 GiB GPU: Ollama takes about 8.8 GiB"),
            "{a10g}"
        );
        assert!(a10g.contains("start Ollama") && a10g.contains("pull it first"), "{a10g}");
        assert!(!a10g.contains("keep a copy"), "nothing of the host's on a fresh image: {a10g}");
        assert!(llm_of(None).starts_with("after the steps above: the GPU's memory"), "{}", llm_of(None));
    }
}
