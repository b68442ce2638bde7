//! image-provision's command line: arguments, configuration, output. `main`
//! parses once, resolves once, runs, and maps the result to an exit code.

mod args;
mod bootstrap;
mod config;
mod ec2;
mod errors;
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

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,image_provision=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("IMAGE_PROVISION_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (file, _path) = config::load(cli.config.as_deref())?;
    let hooks = resolve::TestHooks::from_env()?;
    match resolve::resolve(&cli.command, &file, &hooks)? {
        Resolved::Create(s) => ec2::create(s).await,
        Resolved::List { aws, json } => ec2::list(&aws, json).await,
        Resolved::Destroy(s) => ec2::destroy(&s).await,
        Resolved::Bootstrap(s) => bootstrap::run(s).await,
        Resolved::Verify(s) => verify_update::verify(s).await,
        Resolved::Update(s) => verify_update::update(s).await,
    }
}
