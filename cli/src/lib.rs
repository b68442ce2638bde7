//! image-provision's command line: arguments, configuration, output. `main`
//! parses once, resolves once, runs, and maps the result to an exit code.

mod args;
mod bootstrap;
mod config;
mod ec2;
mod errors;
mod output;
mod runlog;
mod state;
mod verify;

use clap::Parser;

pub use args::Cli;

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

async fn run(mut cli: Cli) -> anyhow::Result<()> {
    let (file, _path) = config::load(cli.config.as_deref())?;
    // The file's [host] options, under the flags, for every command that runs
    // host steps or checks a host they set up.
    match &mut cli.command {
        args::Command::Bootstrap(a) => config::apply_host_file(&mut a.steps, &file.host)?,
        args::Command::Ec2(args::Ec2Command::Create(a)) => config::apply_host_file(&mut a.steps, &file.host)?,
        args::Command::Verify(a) => config::apply_server_file(&mut a.server, &file.host),
        args::Command::Update(a) => config::apply_update_file(a, &file.host),
        args::Command::Ec2(args::Ec2Command::List(_) | args::Ec2Command::Destroy(_)) => {}
    }
    match &cli.command {
        args::Command::Ec2(args::Ec2Command::Create(a)) => ec2::create(a, &file).await,
        args::Command::Ec2(args::Ec2Command::List(a)) => ec2::list(a, &file).await,
        args::Command::Ec2(args::Ec2Command::Destroy(a)) => ec2::destroy(a, &file).await,
        args::Command::Bootstrap(a) => bootstrap::run(a).await,
        args::Command::Verify(a) => verify::verify(a, &file).await,
        args::Command::Update(a) => verify::update(a, &file).await,
    }
}
