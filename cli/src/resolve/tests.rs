//! The resolution of each command, through the same entry points `main`
//! uses.

use super::ec2::*;
use super::host::*;
use super::server::*;
use super::*;
use crate::args::{BootstrapArgs, CreateArgs, HostStepArgs, ServerArgs, UpdateArgs};
use crate::config::parse;
use image_provision_playbooks::settings::{Llm, Profile, RepoCredentials, Upkeep};

fn hooks() -> TestHooks {
    TestHooks { ssh_addr: None, https_check: true, kill_after_calls: None }
}

/// `ec2 create x` (the LLM chosen: --no-llm) with `f`'s changes.
fn create_with(f: &dyn Fn(&mut CreateArgs), file: &ConfigFile) -> Result<CreateSettings, UsageError> {
    let mut a = CreateArgs { name: "x".into(), ..Default::default() };
    a.steps.no_llm = true;
    f(&mut a);
    create(&a, file, &hooks())
}

#[test]
fn kms_keys_are_ids_aliases_or_their_arns() {
    for ok in [
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        "mrk-1234abcd12ab34cd56ef1234567890ab",
        "alias/image-servers",
        "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:eu-west-1:111122223333:alias/image_servers",
    ] {
        assert!(check_kms_key(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "alias/",
        "1234",
        "{{x}}",
        "../key",
        "arn:aws:kms:nowhere-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:us-east-1:1111:alias/x",
        "alias/a\nb",
    ] {
        assert!(check_kms_key(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn names_must_be_dns_labels() {
    for ok in ["a", "image-1", &"a".repeat(63)] {
        assert!(check_name(ok).is_ok(), "{ok}");
    }
    for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
        assert!(check_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_example_config_is_valid_and_complete() {
    let file = parse(include_str!("../../../examples/image-provision.toml")).expect("examples/image-provision.toml");
    // It leaves the LLM to be chosen: refused until it is.
    let err = create_with(&|a| a.steps.no_llm = false, &file).unwrap_err();
    assert!(err.to_string().contains("no LLM chosen"), "{err}");
    let s = create_with(&|_| {}, &file).unwrap();
    assert_eq!((s.instance_type.as_str(), s.volume_size, s.volume_type.as_str()), ("g5.xlarge", 1000, "gp3"));
    let img = s.steps.image.expect("the example runs the IMAGE steps");
    assert_eq!(img.registry_tag, "latest");
    assert_eq!(img.profile, Profile::Production);
}

#[test]
fn host_options_come_from_the_file_unless_a_flag_set_them() {
    let dir = tempfile::tempdir().unwrap();
    let llm = dir.path().join("llm.env");
    std::fs::write(&llm, "LLM_URL=http://x/v1\nLLM_API_KEY=k\nLLM_MODEL=m\n").unwrap();
    let file = parse(&format!(
        "[host]\ndomain = \"image.example.org\"\nacme_email = \"ops@example.org\"\nregistry_tag = \"unstable\"\n\
         no_gpu = true\nimage_profile = \"test\"\nenv_files = {{ \"llm.env\" = {:?} }}\n",
        llm.display()
    ))
    .unwrap();
    let args = HostStepArgs { registry_tag: Some("v1".into()), ..Default::default() };
    let cfg = host_steps(&args, &file.host, &hooks(), true).unwrap();
    let img = cfg.image.unwrap();
    assert_eq!(img.domain.as_deref(), Some("image.example.org"));
    assert_eq!(img.registry_tag, "v1", "the flag wins");
    assert!(!cfg.gpu);
    assert_eq!(img.profile, Profile::Test);
    assert_eq!(img.env_files.len(), 1);
    assert_eq!(img.env_files[0].0, "llm.env");
    let bad = parse("[host]\nimage_profile = \"staging\"\n").unwrap();
    assert!(host_steps(&HostStepArgs::default(), &bad.host, &hooks(), true).is_err());
}

/// The LLM is chosen before anything runs: llm.env or --no-llm, one of
/// the two; none is refused with both choices named, unless the steps
/// do not run now (`ec2 create --no-bootstrap`) or the stack is off.
#[test]
fn the_llm_is_an_env_file_or_none_and_never_left_undecided() {
    let dir = tempfile::tempdir().unwrap();
    let llm = dir.path().join("llm.env");
    std::fs::write(&llm, "LLM_URL=http://x/v1\nLLM_API_KEY=k\nLLM_MODEL=m\n").unwrap();
    let env_file = vec![format!("llm.env={}", llm.display())];
    let none = ConfigFile::default().host;
    let choice =
        |a: HostStepArgs, running: bool| host_steps(&a, &none, &hooks(), running).map(|c| c.image.unwrap().llm);
    assert_eq!(choice(HostStepArgs { env_file: env_file.clone(), ..Default::default() }, true).unwrap(), Llm::EnvFile);
    assert_eq!(choice(HostStepArgs { no_llm: true, ..Default::default() }, true).unwrap(), Llm::Without);
    let err = choice(HostStepArgs::default(), true).unwrap_err();
    assert!(err.message.starts_with("no LLM chosen"), "{err}");
    let hint = err.hint.unwrap();
    assert!(hint.contains("--env-file llm.env=PATH") && hint.contains("--no-llm"), "{hint}");
    let both = choice(HostStepArgs { env_file: env_file.clone(), no_llm: true, ..Default::default() }, true);
    assert!(both.unwrap_err().message.contains("more than one choice"));
    // --llm local: alone, with a known model; not with another choice.
    let local = |model: Option<&str>| HostStepArgs {
        llm: Some("local".into()),
        llm_model: model.map(str::to_string),
        ..Default::default()
    };
    assert_eq!(choice(local(None), true).unwrap(), Llm::Local);
    let cfg = host_steps(&local(Some("Qwen/Qwen2.5-VL-3B-Instruct")), &none, &hooks(), true).unwrap();
    assert_eq!(cfg.image.unwrap().local_llm.model.as_deref(), Some("Qwen/Qwen2.5-VL-3B-Instruct"));
    assert!(choice(local(Some("some/model")), true).unwrap_err().message.contains("not one whose size is known"));
    assert!(choice(HostStepArgs { env_file, ..local(None) }, true).unwrap_err().message.contains("more than one"));
    let remote = HostStepArgs { llm: Some("remote".into()), ..Default::default() };
    assert!(choice(remote, true).is_err());
    let model_alone =
        HostStepArgs { llm_model: Some("Qwen/Qwen2.5-VL-3B-Instruct".into()), no_llm: true, ..Default::default() };
    assert!(choice(model_alone, true).unwrap_err().message.contains("--llm-model is for --llm local"));
    // vLLM's Hugging Face token: with --llm local only.
    let hf = dir.path().join("hf.env");
    std::fs::write(&hf, "HF_TOKEN=hf_x\n").unwrap();
    let hf_file = vec![format!("hf.env={}", hf.display())];
    assert_eq!(choice(HostStepArgs { env_file: hf_file.clone(), ..local(None) }, true).unwrap(), Llm::Local);
    let hf_alone = HostStepArgs { env_file: hf_file.clone(), no_llm: true, ..Default::default() };
    assert!(choice(hf_alone, true).unwrap_err().message.contains("hf.env is for --llm local"));
    // --llm ollama: the same choice with Ollama's runtime and its own
    // model names (a Hugging Face id is not one); no Hugging Face token.
    let ollama = |model: Option<&str>| HostStepArgs { llm: Some("ollama".into()), ..local(model) };
    let cfg = host_steps(&ollama(Some("qwen2.5vl:3b")), &none, &hooks(), true).unwrap().image.unwrap();
    assert_eq!((cfg.llm, cfg.local_llm.runtime), (Llm::Local, settings::Runtime::Ollama));
    assert_eq!(cfg.local_llm.model.as_deref(), Some("qwen2.5vl:3b"));
    let vllm_id = choice(ollama(Some("Qwen/Qwen2.5-VL-3B-Instruct")), true).unwrap_err();
    assert!(vllm_id.message.contains("not one whose size is known here for Ollama"), "{vllm_id}");
    assert!(choice(ollama(Some("qwen2.5vl 3b")), true).unwrap_err().hint.unwrap().contains("qwen2.5vl:3b"));
    let hf_ollama = HostStepArgs { env_file: hf_file, ..ollama(None) };
    assert!(choice(hf_ollama, true).unwrap_err().message.contains("hf.env is for --llm local"));
    assert_eq!(choice(HostStepArgs::default(), false).unwrap(), Llm::Without, "not running now");
    let no_stack = HostStepArgs { no_stack: true, ..Default::default() };
    assert!(host_steps(&no_stack, &none, &hooks(), true).unwrap().image.is_none());
    let from_file = parse("[host]\nno_llm = true\n").unwrap();
    let cfg = host_steps(&HostStepArgs::default(), &from_file.host, &hooks(), true).unwrap();
    assert_eq!(cfg.image.unwrap().llm, Llm::Without);
}

/// `--env-file NAME=` (no path) empties that file on the server, the
/// way to remove a secret (a file not given is kept); llm.env cannot be
/// emptied (the LLM has its own choices), hf.env only with --llm local.
#[test]
fn an_env_file_with_no_path_is_emptied_on_purpose() {
    let none = ConfigFile::default().host;
    let files = |env_file: &[&str], a: HostStepArgs| {
        let a = HostStepArgs { env_file: env_file.iter().map(|s| s.to_string()).collect(), ..a };
        host_steps(&a, &none, &hooks(), true).map(|c| c.image.unwrap().env_files)
    };
    let no_llm = || HostStepArgs { no_llm: true, ..Default::default() };
    let emptied = files(&["healthcheck.env=", "maps.env="], no_llm()).unwrap();
    assert_eq!(emptied, [("healthcheck.env".to_string(), Vec::new()), ("maps.env".to_string(), Vec::new())]);
    let local = HostStepArgs { llm: Some("local".into()), ..Default::default() };
    assert_eq!(files(&["hf.env="], local).unwrap(), [("hf.env".to_string(), Vec::new())]);
    let err = files(&["hf.env="], no_llm()).unwrap_err();
    assert!(err.message.contains("hf.env is for --llm local"), "{err}");
    let err = files(&["llm.env="], HostStepArgs::default()).unwrap_err();
    assert!(err.message.contains("llm.env cannot be emptied"), "{err}");
    assert!(err.hint.unwrap().contains("--no-llm"));
    // The same from the config file: an empty path.
    let file = parse("[host]\nno_llm = true\nenv_files = { \"healthcheck.env\" = \"\" }\n").unwrap();
    let img = host_steps(&HostStepArgs::default(), &file.host, &hooks(), true).unwrap().image.unwrap();
    assert_eq!(img.env_files, [("healthcheck.env".to_string(), Vec::new())]);
}

/// --repo-credentials: a 0600 regular file with one credential for the
/// repository's host, read and written as git's store writes it; kept
/// when not given, removed with `none`; the same from the config file.
/// Every refusal is a usage error naming the file, never the token.
#[test]
fn repo_credentials_come_from_a_private_file_for_the_repositorys_host() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str, mode: u32| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p.display().to_string()
    };
    let none = HostConfig::default();
    let creds = |flag: Option<String>, repo: Option<&str>, f: &HostConfig| {
        let a = HostStepArgs {
            no_llm: true,
            repo_credentials: flag,
            repo_url: repo.map(str::to_string),
            ..Default::default()
        };
        host_steps(&a, f, &hooks(), true).map(|c| c.image.unwrap().repo_credentials)
    };
    let good = write("good", "# deploy token\nhttps://x-access-token:ghp_S3cr3t%2F1@github.com\n", 0o600);
    let line = b"https://x-access-token:ghp_S3cr3t%2f1@github.com\n".to_vec();
    assert_eq!(creds(Some(good.clone()), None, &none).unwrap(), RepoCredentials::Set(line.clone()));
    let read_only = write("read-only", "https://u:ghp_S3cr3t@github.com\n", 0o400);
    assert!(matches!(creds(Some(read_only), None, &none).unwrap(), RepoCredentials::Set(_)), "0400 is stricter");
    assert_eq!(creds(None, None, &none).unwrap(), RepoCredentials::Keep);
    assert_eq!(creds(Some("none".into()), None, &none).unwrap(), RepoCredentials::Remove);
    let file = parse(&format!("[host]\nno_llm = true\nrepo_credentials = {good:?}\n")).unwrap();
    assert_eq!(creds(None, None, &file.host).unwrap(), RepoCredentials::Set(line), "from the config file");
    let file = parse("[host]\nrepo_credentials = \"none\"\n").unwrap();
    assert_eq!(creds(None, None, &file.host).unwrap(), RepoCredentials::Remove);
    assert!(matches!(creds(Some(good.clone()), None, &file.host).unwrap(), RepoCredentials::Set(_)), "the flag wins");

    let other_host = write("gitlab", "https://u:ghp_S3cr3t@gitlab.com\n", 0o600);
    let open = write("open", "https://u:ghp_S3cr3t@github.com\n", 0o644);
    let group = write("group", "https://u:ghp_S3cr3t@github.com\n", 0o660);
    let empty = write("empty", "", 0o600);
    let two = write("two", "https://u:ghp_S3cr3t@github.com\nhttps://v:ghp_S3cr3t@github.com\n", 0o600);
    let dir_path = dir.path().display().to_string();
    let local_repo = Some("file:///srv/IMAGE-server");
    for (flag, repo, says) in [
        (
            other_host,
            None,
            "the credential is for gitlab.com, and the repository https://github.com/Shared-Reality-Lab/IMAGE-server.git is on github.com",
        ),
        (open.clone(), None, "mode 0644 lets others than its owner read or change the token"),
        (group, None, "mode 0660"),
        (empty, None, "no credential in it"),
        (two, None, "line 2: a second credential"),
        (dir_path, None, "not a regular file"),
        (format!("{}/absent", dir.path().display()), None, "cannot read it"),
        (String::new(), None, "--repo-credentials is empty"),
        (good.clone(), local_repo, "is not fetched over https://"),
    ] {
        let e = creds(Some(flag.clone()), repo, &none).err().unwrap_or_else(|| panic!("{flag} taken"));
        assert!(e.message.contains(says), "{flag}: {e}");
        assert!(e.message.starts_with("--repo-credentials"), "{e}");
        assert!(!e.message.contains("S3cr3t") && !e.hint.as_deref().unwrap_or_default().contains("S3cr3t"), "{e}");
    }
    let e = creds(Some(open.clone()), None, &none).unwrap_err();
    assert_eq!(
        e.hint.as_deref(),
        Some(format!("chmod 600 {open}, then run again; nothing was changed on the host").as_str())
    );
    // --repo-url with credentials in it: the hint names the file instead.
    let e = creds(None, Some("https://me:ghp_S3cr3t@github.com/lab/IMAGE-server.git"), &none).unwrap_err();
    assert!(e.hint.unwrap().contains("--repo-credentials PATH"));
}

#[test]
fn the_acme_server_is_production_staging_or_the_one_given() {
    let file =
        parse("[host]\ndomain = \"image.example.org\"\nacme_email = \"ops@example.org\"\nno_llm = true\n").unwrap();
    let server = |a: HostStepArgs| host_steps(&a, &file.host, &hooks(), true).unwrap().image.unwrap().acme_server;
    assert_eq!(server(HostStepArgs::default()), settings::LETS_ENCRYPT);
    assert_eq!(server(HostStepArgs { acme_staging: true, ..Default::default() }), settings::LETS_ENCRYPT_STAGING);
    let other = "https://acme.example.org/directory";
    assert_eq!(server(HostStepArgs { acme_server: Some(other.into()), ..Default::default() }), other);
    let staging_file =
        parse("[host]\ndomain = \"image.example.org\"\nacme_email = \"ops@example.org\"\nacme_staging = true\nno_llm = true\n")
            .unwrap();
    let from_file = host_steps(&HostStepArgs::default(), &staging_file.host, &hooks(), true).unwrap();
    assert_eq!(from_file.image.unwrap().acme_server, settings::LETS_ENCRYPT_STAGING);
}

#[test]
fn verify_and_update_read_the_host_table_under_their_flags() {
    let file = parse(
        "[host]\nbase_dir = \"/srv/image\"\ndomain = \"image.example.org\"\nno_gpu = true\n\
         imageup_timeout = \"2h\"\nhealth_timeout = \"9m\"\nregistry_tag = \"unstable\"\nno_imageup = true\n",
    )
    .unwrap();
    let mut a = UpdateArgs { health_timeout: Some("1m".into()), ..Default::default() };
    a.server.host = Some("admin@203.0.113.7".into());
    a.server.domain = Some("other.example.org".into());
    let u = update(&a, &file, &hooks()).unwrap();
    assert_eq!(u.server.report.base_dir, "/srv/image");
    assert_eq!(u.server.report.domain.as_deref(), Some("other.example.org"), "the flag wins");
    assert!(!u.server.report.gpu);
    assert!(!u.imageup, "a --no-imageup server is updated without imageup");
    assert_eq!(u.imageup_timeout, Duration::from_secs(7200));
    assert_eq!(u.health_timeout, Duration::from_secs(60), "the flag wins");
    let v = server(&a.server, &ConfigFile::default(), &hooks()).unwrap();
    assert_eq!(v.report.base_dir, settings::DEFAULT_BASE_DIR);
    assert!(v.report.gpu, "no file, no change");
}

/// What runs by itself: the flags over the file; bad schedules and a
/// timer-driven update of a production server are usage errors.
#[test]
fn upkeep_flags_and_keys() {
    let upkeep = |s: &CreateSettings| s.steps.image.as_ref().unwrap().upkeep.clone();
    let d = create_with(&|_| {}, &ConfigFile::default()).unwrap();
    assert_eq!(upkeep(&d), Upkeep::default());
    let file = parse(
        "[host]\nimage_profile = \"test\"\nauto_update = \"daily\"\nprune = \"off\"\nhealthcheck_every = \"1h\"\n\
         no_start_at_boot = true\n",
    )
    .unwrap();
    let s = create_with(&|a| a.steps.healthcheck_every = Some("5m".into()), &file).unwrap();
    let u = upkeep(&s);
    assert!(!u.start_at_boot);
    assert_eq!(u.healthcheck_every, Some(Duration::from_secs(300)), "the flag wins");
    assert_eq!(u.auto_update.as_deref(), Some("*-*-* 04:00:00 UTC"));
    assert_eq!(u.prune, None);
    let s = create_with(&|a| a.steps.auto_update = Some("23:05".into()), &file).unwrap();
    assert_eq!(upkeep(&s).auto_update.as_deref(), Some("*-*-* 23:05:00 UTC"));
    for bad in ["24:00", "7:30", "nightly", "03:60"] {
        assert!(create_with(&|a| a.steps.auto_update = Some(bad.into()), &file).is_err(), "{bad}");
    }
    let production = create_with(&|a| a.steps.auto_update = Some("daily".into()), &ConfigFile::default());
    assert!(production.err().unwrap().to_string().contains("production"));
    for (flag, value) in [("healthcheck", "30s"), ("healthcheck", "often"), ("prune", "hourly")] {
        let r = create_with(
            &|a| match flag {
                "healthcheck" => a.steps.healthcheck_every = Some(value.into()),
                _ => a.steps.prune = Some(value.into()),
            },
            &file,
        );
        assert!(r.is_err(), "{flag} {value}");
    }
    let off = create_with(&|a| a.steps.healthcheck_every = Some("off".into()), &file).unwrap();
    assert_eq!(upkeep(&off).healthcheck_every, None);
}

/// A local LLM on an instance whose GPU cannot hold a model beside
/// IMAGE's services is refused before launch, with the numbers.
#[test]
fn a_local_llm_too_big_for_the_instance_is_refused() {
    let local = |itype: &'static str| {
        move |a: &mut CreateArgs| {
            a.steps.no_llm = false;
            a.steps.llm = Some("local".into());
            a.instance_type = Some(itype.into());
        }
    };
    let err = create_with(&local("g4dn.xlarge"), &ConfigFile::default()).unwrap_err();
    assert!(err.message.contains("g4dn.xlarge (NVIDIA T4)") && err.message.contains("GiB left"), "{err}");
    assert!(create_with(&local("g5.xlarge"), &ConfigFile::default()).is_ok());
    assert!(create_with(&local("g6e.xlarge"), &ConfigFile::default()).is_ok());
    // Ollama's 4-bit 3B fits a T4 beside IMAGE; its 32B does not fit an A10G.
    let ollama = |itype: &'static str, model: &'static str| {
        move |a: &mut CreateArgs| {
            local(itype)(a);
            a.steps.llm = Some("ollama".into());
            a.steps.llm_model = Some(model.into());
        }
    };
    assert!(create_with(&ollama("g4dn.xlarge", "qwen2.5vl:3b"), &ConfigFile::default()).is_ok());
    let err = create_with(&ollama("g5.xlarge", "qwen2.5vl:32b"), &ConfigFile::default()).unwrap_err();
    assert!(
        err.message.contains("a local LLM (Ollama) on a g5.xlarge") && err.message.contains("needs 29.1 GiB"),
        "{err}"
    );
}

#[test]
fn flags_beat_the_file_which_beats_defaults() {
    let file = parse("[ec2]\ninstance_type = \"g5.2xlarge\"\nvolume_size = 500\n").unwrap();
    let s = create_with(&|a| a.volume_size = Some("200".into()), &file).unwrap();
    assert_eq!(s.instance_type, "g5.2xlarge");
    assert_eq!(s.volume_size, 200);
    assert_eq!(s.volume_type, "gp3");
    assert_eq!(s.ssh_cidrs, ["0.0.0.0/0", "::/0"]);
}

/// --domain brings an Elastic IP and Route 53 records, each of which can
/// be switched off by flag or config key, also with --no-stack.
#[test]
fn a_domain_brings_an_elastic_ip_and_dns_records_unless_switched_off() {
    let none = ConfigFile::default();
    let with_domain = |a: &mut CreateArgs| {
        a.steps.domain = Some("Srv.Lab.Example.org".into());
        a.steps.acme_email = Some("ops@example.org".into());
    };
    let s = create_with(&with_domain, &none).unwrap();
    assert!(s.elastic_ip);
    assert_eq!(s.dns_domain.as_deref(), Some("srv.lab.example.org"));
    let s = create_with(&|a| a.no_elastic_ip = true, &none).unwrap();
    assert!(!s.elastic_ip && s.dns_domain.is_none(), "no domain: nothing to switch off, and no error");
    let s = create_with(
        &|a| {
            with_domain(a);
            a.no_elastic_ip = true;
            a.no_dns = true;
        },
        &none,
    )
    .unwrap();
    assert!(!s.elastic_ip && s.dns_domain.is_none());
    let file = parse("[ec2]\nno_elastic_ip = true\nno_dns = true\n").unwrap();
    let s = create_with(&with_domain, &file).unwrap();
    assert!(!s.elastic_ip && s.dns_domain.is_none(), "from the file");
    let s = create_with(
        &|a| {
            a.steps.domain = Some("srv.example.org".into());
            a.steps.no_stack = true;
        },
        &none,
    )
    .unwrap();
    assert_eq!((s.elastic_ip, s.dns_domain.as_deref()), (true, Some("srv.example.org")), "--no-stack");
    for bad in ["srv..example.org", "srv_example", "-srv.example.org", "srv.example.org/x"] {
        let e = create_with(
            &|a| {
                a.steps.domain = Some(bad.into());
                a.steps.no_stack = true;
            },
            &none,
        )
        .err()
        .unwrap_or_else(|| panic!("{bad} accepted"));
        assert!(e.message.starts_with("--domain"), "{bad}: {e}");
    }
}

#[test]
fn bad_values_are_usage_errors() {
    let file = ConfigFile::default();
    assert!(create_with(&|a| a.ttl = Some("soon".into()), &file).is_err());
    assert!(create_with(&|a| a.ttl = Some("100ms".into()), &file).is_err());
    assert!(create_with(&|a| a.ssh_cidr = vec!["10.0.0.0/33".into()], &file).is_err());
    assert!(create_with(&|a| a.ami = Some("Ubuntu 22.04".into()), &file).is_err());
    assert!(create_with(&|a| a.aws.region = Some("us-est-1".into()), &file).is_err());
    assert!(create_with(&|a| a.spot_only = true, &file).is_err());
    assert!(create_with(&|a| a.volume_type = Some("ssd".into()), &file).is_err());
    assert!(create_with(&|a| a.steps.nvidia_driver = Some("535;rm".into()), &file).is_err());
    assert!(create_with(&|a| a.steps.docker_repo = Some("https://x".into()), &file).is_err());
    assert!(create_with(&|a| a.steps.reboot_timeout = Some("0s".into()), &file).is_err());
    assert!(create_with(&|a| a.ttl = Some("4h".into()), &file).is_ok());
    let e = create_with(&|a| a.volume_size = Some("-5".into()), &file).err().unwrap();
    assert_eq!(e.message, "--volume-size -5 is not a size: give whole GiB from 8 to 65536");
    let huge = parse("[ec2]\nvolume_size = 9999999999\n").unwrap();
    let e = create_with(&|_| {}, &huge).err().unwrap();
    assert!(e.message.starts_with("config file: [ec2] volume_size = 9999999999 is not a size"), "{e}");
    let gp3 = parse("[ec2]\nvolume_throughput = 1000\nvolume_iops = 4000\n").unwrap();
    let s = create_with(&|_| {}, &gp3).unwrap();
    assert_eq!((s.volume_throughput, s.volume_iops), (Some(1000), Some(4000)));
    let e = create_with(&|a| a.volume_iops = Some("3000".into()), &gp3).err().unwrap();
    assert!(e.message.starts_with("--volume-throughput 1000 needs 4000 IOPS"), "the flag's IOPS count: {e}");
    let e = create_with(&|a| a.volume_type = Some("gp2".into()), &gp3).err().unwrap();
    assert!(e.message.contains("are for gp3 volumes"), "{e}");
    let e = create_with(&|a| a.ttl = Some("-4h".into()), &file).err().unwrap();
    assert_eq!(e.message, "--ttl \"-4h\" is not a duration of at least 1s: it is negative");
}

/// Values that cannot be right are refused, each naming its flag;
/// a URL's credentials are never shown back, and the hint says where
/// they go.
#[test]
fn values_that_cannot_be_right_are_refused() {
    let file = ConfigFile::default();
    let refused = |f: &dyn Fn(&mut CreateArgs)| create_with(f, &file).expect_err("refused");
    assert!(refused(&|a| a.subnet = Some("subnet-123".into())).message.starts_with("--subnet"));
    assert!(create_with(&|a| a.subnet = Some("subnet-0123456789abcdef0".into()), &file).is_ok());
    for bad in ["g5", "{{x}}", "G5.xlarge", "g5.xlarge\n"] {
        assert!(refused(&|a| a.instance_type = Some(bad.into())).message.starts_with("--instance-type"), "{bad}");
    }
    assert!(create_with(&|a| a.instance_type = Some("g6e.2xlarge".into()), &file).is_ok());
    assert!(refused(&|a| a.ami = Some("ami-123".into())).message.contains("is not an AMI id"));
    for bad in ["Web Image", "-x", "ab", "a/b"] {
        assert!(refused(&|a| a.ami = Some(bad.into())).message.contains("is not an AMI id or an image name"), "{bad}");
    }
    assert!(create_with(&|a| a.ami = Some("web-2026.12.07".into()), &file).is_ok());
    assert!(refused(&|a| a.aws.profile = Some("a b".into())).message.starts_with("--profile"));
    assert!(create_with(&|a| a.aws.profile = Some("lab".into()), &file).is_ok());
    for bad in ["1000", &"a".repeat(33), "-u"] {
        assert!(refused(&|a| a.ssh_user = Some(bad.into())).message.starts_with("--ssh-user"), "{bad}");
    }
    let e = refused(&|a| a.ttl = Some("366d".into()));
    assert_eq!(e.message, "--ttl \"366d\" is longer than 365d, the most any time limit or expiry takes");
    assert!(create_with(&|a| a.ttl = Some("365d".into()), &file).is_ok());
    let e = refused(&|a| a.steps.repo_url = Some("https://me:ghp_s3cr3t@github.com/x/y.git".into()));
    assert!(e.message.starts_with("--repo-url: ") && !e.message.contains("s3cr3t"), "{e}");
    assert_eq!(e.hint.as_deref(), Some(REPO_CREDENTIALS_HINT));
    let e = refused(&|a| a.steps.overpass_url = Some("https://example.org/{{x}}".into()));
    assert!(e.message.starts_with("--overpass-url: ") && e.hint.unwrap().contains("overpass-api.de"), "{}", e.message);
    let e = refused(&|a| a.steps.nvidia_repo_key = Some("http://example.org/key".into()));
    assert!(e.message.contains("is not an https:// URL"), "{e}");
    let e = refused(&|a| {
        a.steps.no_llm = false;
        a.steps.llm = Some("local".into());
        a.steps.llm_model = Some("a\nb".into());
    });
    assert_eq!(e.message, "--llm-model \"a\\nb\" is not a model id");
    for bad in ["root@{{x}}", "{{x}}@example.org", "root@999", "root@exa mple.org"] {
        let a = BootstrapArgs { host: bad.into(), ..Default::default() };
        let e = bootstrap(&a, &HostConfig::default(), &hooks()).err().expect("refused");
        assert!(e.message.starts_with("--host"), "{bad}: {e}");
    }
    // verify --host: the flags for an EC2 server are checked all the same.
    let mut v = ServerArgs { host: Some("admin@203.0.113.7".into()), ..Default::default() };
    v.aws.region = Some("{{x}}".into());
    assert!(server(&v, &file, &hooks()).is_err());
    v.aws.region = None;
    v.ssh_user = Some("{{x}}".into());
    assert!(server(&v, &file, &hooks()).is_err());
}

#[test]
fn bad_host_is_a_usage_error() {
    let a = BootstrapArgs { host: "a@b@c:x".into(), ..Default::default() };
    let e = bootstrap(&a, &HostConfig::default(), &hooks()).err().expect("refused");
    assert!(e.message.starts_with("--host:"), "{}", e.message);
    let mut ok = BootstrapArgs { host: "ubuntu@203.0.113.7".into(), ..Default::default() };
    ok.steps.no_llm = true;
    let s = bootstrap(&ok, &HostConfig::default(), &hooks()).unwrap();
    assert_eq!(s.steps.nvidia_driver_branch, settings::DEFAULT_NVIDIA_DRIVER_BRANCH);
    assert!(s.steps.gpu);
}

/// bootstrap --ttl: a duration from now, as `ec2 create --ttl` reads it,
/// or `off`; without it the host's expiry is kept. Bad input is refused
/// naming the flag and both forms.
#[test]
fn bootstrap_ttl_is_a_duration_or_off() {
    let with = |ttl: Option<&str>| {
        let mut a =
            BootstrapArgs { host: "ubuntu@203.0.113.7".into(), ttl: ttl.map(str::to_string), ..Default::default() };
        a.steps.no_llm = true;
        bootstrap(&a, &HostConfig::default(), &hooks()).map(|s| s.steps.expiry)
    };
    assert_eq!(with(None).unwrap(), settings::Expiry::Keep);
    assert_eq!(with(Some("off")).unwrap(), settings::Expiry::Off);
    let at = with(Some("4h")).unwrap();
    let at = at.at().expect("a time").parse::<jiff::Timestamp>().unwrap();
    let left = at.duration_since(jiff::Timestamp::now()).as_secs();
    assert!((4 * 3600 - 5..=4 * 3600).contains(&left), "{left}");
    for bad in ["-1h", "soon", "0s", "never"] {
        let e = with(Some(bad)).err().unwrap_or_else(|| panic!("{bad} taken"));
        assert!(e.message.starts_with(&format!("--ttl {bad:?} is not a duration")), "{e}");
        assert!(e.hint.as_deref().is_some_and(|h| h.contains("`off`")), "{e:?}");
    }
}

/// --autostop (bootstrap and ec2 create): a duration of at least 10 s or
/// `off`; without it the host's is kept. Refused with --no-stack (but
/// `off`) and, on ec2 create, with --spot; bad input names the flag and
/// both forms.
#[test]
fn autostop_is_a_duration_or_off_and_needs_the_stack() {
    let with = |value: &str, no_stack: bool| {
        let mut a = BootstrapArgs { host: "ubuntu@203.0.113.7".into(), ..Default::default() };
        a.steps.no_llm = true;
        a.steps.no_stack = no_stack;
        a.steps.autostop = Some(value.to_string());
        bootstrap(&a, &HostConfig::default(), &hooks()).map(|s| s.steps.autostop)
    };
    let mut keep = BootstrapArgs { host: "ubuntu@203.0.113.7".into(), ..Default::default() };
    keep.steps.no_llm = true;
    assert_eq!(bootstrap(&keep, &HostConfig::default(), &hooks()).unwrap().steps.autostop, settings::Autostop::Keep);
    assert_eq!(with("30m", false).unwrap(), settings::Autostop::After(Duration::from_secs(1800)));
    assert_eq!(with("off", false).unwrap(), settings::Autostop::Off);
    assert_eq!(with("off", true).unwrap(), settings::Autostop::Off);
    for bad in ["-1h", "soon", "5s", "0s", "366d"] {
        let e = with(bad, false).err().unwrap_or_else(|| panic!("{bad} taken"));
        assert!(e.message.starts_with(&format!("--autostop {bad:?}")), "{e}");
    }
    let e = with("5s", false).err().unwrap();
    assert!(e.message.contains("at least 10s") && e.hint.as_deref().is_some_and(|h| h.contains("`off`")), "{e:?}");
    let e = with("30m", true).err().unwrap();
    assert!(e.message.contains("with --no-stack"), "{e}");
    let file = ConfigFile::default();
    let e = create_with(
        &|a| {
            a.spot = true;
            a.steps.autostop = Some("30m".into());
        },
        &file,
    )
    .err()
    .unwrap();
    assert!(e.message.contains("cannot be stopped"), "{e}");
    assert!(create_with(&|a| a.steps.autostop = Some("30m".into()), &file).is_ok());
}
