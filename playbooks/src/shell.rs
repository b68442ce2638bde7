//! Shell scripts as sent. The host runs a script from stdin, so it cannot
//! source a file of ours: a script that calls a library's functions (a
//! `.sh` beside it that defines functions only) is sent with the library in
//! front of it, whole.

/// `libraries`, then `script`: one script, as sent.
pub fn with_libraries(libraries: &[&str], script: &str) -> String {
    let mut text = String::new();
    for lib in libraries {
        text.push_str(lib);
        text.push('\n');
    }
    text.push_str(script);
    text
}
