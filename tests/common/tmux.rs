//! A program driven through a real terminal: tmux runs it in a detached session on a server of
//! its own; the test types with `send-keys` and reads the screen with `capture-pane`, polling
//! for what it expects until a deadline.

use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    socket: String,
}

fn tmux_path() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("tmux")).find(|p| p.is_file())
}

impl Tmux {
    /// Runs `program args` in a 200x50 terminal. `None` (a skip, said on stderr) when tmux is
    /// not installed, except under CI or STREAMCTL_E2E, where that is a failure.
    pub fn start(name: &str, program: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Option<Tmux> {
        if tmux_path().is_none() {
            if std::env::var_os("CI").is_some() || std::env::var_os("STREAMCTL_E2E").is_some() {
                panic!("tmux is not installed (.ci/run installs it)");
            }
            eprintln!("skipped: tmux is not installed");
            return None;
        }
        let socket = format!("streamctl-test-{}-{name}", std::process::id());
        let t = Tmux { socket };
        // A server of its own that keeps a program's screen after it exits (to read its last
        // words and exit status).
        t.run(&["-f", "/dev/null", "new-session", "-d", "-s", "keep"]);
        t.run(&["set-option", "-g", "remain-on-exit", "on"]);
        t.run(&["set-option", "-g", "history-limit", "10000"]);
        let mut cmd = vec!["new-session", "-d", "-s", "t", "-x", "200", "-y", "50", "--", "env"];
        let vars: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        cmd.extend(vars.iter().map(String::as_str));
        // Through sh, which prints the program's exit status when it ends (128 + n for signal n)
        // and outlives a Ctrl-C meant for the program (a trap, reset for the program itself):
        // tmux 3.3 reports neither a signal nor, for a moment after the terminal closes, a status.
        let program = program.to_str().unwrap();
        cmd.extend(["sh", "-c", "trap : INT; \"$0\" \"$@\"; echo \"[exited $?]\"", program]);
        cmd.extend(args);
        t.run(&cmd);
        Some(t)
    }

    fn command(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().unwrap();
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types text as it is.
    pub fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "t", "-l", text]);
    }

    /// Presses keys by their tmux names: `Enter`, `Tab`, `C-c`, `C-d`, `Up`.
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend(keys);
        self.run(&args);
    }

    /// The screen and its scrollback, wrapped lines joined.
    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-J", "-t", "t", "-S", "-10000"])
    }

    /// Polls the screen until `ok` holds for it; panics with the screen after `secs` seconds.
    pub fn wait_until(&self, what: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "no {what} on the terminal within {secs} s:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls until the screen shows `text` `times` times.
    pub fn wait_for_count(&self, text: &str, times: usize, secs: u64) -> String {
        self.wait_until(&format!("{times}× `{text}`"), secs, |s| s.matches(text).count() >= times)
    }

    /// Whether the program still runs.
    pub fn alive(&self) -> bool {
        self.run(&["display-message", "-p", "-t", "t", "#{pane_dead}"]).trim() == "0"
    }

    /// Polls until the program has exited; returns its exit status (128 + n when signal n killed it).
    pub fn wait_exit(&self, secs: u64) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.alive() {
            assert!(Instant::now() < deadline, "still running after {secs} s:\n{}", self.screen());
            std::thread::sleep(Duration::from_millis(100));
        }
        let screen = self.wait_until("the exit status", secs, |s| s.contains("[exited "));
        let tail = &screen[screen.rfind("[exited ").unwrap_or(0) + "[exited ".len()..];
        tail.split(']').next().and_then(|n| n.trim().parse().ok()).unwrap_or(-1)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").output();
    }
}
