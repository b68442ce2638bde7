//! image-provision's command line: arguments, configuration, output. `main`
//! parses once, resolves once, runs, and maps the result to an exit code.

mod ami;
mod args;
mod bootstrap;
mod config;
mod ec2;
mod errors;
mod fleet;
mod output;
mod resolve;
mod runlog;
mod state;
mod verify_update;

use clap::Parser;

pub use args::Cli;
use resolve::Resolved;

/// Run the command line; returns the process exit code (0 done, 1 failed
/// while acting, 2 usage or configuration error).
pub fn main() -> i32 {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => 0,
        Err(e) => errors::report(&e),
    }
}

/// The libraries that log what goes over the wire at trace level: the AWS
/// SDK's request and response bodies (RunInstances' user data carries the
/// server's SSH host private key) and signing (credentials, session
/// tokens), HTTP and TLS, and SSH's packets (the env files' credentials
/// go over a channel's stdin). Their trace never reaches the log, whatever
/// `IMAGE_PROVISION_LOG` asks for; their debug and above still do.
const WIRE_TARGETS: &[&str] = &[
    "aws_config",
    "aws_credential_types",
    "aws_runtime",
    "aws_sdk_",
    "aws_sigv4",
    "aws_smithy_",
    "h2",
    "hyper",
    "hyper_util",
    "log",
    "reqwest",
    "russh",
    "rustls",
    "ssh_key",
    "tokio_rustls",
    "tower",
];

/// `target` is one of [`WIRE_TARGETS`] or a module of one.
fn is_wire(target: &str) -> bool {
    WIRE_TARGETS.iter().any(|w| {
        target.strip_prefix(w).is_some_and(|rest| rest.is_empty() || rest.starts_with("::") || w.ends_with('_'))
    })
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::{FilterExt, filter_fn};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let default = match verbose {
        0 => "warn",
        1 => "info,image_provision=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("IMAGE_PROVISION_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let no_wire_trace = filter_fn(|meta| !(*meta.level() == tracing::Level::TRACE && is_wire(meta.target())));
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false);
    tracing_subscriber::registry().with(stderr.with_filter(filter.and(no_wire_trace))).init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (file, _path) = config::load(cli.config.as_deref())?;
    let hooks = resolve::TestHooks::from_env()?;
    match resolve::resolve(&cli.command, &file, &hooks)? {
        Resolved::Create(s) => ec2::create(s).await,
        Resolved::List { aws, json } => ec2::list(&aws, json).await,
        Resolved::Destroy(s) => ec2::destroy(&s).await,
        Resolved::Stop(s) => ec2::stop(&s).await,
        Resolved::Start(s) => ec2::start(s).await,
        Resolved::Bootstrap(s) => bootstrap::run(s).await,
        Resolved::Verify(s) => verify_update::verify(s).await,
        Resolved::Update(s) => verify_update::update(s).await,
        Resolved::Bake(s) => ami::bake(s).await,
        Resolved::AmiList { aws, json } => ami::list(&aws, json).await,
        Resolved::AmiDelete(s) => ami::delete(&s).await,
        Resolved::Fleet(s) => fleet::converge(s).await,
        Resolved::FleetList { aws, json } => fleet::list(&aws, json).await,
        Resolved::FleetDestroy(s) => fleet::destroy(&s).await,
    }
}

#[cfg(test)]
mod tests {
    use super::is_wire;

    #[test]
    fn the_wire_targets_are_the_libraries_and_their_modules_only() {
        for wire in
            ["aws_smithy_runtime::client::orchestrator", "aws_sdk_ec2", "aws_sigv4", "russh::client", "hyper", "log"]
        {
            assert!(is_wire(wire), "{wire}");
        }
        for ours in ["image_provision_cli", "remote", "hyperlocal_x", "logger", "aws"] {
            assert!(!is_wire(ours), "{ours}");
        }
    }
}
