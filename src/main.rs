fn main() { std::process::exit(image_provision_cli::main()) }
