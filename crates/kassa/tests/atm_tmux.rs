//! The real `kassa atm` binary on a real terminal (a detached tmux pane)
//! against a real `kassa serve`: keys are sent with `send-keys`, screens
//! read with `capture-pane`. A person's session: sign in with card and PIN,
//! withdraw, try an overdraft, sign out, quit; the PIN is never on screen.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, reason = "a test fails by panicking")]

mod common;

#[path = "atm_common/server.rs"]
#[allow(dead_code)]
mod server;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::process::KASSA;
use server::{PIN, Server, customer_with_card, http_balance, shows_pin};

/// How long a screen may take to show what is expected; far above what it
/// needs, far below a hung test.
const SCREEN_DEADLINE: Duration = Duration::from_secs(30);

/// A private tmux server (its own socket), killed when dropped.
struct Tmux {
    socket: String,
    screens: Vec<String>,
}

impl Tmux {
    fn command(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env("LC_ALL", "C.UTF-8")
            .output()
            .unwrap_or_else(|error| panic!("tmux cannot be run ({error}); install it (apt-get install tmux)"))
    }

    fn start(dir: &Path, shell_command: &str) -> Tmux {
        let socket = format!("kassa-atm-{}-{:x}", std::process::id(), rand::random::<u32>());
        let tmux = Tmux { socket, screens: Vec::new() };
        let config = dir.join("tmux.conf");
        std::fs::write(&config, "").unwrap();
        let started = tmux.command(&[
            "-f",
            config.to_str().unwrap(),
            "new-session",
            "-d",
            "-s",
            "atm",
            "-x",
            "120",
            "-y",
            "32",
            shell_command,
        ]);
        assert!(started.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&started.stderr));
        tmux
    }

    /// Named keys (`Enter`, `Escape`) or literal text.
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "atm"];
        args.extend_from_slice(keys);
        let sent = self.command(&args);
        assert!(sent.status.success(), "send-keys: {}", String::from_utf8_lossy(&sent.stderr));
    }

    fn type_text(&self, text: &str) {
        let sent = self.command(&["send-keys", "-t", "atm", "-l", text]);
        assert!(sent.status.success(), "send-keys -l: {}", String::from_utf8_lossy(&sent.stderr));
    }

    fn capture(&self) -> String {
        let captured = self.command(&["capture-pane", "-p", "-t", "atm"]);
        String::from_utf8_lossy(&captured.stdout).into_owned()
    }

    /// Waits until the pane shows `needle`; keeps the screen.
    async fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + SCREEN_DEADLINE;
        loop {
            let screen = self.capture();
            if screen.contains(needle) {
                self.screens.push(screen.clone());
                return screen;
            }
            if Instant::now() >= deadline {
                panic!("the screen never showed {needle:?}; it shows:\n{screen}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command(&["kill-server"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_at_the_atm_in_tmux() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let (terminal_id, key) = server.add_terminal("Tmux ATM").await;
    let anna = customer_with_card(&server, 1).await;
    // Fund the card by a cash deposit at the terminal, in script mode.
    let script = dir.path().join("fund.atm");
    std::fs::write(&script, format!("login card {} pin-env ATM_PIN\ndeposit 50.00\nlogout\n", anna.card)).unwrap();
    let id = terminal_id.to_string();
    let ca = server.ca();
    let connect = [
        "--connect",
        server.terminal.as_str(),
        "--ca-cert",
        ca.to_str().unwrap(),
        "--terminal-id",
        id.as_str(),
        "--terminal-key-file",
        key.to_str().unwrap(),
    ];
    let mut args = vec!["atm"];
    args.extend_from_slice(&connect);
    args.extend(["--script", script.to_str().unwrap()]);
    let funded = server::run(dir.path(), "fund", &args, &[("ATM_PIN", PIN)], None).await;
    assert_eq!(funded.code(), Some(0), "{funded:?}");

    let shell = format!(
        "env XDG_CONFIG_HOME={} {KASSA} atm {} --show-clock; echo \"atm exited $?\"; sleep 600",
        dir.path().join("config").display(),
        connect.join(" ")
    );
    let mut tmux = Tmux::start(dir.path(), &shell);
    tmux.wait_for("Welcome to").await;
    tmux.keys(&["Enter"]);
    tmux.wait_for("1. Card and PIN").await;
    tmux.type_text("1");
    tmux.wait_for("Card number").await;
    tmux.type_text(&anna.card);
    tmux.keys(&["Enter"]);
    tmux.type_text(PIN);
    let masked = tmux.wait_for("PIN: ••••").await;
    assert!(!shows_pin(&masked, PIN), "{masked}");
    tmux.keys(&["Enter"]);
    let menu = tmux.wait_for("choose an operation").await;
    assert!(menu.contains("3. Withdraw cash"), "{menu}");
    assert!(menu.contains("Lamport clock"), "{menu}");

    tmux.type_text("3");
    tmux.wait_for("Withdraw cash").await;
    tmux.type_text("12.50");
    tmux.keys(&["Enter"]);
    let receipt = tmux.wait_for("Withdrawn: 12.50 BYN").await;
    assert!(receipt.contains("Balance:   37.50 BYN"), "{receipt}");
    assert!(receipt.contains("Clock: request"), "{receipt}");
    assert!(receipt.contains("recv withdraw: max("), "{receipt}");
    tmux.keys(&["Enter"]);

    tmux.wait_for("choose an operation").await;
    tmux.type_text("3");
    tmux.wait_for("Withdraw cash").await;
    tmux.type_text("1000");
    tmux.keys(&["Enter"]);
    let refused = tmux.wait_for("[insufficient_funds]").await;
    assert!(refused.contains("Insufficient funds"), "{refused}");
    tmux.keys(&["Enter"]);

    tmux.wait_for("choose an operation").await;
    tmux.type_text("6");
    tmux.wait_for("You are signed out").await;
    tmux.keys(&["Enter"]);
    tmux.wait_for("Welcome to").await;
    tmux.type_text("q");
    tmux.wait_for("atm exited 0").await;

    for screen in &tmux.screens {
        assert!(!shows_pin(screen, PIN), "the PIN was on screen:\n{screen}");
    }
    assert_eq!(http_balance(&server, &anna).await, "37.50");
}
