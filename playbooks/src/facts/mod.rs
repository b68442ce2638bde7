//! Raw facts: what the facts command prints, one `key=value` a line, read
//! into a map that each step's typed facts parse once. And the pieces a facts
//! command is made of: the prelude every facts script shares, and
//! [`FactsScript`], one part's script with the root functions it defines.

use std::collections::BTreeMap;

/// `kv`, `run_root_facts` and the arrays facts scripts add to: first in
/// every facts command.
pub const PRELUDE_SH: &str = include_str!("prelude.sh");

/// The facts command's output, by key. A key may come more than once (one
/// `container=` line per container): [`RawFacts::get`] gives the last,
/// [`RawFacts::all`] every one.
#[derive(Clone, Debug, Default)]
pub struct RawFacts {
    values: BTreeMap<String, Vec<String>>,
}

impl RawFacts {
    pub fn parse(text: &str) -> RawFacts {
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (key, value) in text.lines().filter_map(|l| l.split_once('=')) {
            // Spaces and a carriage return only: tabs separate fields in
            // some values, and a leading empty field is still a field.
            values.entry(key.to_string()).or_default().push(value.trim_matches([' ', '\r']).to_string());
        }
        RawFacts { values }
    }

    /// The last value of `key`, if not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).and_then(|v| v.last()).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Every value of `key`, in the order printed.
    pub fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.values.get(key).into_iter().flatten().map(String::as_str)
    }

    /// The keys that start with `prefix`, with the prefix taken off, and
    /// their (last) values.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.values
            .iter()
            .filter_map(move |(k, v)| Some((k.strip_prefix(prefix)?, v.last().map(String::as_str).unwrap_or_default())))
    }

    pub fn yes(&self, key: &str) -> bool {
        self.get(key) == Some("yes")
    }

    pub fn words(&self, key: &str) -> Vec<String> {
        self.get(key).map(|v| v.split_whitespace().map(str::to_string).collect()).unwrap_or_default()
    }

    pub fn number(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(|v| v.parse().ok())
    }

    pub fn string(&self, key: &str) -> Option<String> {
        self.get(key).map(str::to_string)
    }
}

/// One part of the facts command: a facts script (its shell libraries in
/// front), and the functions in it that need root, which the command sends to
/// root's shell once the part has run (`facts_root_send`).
#[derive(Clone, Debug)]
pub struct FactsScript {
    /// The file it is made from, under playbooks/src.
    pub path: &'static str,
    /// That file's own text.
    pub file: &'static str,
    /// As sent: the file with the libraries it calls in front.
    pub text: String,
    pub root_functions: &'static [&'static str],
}

impl FactsScript {
    /// The facts script `file` (at `path` under playbooks/src), run as the
    /// SSH user.
    pub fn new(path: &'static str, file: &'static str) -> FactsScript {
        FactsScript { path, file, text: file.to_string(), root_functions: &[] }
    }

    /// With `libraries` in front.
    pub fn with_libraries(mut self, libraries: &[&str]) -> FactsScript {
        self.text = crate::shell::with_libraries(libraries, self.file);
        self
    }

    /// It defines `root_functions` for root's shell.
    pub fn root(mut self, root_functions: &'static [&'static str]) -> FactsScript {
        self.root_functions = root_functions;
        self
    }
}

/// Right after the prelude: root's shell opened (sudo started) before the
/// parts run, beside them.
const OPEN_ROOT: &str = "\nfacts_root_open\n";

/// The prelude, root's shell opened, the parts in order, each part with root
/// functions followed by a `facts_root_send` of them (root's shell runs them
/// beside the later parts, in the parts' order: a root function may read what
/// an earlier one left), then `run_root_facts` with all of them (it sends the
/// end and reads root's answer; with the SSH user root it runs them all), then
/// what the parts left to read after it (`facts_after_root`).
pub fn compose(parts: &[FactsScript]) -> String {
    let mut text = PRELUDE_SH.to_string();
    text.push_str(OPEN_ROOT);
    for part in parts {
        text.push('\n');
        text.push_str(&part.text);
        push_send(&mut text, part, "");
    }
    let roots = parts.iter().flat_map(|p| p.root_functions.iter().copied());
    push_call(&mut text, "\nrun_root_facts", roots, "");
    text.push_str("facts_after_root_run\n");
    text
}

/// After `part`, the send of its root functions to root's shell (`prefix`
/// before each name); none for a part without.
fn push_send(text: &mut String, part: &FactsScript, prefix: &str) {
    if !part.root_functions.is_empty() {
        push_call(text, "\nfacts_root_send", part.root_functions.iter().copied(), prefix);
    }
}

/// `call` with `functions` as its arguments (`prefix` before each name) and
/// a line break.
fn push_call<'a>(text: &mut String, call: &str, functions: impl Iterator<Item = &'a str>, prefix: &str) {
    text.push_str(call);
    for f in functions {
        text.push(' ');
        text.push_str(prefix);
        text.push_str(f);
    }
    text.push('\n');
}

/// [`compose`] with a mark before each part and each root function, and at
/// the end: `facts.mark=LABEL SECONDS` lines from the user's shell and
/// `facts.root_mark=LABEL SECONDS` from root's (bash's `EPOCHREALTIME`, no
/// fork; the two run side by side), LABEL being the part's path or the root
/// function's name; the time from one mark to the next of the same shell is
/// the labelled source's. `run_root_facts` marks the user's wait for root's
/// answer, `root_end` root's last moment, `after_root` the user's once root's
/// answer is printed (then what ran beside it is read: `facts_after_root`),
/// `end` the last. For the bench (benches/bootstrap.rs); the facts the steps
/// read are the same lines.
pub fn compose_timed(parts: &[FactsScript]) -> String {
    let roots: Vec<&str> = parts.iter().flat_map(|p| p.root_functions.iter().copied()).collect();
    let mut text = PRELUDE_SH.to_string();
    text.push_str(OPEN_ROOT);
    text.push_str("\nfacts_mark() { kv facts.mark \"$1 $EPOCHREALTIME\"; }\n");
    text.push_str("facts_root_mark() { kv facts.root_mark \"$1 $EPOCHREALTIME\"; }\n");
    text.push_str("timed_root_end() { facts_root_mark root_end; }\n");
    // Each root function runs wrapped (timed_F marks, calls F, and marks root's
    // shell idle until the next part's functions come), so root's shell needs
    // F itself as a helper (sent once the part has defined it).
    text.push_str("root_facts_helpers+=(facts_root_mark");
    for f in &roots {
        text.push_str(&format!(" {f}"));
    }
    text.push_str(")\n");
    for f in &roots {
        text.push_str(&format!("timed_{f}() {{ facts_root_mark {f}; {f}; facts_root_mark {ROOT_IDLE}; }}\n"));
    }
    for part in parts {
        text.push_str(&format!("\nfacts_mark {}\n", part.path));
        text.push_str(&part.text);
        push_send(&mut text, part, "timed_");
    }
    text.push_str("\nfacts_mark run_root_facts");
    let timed = roots.iter().copied().chain(std::iter::once("root_end"));
    push_call(&mut text, "\nrun_root_facts", timed, "timed_");
    // The CPU the command used (the shell's, then its children's: sudo and
    // root's shell among them), as bash's `times` prints it: steadier than
    // wall time on a busy machine.
    text.push_str("facts_mark after_root\nfacts_after_root_run\nfacts_mark end\n");
    text.push_str("kv facts.times below\ntimes\n");
    text
}

/// The CPU time [`compose_timed`]'s command used on the host (user and
/// system, its shell's and its children's), from the two lines `times`
/// printed after `facts.times=below`.
pub fn cpu_time(text: &str) -> Option<std::time::Duration> {
    let mut lines = text.lines().skip_while(|l| *l != "facts.times=below").skip(1).take(2);
    let mut total = 0.0;
    for line in [lines.next()?, lines.next()?] {
        for field in line.split_whitespace() {
            // 0m0.014s
            let (m, s) = field.strip_suffix('s')?.split_once('m')?;
            total += m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?;
        }
    }
    Some(std::time::Duration::from_secs_f64(total))
}

/// Root's shell between one part's functions and the next part's.
const ROOT_IDLE: &str = "root_idle";

/// The sources' times from [`compose_timed`]'s output: the user's shell's
/// marks in order, each label with the time to its next mark, then root's
/// likewise (the two shells run side by side); `(waiting for root's part)` from
/// `run_root_facts` to the user's next mark, `(answers read after root's
/// part)` after `after_root`, `(root's shell waiting for the next part)` the
/// sum of root's idle times.
pub fn mark_times(raw: &RawFacts) -> Vec<(String, std::time::Duration)> {
    let mut times: Vec<(String, std::time::Duration)> = Vec::new();
    for key in ["facts.mark", "facts.root_mark"] {
        for w in marks(raw, key).windows(2) {
            let label = match w[0].0 {
                "run_root_facts" => "(waiting for root's part)",
                "after_root" => "(answers read after root's part)",
                ROOT_IDLE => "(root's shell waiting for the next part)",
                other => other,
            };
            let d = std::time::Duration::from_secs_f64((w[1].1 - w[0].1).max(0.0));
            match times.iter_mut().find(|(l, _)| l == label) {
                Some((_, sum)) => *sum += d,
                None => times.push((label.to_string(), d)),
            }
        }
    }
    times
}

/// The facts on the host: from the first mark to the last, of either shell.
pub fn marks_span(raw: &RawFacts) -> std::time::Duration {
    let all: Vec<f64> =
        marks(raw, "facts.mark").into_iter().chain(marks(raw, "facts.root_mark")).map(|(_, t)| t).collect();
    let first = all.iter().copied().fold(f64::INFINITY, f64::min);
    let last = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    std::time::Duration::from_secs_f64(if last > first { last - first } else { 0.0 })
}

fn marks<'a>(raw: &'a RawFacts, key: &str) -> Vec<(&'a str, f64)> {
    raw.all(key)
        .filter_map(|v| {
            let (label, at) = v.rsplit_once(' ')?;
            Some((label, at.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_their_fields_and_repeat() {
        let f = RawFacts::parse("a=1\nb= two \nc=\nrow=\tx\trunning\nrow=p\ty\texited\nfile./x=abc 644\n");
        assert_eq!(f.get("a"), Some("1"));
        assert_eq!(f.get("b"), Some("two"));
        assert_eq!(f.get("c"), None);
        assert_eq!(f.all("row").collect::<Vec<_>>(), ["\tx\trunning", "p\ty\texited"]);
        assert_eq!(f.with_prefix("file.").collect::<Vec<_>>(), [("/x", "abc 644")]);
        assert_eq!(f.number("a"), Some(1));
    }

    /// The bench's breakdown: a mark before each part and each root
    /// function (root's running beside the user's), their times, the wait
    /// for root's answer, the span of the whole, and the CPU used.
    #[test]
    fn timed_marks_each_source() {
        let text = compose_timed(&[
            FactsScript::new("a.sh", "echo one"),
            FactsScript::new("b.sh", "two() { :; }").root(&["two"]),
        ]);
        assert!(text.contains("facts_mark a.sh\necho one\n") && text.contains("facts_mark b.sh\n"), "{text}");
        assert!(text.contains("two() { :; }\nfacts_root_send timed_two\n"), "{text}");
        assert!(text.contains("timed_two() { facts_root_mark two; two; facts_root_mark root_idle; }"), "{text}");
        assert!(text.contains("run_root_facts timed_two timed_root_end\nfacts_mark after_root\n"), "{text}");
        let out = "facts.mark=a.sh 10.000000\nfacts.mark=b.sh 10.250000\nfacts.mark=run_root_facts 10.300000\n\
                   facts.root_mark=two 10.260000\nfacts.root_mark=root_idle 10.300000\nfacts.root_mark=three 10.310000\n\
                   facts.root_mark=root_idle 10.400000\nfacts.root_mark=root_end 10.420000\nfacts.mark=after_root 10.421000\n\
                   facts.mark=end 10.431000\nfacts.times=below\n0m0.010s 0m0.020s\n0m1.000s 0m0.100s\n";
        let raw = RawFacts::parse(out);
        let times: Vec<(String, u128)> = mark_times(&raw).into_iter().map(|(l, d)| (l, d.as_millis())).collect();
        let want = [
            ("a.sh", 250),
            ("b.sh", 50),
            ("(waiting for root's part)", 121),
            ("(answers read after root's part)", 10),
            ("two", 40),
            ("(root's shell waiting for the next part)", 30),
            ("three", 90),
        ];
        assert_eq!(times, want.map(|(l, ms)| (l.to_string(), ms)));
        assert_eq!(marks_span(&raw).as_millis(), 431);
        assert_eq!(cpu_time(out).map(|d| d.as_millis()), Some(1130));
    }

    /// `bash -c SCRIPT` with the directory `bin` first in PATH; stdout. As
    /// nobody (setpriv) when the tests run as root and `as_user`, so that
    /// `sudo` is what gets root.
    fn bash_as(script: &str, bin: &std::path::Path, as_user: bool) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let mut cmd = if as_user && is_root() {
            std::fs::set_permissions(bin, std::fs::Permissions::from_mode(0o755)).unwrap();
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "bash"]).env("HOME", "/nonexistent");
            c
        } else {
            std::process::Command::new("bash")
        };
        let out = cmd.arg("-c").arg(script).env("PATH", path).current_dir("/").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn bash(script: &str, bin: &std::path::Path) -> String {
        bash_as(script, bin, false)
    }

    fn is_root() -> bool {
        let out = std::process::Command::new("id").arg("-u").output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "0"
    }

    fn stand_in(bin: &std::path::Path, name: &str, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/bash\n{text}")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// One `systemctl show` for every unit, its blocks read in the order
    /// asked, worded as `systemctl is-enabled` and `is-active` word them:
    /// a unit that does not exist is not-found and inactive.
    #[test]
    fn unit_states_from_one_systemctl_show() {
        let bin = tempfile::tempdir().unwrap();
        let log = bin.path().join("calls");
        stand_in(
            bin.path(),
            "systemctl",
            &format!(
                "echo \"$*\" >>{}\nprintf '%s\\n' Id=docker.service LoadState=loaded ActiveState=active \
                 UnitFileState=enabled '' Id=a.timer LoadState=loaded ActiveState=failed UnitFileState=static '' \
                 Id=gone.service LoadState=not-found ActiveState=inactive UnitFileState= '' \
                 Id=m.service LoadState=masked ActiveState=inactive UnitFileState=masked\n",
                log.display()
            ),
        );
        let script = format!(
            "{PRELUDE_SH}\nfacts_units+=(docker.service a.timer gone.service m.service)\nfacts_units_start\n\
             facts_units_read\nfacts_units_read\n\
             for u in \"${{facts_units[@]}}\"; do echo \"$u=${{facts_unit_enabled[$u]}} ${{facts_unit_active[$u]}}\"; done\n"
        );
        assert_eq!(
            bash(&script, bin.path()),
            "docker.service=enabled active\na.timer=static failed\ngone.service=not-found inactive\n\
             m.service=masked inactive\n"
        );
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "show --property=Id,LoadState,UnitFileState,ActiveState -- docker.service a.timer gone.service m.service\n"
        );
        // No answer (no systemd): no state; none asked for: no systemctl.
        stand_in(bin.path(), "systemctl", "exit 1\n");
        let script = format!(
            "{PRELUDE_SH}\nfacts_units+=(docker.service)\nfacts_units_read\n\
             echo \"[${{facts_unit_enabled[docker.service]:-}}] [${{facts_unit_active[docker.service]:-}}]\"\n"
        );
        assert_eq!(bash(&script, bin.path()), "[] []\n");
        stand_in(bin.path(), "systemctl", "echo called\n");
        assert_eq!(bash(&format!("{PRELUDE_SH}\nfacts_units_read\necho done\n"), bin.path()), "done\n");
    }

    /// Root's shell is opened before the parts run; a part's early start
    /// leaves what the root functions read; the inputs reach them; a sudo
    /// that asks for a password is reported as such, and the rest of the
    /// facts still print. (As a user that is not root, through a
    /// stand-in sudo; as root, the functions run here.)
    #[test]
    fn root_shell_opened_first_runs_early_starts_and_the_functions() {
        let bin = tempfile::tempdir().unwrap();
        stand_in(bin.path(), "sudo", "[ \"$1\" = -n ] && shift\nexec \"$@\"\n");
        let parts = [
            FactsScript::new(
                "a.sh",
                "kv a 1\nearly_f() { early=\"$(printf '%s' started)\"; }\nfacts_root_early early_f\n",
            ),
            FactsScript::new(
                "b.sh",
                "INPUT_X=\"x y'z\"\nroot_facts_env+=(INPUT_X)\n\
                 b_root() { kv b.early \"${early:-}\"; kv b.input \"$INPUT_X\"; kv b.via \"${ROOT_FACTS_VIA:-}\"; }\n\
                 after() { kv after yes; }\nfacts_after_root+=(after)\n",
            )
            .root(&["b_root"]),
        ];
        let script = compose(&parts);
        let rooted = bash(&script, bin.path());
        let want = |sudo: &str, via: &str| {
            format!("a=1\nsudo={sudo}\nb.early=started\nb.input=x y'z\nb.via={via}\nafter=yes\n")
        };
        if is_root() {
            assert_eq!(rooted, want("root", ""), "{script}");
        }
        assert_eq!(bash_as(&script, bin.path(), true), want("nopasswd", "sudo"), "{script}");
        stand_in(bin.path(), "sudo", "echo 'sudo: a password is required' >&2\nexit 1\n");
        assert_eq!(bash_as(&script, bin.path(), true), "a=1\nsudo=password\nafter=yes\n");
    }

    /// Root's functions run while the user's parts still send: an answer
    /// bigger than a pipe holds, from an early part, with many chunks sent
    /// after it, neither stops root's shell nor this one; every line comes
    /// back, in order. A root function that fails ends root's part: what it
    /// printed before stays, and the rest of the facts print.
    #[test]
    fn root_answers_larger_than_a_pipe_and_a_failing_root_function() {
        let bin = tempfile::tempdir().unwrap();
        stand_in(bin.path(), "sudo", "[ \"$1\" = -n ] && shift\nexec \"$@\"\n");
        let mut parts = vec![FactsScript::new(
            "big.sh",
            "big_root() { local i; for ((i = 0; i < 3000; i++)); do kv \"big.$i\" \"$(printf '%080d' \"$i\")\"; done; }\n",
        )
        .root(&["big_root"])];
        // 12 parts of 8 kB of root functions each, sent after it: more than
        // a pipe holds, as is the answer.
        let body = format!("kv pad.\"$FUNCNAME\" {}", "x".repeat(8000));
        let names: Vec<&'static str> = (0..12).map(|i| &*Box::leak(format!("pad_{i}").into_boxed_str())).collect();
        for name in &names {
            let text: &'static str = Box::leak(format!("{name}() {{ {body}; }}\n").into_boxed_str());
            let functions: &'static [&'static str] = Box::leak(vec![*name].into_boxed_slice());
            parts.push(FactsScript::new("pad.sh", text).root(functions));
        }
        let out = run_with_limit(&compose(&parts), bin.path(), 60);
        let big: Vec<&str> = out.lines().filter(|l| l.starts_with("big.")).collect();
        assert_eq!(big.len(), 3000, "{}", &out[..out.len().min(500)]);
        assert!(big[2999].starts_with("big.2999=0000"), "{}", big[2999]);
        assert_eq!(out.lines().filter(|l| l.starts_with("pad.pad_")).count(), 12);

        let parts = [
            FactsScript::new("a.sh", "a_root() { kv a 1; false; kv a.after yes; }\n").root(&["a_root"]),
            FactsScript::new("b.sh", "b_root() { kv b 1; }\nafter() { kv after yes; }\nfacts_after_root+=(after)\n")
                .root(&["b_root"]),
        ];
        let out = run_with_limit(&compose(&parts), bin.path(), 60);
        assert_eq!(out, "sudo=nopasswd\na=1\nafter=yes\n");
    }

    /// `bash -c SCRIPT` as [`bash_as`] runs it (as nobody when root), killed
    /// after `secs`: a hang fails the test instead of stalling it.
    fn run_with_limit(script: &str, bin: &std::path::Path, secs: u32) -> String {
        // The watchdog's output goes nowhere, so that it does not hold the
        // test's pipe open once the script is done.
        let limited = format!(
            "(exec >/dev/null 2>&1; sleep {secs}; kill -KILL $$) &\nfacts_test_watchdog=$!\n{script}\nkill \"$facts_test_watchdog\"\n"
        );
        bash_as(&limited, bin, true)
    }

    #[test]
    fn root_functions_are_sent_after_their_part_and_ended_after_every_part() {
        let text = compose(&[
            FactsScript::new("a.sh", "echo one"),
            FactsScript::new("b.sh", "two() { :; }").root(&["two", "three"]),
        ]);
        assert!(text.starts_with(&format!("{PRELUDE_SH}\nfacts_root_open\n")), "{text}");
        assert!(
            text.ends_with(
                "echo one\ntwo() { :; }\nfacts_root_send two three\n\nrun_root_facts two three\nfacts_after_root_run\n"
            ),
            "{text}"
        );
    }
}
