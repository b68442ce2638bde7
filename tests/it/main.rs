//! The root package's integration tests, in one test binary (one link of the
//! whole stack, not one per area): one module per area. The harness they
//! share (test hosts, moto's EC2, the CLI run against a host) is the
//! image-provision-testsupport crate (testsupport/); the test hosts' scripts
//! are in tests/testhost, moto's image fixture in tests/fixtures.
//!
//! Run them all with `bash tests/run` (docs/development.md, "Testing"), or some with
//! `cargo nextest run -E 'test(/^ec2_errors::/)'`.

/// `ami bake | list | delete`, `ec2 create --ami IMAGE_NAME`, and the
/// bake's clean-up on a test host.
mod ami;
/// The host steps on booted test hosts: real systemd, Docker and compose v2.
mod booted_host;
/// `image-provision bootstrap --host`, part 1's steps, on test hosts.
mod bootstrap_host;
/// The IMAGE steps of `bootstrap --host` on test hosts.
mod bootstrap_image;
/// shellcheck over every script the binary sends and every stand-in.
mod bootstrap_shellcheck;
/// Docker Hub's pull limit: named with its fixes; a mirror, a login.
mod docker_hub;
/// `ec2 create` end to end: moto's EC2 API and a test host as the instance.
pub(crate) mod ec2_bootstrap;
/// `ec2 create --domain`: the Elastic IP and the Route 53 records, against moto.
mod ec2_dns;
/// Faults moto cannot produce, injected by the fault proxy; bad input.
mod ec2_errors;
/// `ec2 create --ttl`: the power-off armed by the user data, moved on the host.
mod ec2_expiry;
/// `ec2 create | list | destroy` against moto, read back with the SDK.
mod ec2_lifecycle;
/// Touch only what is ours: tags from others, foreign addresses, narrowing,
/// DNS ownership, secure instance defaults, against moto.
mod ec2_ours;
/// `ec2 stop | start` against moto: what is kept, what follows a new address.
mod ec2_stopstart;
/// --env-file files read as the real compose reads them, case by case.
mod env_files;
/// Hostile values for every value-taking flag of every subcommand: exit 2
/// and a message, never a panic or a hang, nothing created.
mod flags;
/// `fleet create | scale | list | destroy` against moto: the balancer, its
/// certificate and records, the servers behind it; faults; bad input.
mod fleet;
/// `--llm-webui`: Open WebUI behind Traefik, login required, on a booted host.
mod llm_webui;
/// The remote crate against a test host: sudo users, reboots.
mod remote_on_testhost;
/// A private IMAGE-server repository: its credentials from a 0600 file,
/// used by every git in the clone, never shown.
mod repo_credentials;
/// The test host harness itself, through OpenSSH's client.
mod testhost_selftest;
/// A create at trace level logs no secret: not the host key, the user
/// data or the AWS secret key.
mod trace_log;
/// What runs on a bootstrapped server by itself: units, timers, a reboot.
mod upkeep;
/// `verify` and `update` on a finished test host.
mod verify_update;
/// `ec2 create` end to end on a real virtual machine (qemu, cloud-init).
mod vm_e2e;

/// The binary under test. Only this package's tests and benches can name it
/// (Cargo's CARGO_BIN_EXE_*), so it is handed to the support crate's helpers
/// from here.
const BIN: &str = env!("CARGO_BIN_EXE_image-provision");
