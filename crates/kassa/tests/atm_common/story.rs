//! The ATM story, driven through ratatui's `TestBackend` against any
//! [`Bank`]: the fake in `atm_screen.rs` or a real server in `atm_real.rs`.

use ratatui::Terminal;
use ratatui::backend::TestBackend;

use crate::atm::Bank;
use crate::atm::ui::{App, Key, perform};

/// Whether `text` shows `pin` as a word of its own. A PIN is four digits,
/// which a transfer id (hex) or a clock may hold by chance; as a word it
/// is what a leak would look like.
fn shows_pin(text: &str, pin: &str) -> bool {
    text.split(|c: char| !c.is_ascii_alphanumeric()).any(|word| word == pin)
}

pub struct Secrets {
    pub card: String,
    pub pin: String,
}

/// The screen as text, one line per row.
pub fn render(app: &App) -> String {
    let mut terminal = Terminal::new(TestBackend::new(120, 30)).expect("a test terminal");
    terminal.draw(|frame| app.draw(frame)).expect("drawing");
    let buffer = terminal.backend().buffer();
    let mut text = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            text.push_str(buffer[(x, y)].symbol());
        }
        text.push('\n');
    }
    text
}

pub async fn key<B: Bank>(app: &mut App, bank: &mut B, key: Key) {
    let action = app.key(key);
    assert!(perform(app, bank, action).await, "the screen quit");
}

pub async fn press<B: Bank>(app: &mut App, bank: &mut B, text: &str) {
    for c in text.chars() {
        key(app, bank, Key::Char(c)).await;
    }
}

pub async fn enter<B: Bank>(app: &mut App, bank: &mut B) {
    key(app, bank, Key::Enter).await;
}

pub async fn start<B: Bank>(app: &mut App, bank: &mut B) {
    let action = app.start();
    assert!(perform(app, bank, action).await);
}

/// From the welcome screen to the menu, by card and PIN.
pub async fn sign_in_by_card<B: Bank>(app: &mut App, bank: &mut B, secrets: &Secrets) -> Vec<String> {
    let mut screens = Vec::new();
    start(app, bank).await;
    screens.push(render(app));
    assert!(screens[0].contains("Welcome to"), "{}", screens[0]);
    enter(app, bank).await;
    screens.push(render(app));
    assert!(screens[1].contains("1. Card and PIN"), "{}", screens[1]);
    press(app, bank, "1").await;
    press(app, bank, &secrets.card).await;
    enter(app, bank).await;
    press(app, bank, &secrets.pin).await;
    screens.push(render(app));
    enter(app, bank).await;
    screens.push(render(app));
    let menu = screens.last().expect("a screen");
    assert!(menu.contains("choose an operation"), "{menu}");
    assert!(menu.contains("3. Withdraw cash"), "{menu}");
    screens
}

/// Sign in by card, withdraw `amount`, try to withdraw `too_much` (refused
/// as `insufficient_funds`), sign out. Returns every screen seen, after
/// checking that the PIN was never drawn.
pub async fn card_story<B: Bank>(
    bank: &mut B,
    secrets: &Secrets,
    amount: &str,
    too_much: &str,
    show_clock: bool,
) -> Vec<String> {
    let mut app = App::new(show_clock);
    let mut screens = sign_in_by_card(&mut app, bank, secrets).await;

    press(&mut app, bank, "3").await;
    press(&mut app, bank, amount).await;
    enter(&mut app, bank).await;
    let receipt = render(&app);
    assert!(receipt.contains("Receipt"), "{receipt}");
    assert!(receipt.contains(&format!("Withdrawn: {amount}")), "{receipt}");
    assert!(receipt.contains("Clock: request"), "{receipt}");
    screens.push(receipt);
    enter(&mut app, bank).await;

    press(&mut app, bank, "3").await;
    press(&mut app, bank, too_much).await;
    enter(&mut app, bank).await;
    let refused = render(&app);
    assert!(refused.contains("Refused"), "{refused}");
    assert!(refused.contains("Insufficient funds"), "{refused}");
    assert!(refused.contains("[insufficient_funds]"), "{refused}");
    screens.push(refused);
    enter(&mut app, bank).await;

    // "Sign out" is the last entry of the customer menu (sixth at a terminal).
    press(&mut app, bank, "6").await;
    let goodbye = render(&app);
    assert!(goodbye.contains("You are signed out"), "{goodbye}");
    screens.push(goodbye);
    enter(&mut app, bank).await;
    screens.push(render(&app));
    assert!(!app.is_signed_in());
    for screen in &screens {
        assert!(!shows_pin(screen, &secrets.pin), "the PIN was drawn:\n{screen}");
    }
    screens
}
