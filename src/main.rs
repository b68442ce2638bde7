fn main() {
    // Die quietly like other command-line tools when the reader of our
    // output goes away (`image-provision ec2 list | head`), instead of
    // panicking on the failed write: Rust ignores SIGPIPE by default.
    // SAFETY: called first thing, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(image_provision_cli::main())
}
