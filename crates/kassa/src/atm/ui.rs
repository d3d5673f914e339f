//! The ATM screen. [`App`] is a state machine: a key goes in, and out
//! comes nothing, a request to send, or "quit"; a reply goes in and moves
//! it to the next screen. [`App::draw`] renders the current screen. So the
//! tests drive it through ratatui's `TestBackend` with a fake bank, and
//! [`run`] drives it with crossterm and the real client.
//!
//! PINs and passwords are shown as `•` and are dropped from the state as
//! soon as the request is built; nothing here writes a transcript.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Margin, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Text};
use ratatui::widgets::{Block, Paragraph, Wrap};
use serde_json::{Map, Value, json};

use super::script::{describe, describe_item};
use super::wire::{Reply, Tick, WireError};
use super::{Bank, decimals_of, describe_refusal, plain, validate_amount};

/// How many clock ticks the side panel keeps.
const TICKS_KEPT: usize = 200;
/// How long the screen waits for a key before pinging the bank, well
/// inside the server's default 60 s idle timeout.
const IDLE_PING: Duration = Duration::from_secs(20);

/// A key, as the screens understand it (independent of crossterm, for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Enter,
    Backspace,
    Esc,
    Tab,
    BackTab,
    Up,
    Down,
    /// Ctrl-C: leave at once (signing out first).
    Interrupt,
}

/// What the input of a field may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    Digits,
    Phone,
    Amount,
    Text,
}

#[derive(Clone)]
struct Field {
    label: &'static str,
    value: String,
    input: Input,
    secret: bool,
    optional: bool,
    max_len: usize,
}

impl Field {
    fn new(label: &'static str, input: Input) -> Field {
        let max_len = match input {
            Input::Digits | Input::Phone => 24,
            Input::Amount => 20,
            Input::Text => 64,
        };
        Field { label, value: String::new(), input, secret: false, optional: false, max_len }
    }

    fn secret(mut self) -> Field {
        self.secret = true;
        self
    }

    fn optional(mut self) -> Field {
        self.optional = true;
        self
    }

    fn accepts(&self, c: char) -> bool {
        if self.value.chars().count() >= self.max_len {
            return false;
        }
        match self.input {
            Input::Digits => c.is_ascii_digit(),
            Input::Phone => c.is_ascii_digit() || (c == '+' && self.value.is_empty()),
            Input::Amount => c.is_ascii_digit() || (c == '.' && !self.value.contains('.')),
            Input::Text => !c.is_control(),
        }
    }

    fn shown(&self) -> String {
        if self.secret { "•".repeat(self.value.chars().count()) } else { self.value.clone() }
    }
}

impl std::fmt::Debug for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Field").field("label", &self.label).field("value", &self.shown()).finish()
    }
}

/// What a form is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    LoginCard,
    LoginPhone,
    LoginStaff,
    Deposit,
    Withdraw,
    Transfer,
    Customers,
    OpenAccount,
    CloseAccount,
    Transactions,
}

impl Purpose {
    fn title(self) -> &'static str {
        match self {
            Purpose::LoginCard => "Insert card",
            Purpose::LoginPhone => "Sign in with phone",
            Purpose::LoginStaff => "Staff sign-in",
            Purpose::Deposit => "Deposit cash",
            Purpose::Withdraw => "Withdraw cash",
            Purpose::Transfer => "Transfer",
            Purpose::Customers => "Find customers",
            Purpose::OpenAccount => "Open an account",
            Purpose::CloseAccount => "Close an account",
            Purpose::Transactions => "Transactions",
        }
    }

    fn fields(self) -> Vec<Field> {
        match self {
            Purpose::LoginCard => {
                vec![Field::new("Card number", Input::Digits), Field::new("PIN", Input::Digits).secret()]
            }
            Purpose::LoginPhone => {
                vec![Field::new("Phone", Input::Phone), Field::new("Password", Input::Text).secret()]
            }
            Purpose::LoginStaff => vec![
                Field::new("Login", Input::Text),
                Field::new("Password", Input::Text).secret(),
                Field::new("One-time code", Input::Digits).secret().optional(),
            ],
            Purpose::Deposit | Purpose::Withdraw => vec![Field::new("Amount", Input::Amount)],
            Purpose::Transfer => vec![
                Field::new("To (phone +… or account)", Input::Text),
                Field::new("Amount", Input::Amount),
                Field::new("Description", Input::Text).optional(),
            ],
            Purpose::Customers => vec![Field::new("Name, phone or passport", Input::Text).optional()],
            Purpose::OpenAccount => vec![
                Field::new("Customer id", Input::Digits),
                Field::new("Kind (current, savings, debit_card)", Input::Text),
                Field::new("Currency", Input::Text),
            ],
            Purpose::CloseAccount => vec![Field::new("Account", Input::Text)],
            Purpose::Transactions => vec![Field::new("Account (empty: all)", Input::Text).optional()],
        }
    }

    fn op(self) -> &'static str {
        match self {
            Purpose::LoginCard | Purpose::LoginPhone | Purpose::LoginStaff => "login",
            Purpose::Deposit => "deposit",
            Purpose::Withdraw => "withdraw",
            Purpose::Transfer => "transfer",
            Purpose::Customers => "customers",
            Purpose::OpenAccount => "open_account",
            Purpose::CloseAccount => "close_account",
            Purpose::Transactions => "transactions",
        }
    }
}

#[derive(Debug, Clone)]
struct Form {
    purpose: Purpose,
    fields: Vec<Field>,
    focus: usize,
    problem: Option<String>,
}

/// A choice on a menu.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    Form(Purpose),
    Balance,
    History,
    Logout,
}

#[derive(Debug, Clone)]
enum Screen {
    /// Waiting for the bank's `hello`.
    Connecting,
    Welcome,
    /// How to sign in.
    SignIn {
        selected: usize,
    },
    Form(Form),
    Menu {
        selected: usize,
    },
    /// A request is on its way.
    Waiting(&'static str),
    /// A receipt or a refusal; any key goes on to `next`.
    Message {
        title: String,
        lines: Vec<String>,
        refused: bool,
        next: Box<Screen>,
    },
    /// The connection is gone.
    Closed(String),
}

/// The signed-in person.
#[derive(Debug, Clone)]
struct Session {
    name: String,
    role: String,
    currency: Option<String>,
    decimals: u32,
}

impl Session {
    fn is_staff(&self) -> bool {
        self.role != "customer"
    }
}

/// What the screen wants done after a key.
#[derive(PartialEq)]
pub enum Action {
    None,
    Send { op: &'static str, fields: Map<String, Value> },
    Quit,
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The fields may hold a PIN or password.
        match self {
            Action::None => write!(f, "None"),
            Action::Send { op, .. } => write!(f, "Send({op})"),
            Action::Quit => write!(f, "Quit"),
        }
    }
}

/// The whole state of the ATM screen.
#[derive(Debug)]
pub struct App {
    bank: String,
    terminal: Option<String>,
    session: Option<Session>,
    screen: Screen,
    show_clock: bool,
    ticks: VecDeque<Tick>,
    /// The last operation's request and reply clocks, shown in the footer.
    last_clocks: Option<(u64, u64)>,
    /// The operation in flight.
    pending: Option<&'static str>,
    /// A list request's fields (never a sign-in's), to ask for its next page.
    list_request: Map<String, Value>,
    /// The next page of the list on screen: the operation and its request.
    next_page: Option<(&'static str, Map<String, Value>)>,
}

impl App {
    pub fn new(show_clock: bool) -> App {
        App {
            bank: "Kassa".into(),
            terminal: None,
            session: None,
            screen: Screen::Connecting,
            show_clock,
            ticks: VecDeque::new(),
            last_clocks: None,
            pending: None,
            list_request: Map::new(),
            next_page: None,
        }
    }

    /// The first request: `hello`.
    pub fn start(&mut self) -> Action {
        self.pending = Some("hello");
        Action::Send { op: "hello", fields: Map::new() }
    }

    pub fn is_signed_in(&self) -> bool {
        self.session.is_some()
    }

    fn menu(&self) -> Vec<(&'static str, Choice)> {
        let Some(session) = &self.session else { return Vec::new() };
        if session.is_staff() {
            return vec![
                ("Customers", Choice::Form(Purpose::Customers)),
                ("Open an account", Choice::Form(Purpose::OpenAccount)),
                ("Close an account", Choice::Form(Purpose::CloseAccount)),
                ("Transactions", Choice::Form(Purpose::Transactions)),
                ("Sign out", Choice::Logout),
            ];
        }
        let mut menu = vec![("Balance", Choice::Balance)];
        if self.terminal.is_some() {
            menu.push(("Deposit cash", Choice::Form(Purpose::Deposit)));
            menu.push(("Withdraw cash", Choice::Form(Purpose::Withdraw)));
        }
        menu.extend([
            ("Transfer", Choice::Form(Purpose::Transfer)),
            ("History", Choice::History),
            ("Sign out", Choice::Logout),
        ]);
        menu
    }

    fn sign_in_choices(&self) -> Vec<(&'static str, Purpose)> {
        let mut choices = Vec::new();
        if self.terminal.is_some() {
            choices.push(("Card and PIN", Purpose::LoginCard));
        }
        choices.push(("Phone and password", Purpose::LoginPhone));
        choices.push(("Staff", Purpose::LoginStaff));
        choices
    }

    fn form(purpose: Purpose) -> Screen {
        Screen::Form(Form { purpose, fields: purpose.fields(), focus: 0, problem: None })
    }

    fn send(&mut self, op: &'static str, fields: Map<String, Value>) -> Action {
        self.pending = Some(op);
        self.next_page = None;
        self.list_request = if is_list(op) { fields.clone() } else { Map::new() };
        self.screen = Screen::Waiting(op);
        Action::Send { op, fields }
    }

    /// One key.
    pub fn key(&mut self, key: Key) -> Action {
        if key == Key::Interrupt {
            return Action::Quit;
        }
        let (choices, menu) = (self.sign_in_choices(), self.menu());
        match &mut self.screen {
            Screen::Connecting | Screen::Waiting(_) => Action::None,
            Screen::Closed(_) => match key {
                Key::Enter | Key::Esc | Key::Char('q') => Action::Quit,
                _ => Action::None,
            },
            Screen::Welcome => match key {
                Key::Enter => {
                    self.screen = Screen::SignIn { selected: 0 };
                    Action::None
                }
                Key::Char('q') | Key::Esc => Action::Quit,
                _ => Action::None,
            },
            Screen::SignIn { selected } => match pick(key, selected, choices.len()) {
                Pick::Chosen(index) => {
                    if let Some((_, purpose)) = choices.get(index) {
                        self.screen = App::form(*purpose);
                    }
                    Action::None
                }
                Pick::Back => {
                    self.screen = Screen::Welcome;
                    Action::None
                }
                Pick::Moved => Action::None,
            },
            Screen::Menu { selected } => match pick(key, selected, menu.len()) {
                Pick::Chosen(index) => match menu.get(index).map(|(_, choice)| *choice) {
                    Some(Choice::Form(purpose)) => {
                        self.screen = App::form(purpose);
                        Action::None
                    }
                    Some(Choice::Balance) => self.send("balance", Map::new()),
                    Some(Choice::History) => self.send("history", Map::new()),
                    Some(Choice::Logout) => self.send("logout", Map::new()),
                    None => Action::None,
                },
                Pick::Back | Pick::Moved => Action::None,
            },
            Screen::Message { next, .. } => {
                if key == Key::Char('n')
                    && let Some((op, fields)) = self.next_page.take()
                {
                    return self.send(op, fields);
                }
                if matches!(key, Key::Enter | Key::Esc | Key::Char(' ')) {
                    self.screen = std::mem::replace(next, Screen::Welcome);
                }
                Action::None
            }
            Screen::Form(form) => match key {
                Key::Esc => {
                    self.screen = if self.session.is_some() {
                        Screen::Menu { selected: 0 }
                    } else {
                        Screen::SignIn { selected: 0 }
                    };
                    Action::None
                }
                Key::Char(c) => {
                    if let Some(field) = form.fields.get_mut(form.focus)
                        && field.accepts(c)
                    {
                        field.value.push(c);
                        form.problem = None;
                    }
                    Action::None
                }
                Key::Backspace => {
                    if let Some(field) = form.fields.get_mut(form.focus) {
                        field.value.pop();
                    }
                    Action::None
                }
                Key::Tab | Key::Down => {
                    form.focus = (form.focus + 1) % form.fields.len().max(1);
                    Action::None
                }
                Key::BackTab | Key::Up => {
                    form.focus = form.focus.checked_sub(1).unwrap_or(form.fields.len().saturating_sub(1));
                    Action::None
                }
                Key::Enter => {
                    let last = form.focus + 1 >= form.fields.len();
                    let filled =
                        form.fields.get(form.focus).is_some_and(|field| !field.value.is_empty() || field.optional);
                    if !last && filled {
                        form.focus += 1;
                        return Action::None;
                    }
                    let form = form.clone();
                    self.submit(form)
                }
                Key::Interrupt => Action::Quit,
            },
        }
    }

    /// Builds a form's request, or shows why it cannot be sent.
    fn submit(&mut self, mut form: Form) -> Action {
        let decimals = self.session.as_ref().map_or(2, |session| session.decimals);
        match request(&form, decimals) {
            Ok(fields) => {
                // The typed secrets go out in the request and are not kept.
                let op = form.purpose.op();
                self.send(op, fields)
            }
            Err((focus, problem)) => {
                form.focus = focus;
                form.problem = Some(problem);
                self.screen = Screen::Form(form);
                Action::None
            }
        }
    }

    /// The reply to the request in flight (or the failure to get one).
    pub fn reply(&mut self, result: Result<Reply, WireError>, ticks: Vec<Tick>) {
        for tick in ticks {
            if self.ticks.len() == TICKS_KEPT {
                self.ticks.pop_front();
            }
            self.ticks.push_back(tick);
        }
        let op = self.pending.take().unwrap_or("request");
        let reply = match result {
            Ok(reply) => reply,
            Err(error) => {
                self.session = None;
                self.screen = Screen::Closed(error.to_string());
                return;
            }
        };
        self.last_clocks = Some((reply.request_clock, reply.clock));
        let clocks = format!("Clock: request {} → reply {}", reply.request_clock, reply.clock);
        let body = match &reply.body {
            Err(refusal) => {
                let closing = matches!(refusal.code.as_str(), "idle_timeout" | "server_busy" | "frame_too_large");
                if op == "ping" && !closing {
                    // A keep-alive's refusal is nothing the person asked for.
                    return;
                }
                let signed_out = refusal.code == "invalid_token" || closing;
                if signed_out {
                    self.session = None;
                }
                let next = match (op, closing, &self.session) {
                    (_, true, _) => Screen::Closed(describe_refusal(refusal)),
                    ("hello", _, _) => Screen::Closed(describe_refusal(refusal)),
                    ("login", _, _) => Screen::SignIn { selected: 0 },
                    (_, _, Some(_)) => Screen::Menu { selected: 0 },
                    (_, _, None) => Screen::Welcome,
                };
                self.screen = Screen::Message {
                    title: "Refused".into(),
                    lines: vec![describe_refusal(refusal), String::new(), clocks],
                    refused: true,
                    next: Box::new(next),
                };
                return;
            }
            Ok(body) => body,
        };
        match op {
            "hello" => {
                self.bank = plain(body.get("bank"));
                self.terminal =
                    body.get("terminal").and_then(Value::as_object).map(|terminal| plain(terminal.get("name")));
                self.screen = Screen::Welcome;
            }
            "login" => {
                let account = body.get("account").and_then(Value::as_object);
                let balance = account.and_then(|account| account.get("balance")).and_then(Value::as_str);
                self.session = Some(Session {
                    name: plain(body.get("name")),
                    role: plain(body.get("role")),
                    currency: account
                        .and_then(|account| account.get("currency"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    decimals: balance.map_or(2, decimals_of),
                });
                self.screen = Screen::Menu { selected: 0 };
            }
            "logout" => {
                self.session = None;
                self.screen = Screen::Message {
                    title: "Goodbye".into(),
                    lines: vec!["You are signed out. Please take your card.".into(), String::new(), clocks],
                    refused: false,
                    next: Box::new(Screen::Welcome),
                };
            }
            "ping" => {}
            _ => {
                if is_list(op)
                    && let Some(cursor) = body.get("next_cursor").and_then(Value::as_str)
                {
                    let mut fields = std::mem::take(&mut self.list_request);
                    fields.insert("cursor".into(), json!(cursor));
                    self.next_page = Some((op, fields));
                }
                let mut lines = receipt(op, &reply);
                lines.push(String::new());
                lines.push(clocks);
                self.screen = Screen::Message {
                    title: if matches!(op, "deposit" | "withdraw" | "transfer" | "balance") {
                        "Receipt"
                    } else {
                        op_title(op)
                    }
                    .into(),
                    lines,
                    refused: false,
                    next: Box::new(Screen::Menu { selected: 0 }),
                };
            }
        }
    }

    /// Renders the whole screen.
    pub fn draw(&self, frame: &mut Frame<'_>) {
        let area = frame.area();
        let [main, footer] = Layout::vertical([Constraint::Min(5), Constraint::Length(1)]).areas(area);
        let (main, side) = if self.show_clock {
            let [main, side] = Layout::horizontal([Constraint::Min(40), Constraint::Length(46)]).areas(main);
            (main, Some(side))
        } else {
            (main, None)
        };
        let title = match &self.terminal {
            Some(terminal) => format!(" {} — {} ", self.bank, terminal),
            None => format!(" {} ", self.bank),
        };
        let block = Block::bordered().title(title);
        let inner = block.inner(main);
        frame.render_widget(block, main);
        frame.render_widget(
            Paragraph::new(self.body()).wrap(Wrap { trim: false }),
            inner.inner(Margin { horizontal: 1, vertical: 0 }),
        );
        if let Some(side) = side {
            self.draw_clock(frame, side);
        }
        let who = match &self.session {
            Some(session) => format!("{} ({})", session.name, session.role),
            None => "not signed in".into(),
        };
        let clocks = self.last_clocks.map_or(String::new(), |(sent, got)| format!("  last op clock {sent} → {got}"));
        frame.render_widget(Paragraph::new(format!(" {who}{clocks}  | {}", self.hints())), footer);
    }

    fn draw_clock(&self, frame: &mut Frame<'_>, area: Rect) {
        let block = Block::bordered().title(" Lamport clock ");
        let rows = usize::from(block.inner(area).height);
        let start = self.ticks.len().saturating_sub(rows);
        let lines: Vec<Line<'_>> = self.ticks.iter().skip(start).map(|tick| Line::from(tick.to_string())).collect();
        // Long clocks wrap rather than being cut.
        frame.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: false }), area);
    }

    fn hints(&self) -> &'static str {
        match &self.screen {
            Screen::Welcome => "Enter: sign in  q: quit",
            Screen::SignIn { .. } | Screen::Menu { .. } => "number or ↑↓ Enter: choose  Esc: back",
            Screen::Form(_) => "Enter: next/submit  Tab: next field  Esc: cancel",
            Screen::Message { .. } if self.next_page.is_some() => "Enter: continue  n: next page",
            Screen::Message { .. } => "Enter: continue",
            Screen::Closed(_) => "Enter: quit",
            Screen::Connecting | Screen::Waiting(_) => "please wait…",
        }
    }

    fn body(&self) -> Text<'static> {
        let bold = Style::default().add_modifier(Modifier::BOLD);
        let mut lines: Vec<Line<'static>> = Vec::new();
        match &self.screen {
            Screen::Connecting => lines.push(Line::from("Connecting to the bank…")),
            Screen::Welcome => {
                lines.push(Line::styled(format!("Welcome to {}", self.bank), bold));
                lines.push(Line::from(""));
                lines.push(Line::from("Press Enter to sign in."));
            }
            Screen::SignIn { selected } => {
                lines.push(Line::styled("How would you like to sign in?", bold));
                lines.push(Line::from(""));
                let choices = self.sign_in_choices();
                lines.extend(numbered(choices.iter().map(|(label, _)| *label), *selected));
            }
            Screen::Menu { selected } => {
                let name = self.session.as_ref().map_or(String::new(), |session| session.name.clone());
                lines.push(Line::styled(format!("Hello, {name} — choose an operation:"), bold));
                lines.push(Line::from(""));
                let menu = self.menu();
                lines.extend(numbered(menu.iter().map(|(label, _)| *label), *selected));
            }
            Screen::Form(form) => {
                lines.push(Line::styled(form.purpose.title().to_owned(), bold));
                if matches!(form.purpose, Purpose::Deposit | Purpose::Withdraw | Purpose::Transfer)
                    && let Some(currency) = self.session.as_ref().and_then(|session| session.currency.clone())
                {
                    lines.push(Line::from(format!("Currency: {currency}")));
                }
                lines.push(Line::from(""));
                for (index, field) in form.fields.iter().enumerate() {
                    let marker = if index == form.focus { "> " } else { "  " };
                    let cursor = if index == form.focus { "_" } else { "" };
                    let optional = if field.optional { " (optional)" } else { "" };
                    lines.push(Line::from(format!("{marker}{}{optional}: {}{cursor}", field.label, field.shown())));
                }
                if let Some(problem) = &form.problem {
                    lines.push(Line::from(""));
                    lines.push(Line::styled(format!("! {problem}"), bold));
                }
            }
            Screen::Waiting(op) => lines.push(Line::from(format!("{}: please wait…", op_title(op)))),
            Screen::Message { title, lines: text, refused, .. } => {
                let style = if *refused { bold.add_modifier(Modifier::REVERSED) } else { bold };
                lines.push(Line::styled(title.clone(), style));
                lines.push(Line::from(""));
                lines.extend(text.iter().map(|line| Line::from(line.clone())));
            }
            Screen::Closed(why) => {
                lines.push(Line::styled("Out of service", bold));
                lines.push(Line::from(""));
                lines.push(Line::from(why.clone()));
            }
        }
        Text::from(lines)
    }
}

enum Pick {
    Chosen(usize),
    Back,
    Moved,
}

/// Menu keys: a digit chooses at once, arrows move, Enter chooses, Esc goes back.
fn pick(key: Key, selected: &mut usize, count: usize) -> Pick {
    match key {
        Key::Char(c) => match c.to_digit(10).and_then(|digit| usize::try_from(digit).ok()) {
            Some(digit) if (1..=count).contains(&digit) => Pick::Chosen(digit - 1),
            _ => Pick::Moved,
        },
        Key::Up | Key::BackTab => {
            *selected = selected.checked_sub(1).unwrap_or(count.saturating_sub(1));
            Pick::Moved
        }
        Key::Down | Key::Tab => {
            *selected = (*selected + 1) % count.max(1);
            Pick::Moved
        }
        Key::Enter => Pick::Chosen(*selected),
        Key::Esc => Pick::Back,
        _ => Pick::Moved,
    }
}

fn numbered<'a>(labels: impl Iterator<Item = &'a str>, selected: usize) -> Vec<Line<'static>> {
    labels
        .enumerate()
        .map(|(index, label)| {
            let line = format!("{} {}. {label}", if index == selected { ">" } else { " " }, index + 1);
            if index == selected {
                Line::styled(line, Style::default().add_modifier(Modifier::REVERSED))
            } else {
                Line::from(line)
            }
        })
        .collect()
}

fn is_list(op: &str) -> bool {
    matches!(op, "history" | "customers" | "transactions")
}

fn op_title(op: &str) -> &'static str {
    match op {
        "balance" => "Balance",
        "deposit" => "Deposit",
        "withdraw" => "Withdrawal",
        "transfer" => "Transfer",
        "history" => "History",
        "customers" => "Customers",
        "open_account" => "Account opened",
        "close_account" => "Account closed",
        "transactions" => "Transactions",
        "login" => "Signing in",
        "logout" => "Signing out",
        "hello" => "Connecting",
        _ => "Reply",
    }
}

/// The lines of a receipt for a successful reply.
fn receipt(op: &str, reply: &Reply) -> Vec<String> {
    let Ok(body) = &reply.body else { return Vec::new() };
    let get = |name: &str| plain(body.get(name));
    match op {
        "balance" => vec![
            format!("Account:   {}", get("account")),
            format!("Balance:   {} {}", get("balance"), get("currency")),
            format!("Available: {} {}", get("available"), get("currency")),
        ],
        "deposit" | "withdraw" | "transfer" => {
            let transfer = body.get("transfer").and_then(Value::as_object);
            let field = |name: &str| plain(transfer.and_then(|transfer| transfer.get(name)));
            let verb = match op {
                "deposit" => "Deposited",
                "withdraw" => "Withdrawn",
                _ => "Transferred",
            };
            // The transfer names accounts by the bank's internal ids; the
            // reply's `account` is the number the customer knows.
            let mut lines = vec![format!("{verb}: {} {}", field("amount"), field("currency"))];
            if body.contains_key("account") {
                lines.push(format!("Account:   {}", get("account")));
            }
            if !field("description").is_empty() && field("description") != "—" {
                lines.push(format!("For:       {}", field("description")));
            }
            lines.push(format!("Transfer:  {} ({})", field("id"), field("state")));
            if body.contains_key("balance") {
                lines.push(format!("Balance:   {} {}", get("balance"), get("currency")));
            }
            lines
        }
        "open_account" | "close_account" => {
            let account = body.get("account");
            let field = |name: &str| plain(account.and_then(|account| account.get(name)));
            vec![
                format!("Account:   {}", field("number")),
                format!("Kind:      {}", field("kind")),
                format!("Customer:  {}", field("owner")),
                format!("Balance:   {} {}", field("balance"), field("currency")),
                format!("Status:    {}", field("status")),
            ]
        }
        "history" | "customers" | "transactions" => {
            let items = body.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
            if items.is_empty() {
                return vec!["Nothing to show.".into()];
            }
            items.iter().map(|item| describe_item(op, item)).collect()
        }
        _ => describe(op, reply)
            .into_iter()
            .map(|line| line.split_once("] ").map_or(line.clone(), |(_, rest)| rest.to_owned()))
            .collect(),
    }
}

/// A form's request fields, or the index of the field at fault and why.
fn request(form: &Form, decimals: u32) -> Result<Map<String, Value>, (usize, String)> {
    let value = |index: usize| form.fields.get(index).map_or("", |field| field.value.trim());
    for (index, field) in form.fields.iter().enumerate() {
        if !field.optional && field.value.trim().is_empty() {
            return Err((index, format!("Please enter the {}.", field.label.to_lowercase())));
        }
    }
    let amount = |index: usize| validate_amount(value(index), decimals).map_err(|problem| (index, problem.text()));
    let mut fields = Map::new();
    match form.purpose {
        Purpose::LoginCard => {
            fields.insert("card_number".into(), json!(value(0)));
            fields.insert("pin".into(), json!(value(1)));
        }
        Purpose::LoginPhone => {
            fields.insert("phone".into(), json!(value(0)));
            fields.insert("password".into(), json!(value(1)));
        }
        Purpose::LoginStaff => {
            fields.insert("staff_login".into(), json!(value(0)));
            fields.insert("password".into(), json!(value(1)));
            if !value(2).is_empty() {
                fields.insert("totp".into(), json!(value(2)));
            }
        }
        Purpose::Deposit | Purpose::Withdraw => {
            fields.insert("amount".into(), json!(amount(0)?));
        }
        Purpose::Transfer => {
            let to = value(0);
            let key = if to.starts_with('+') { "to_phone" } else { "to_account" };
            fields.insert(key.into(), json!(to));
            fields.insert("amount".into(), json!(amount(1)?));
            if !value(2).is_empty() {
                fields.insert("description".into(), json!(value(2)));
            }
        }
        Purpose::Customers => {
            if !value(0).is_empty() {
                fields.insert("query".into(), json!(value(0)));
            }
        }
        Purpose::OpenAccount => {
            let customer: u64 = value(0).parse().map_err(|_| (0, "The customer id is a number.".to_owned()))?;
            let kind = value(1);
            if !matches!(kind, "current" | "savings" | "debit_card") {
                return Err((1, "The kind is current, savings or debit_card.".into()));
            }
            let currency = value(2).to_uppercase();
            if currency.len() != 3 || !currency.bytes().all(|byte| byte.is_ascii_alphabetic()) {
                return Err((2, "The currency is a three-letter code such as BYN.".into()));
            }
            fields.insert("customer_id".into(), json!(customer));
            fields.insert("kind".into(), json!(kind));
            fields.insert("currency".into(), json!(currency));
        }
        Purpose::CloseAccount => {
            fields.insert("account".into(), json!(value(0)));
        }
        Purpose::Transactions => {
            if !value(0).is_empty() {
                fields.insert("account".into(), json!(value(0)));
            }
        }
    }
    Ok(fields)
}

/// Sends what an action asks for and hands the reply back to the screen.
pub async fn perform<B: Bank>(app: &mut App, bank: &mut B, action: Action) -> bool {
    match action {
        Action::None => true,
        Action::Quit => false,
        Action::Send { op, fields } => {
            let result = bank.call(op, fields).await;
            let ticks = bank.take_ticks();
            app.reply(result, ticks);
            true
        }
    }
}

/// Maps a crossterm key to the screen's keys.
fn key_of(event: &crossterm::event::KeyEvent) -> Option<Key> {
    use crossterm::event::{KeyCode, KeyEventKind, KeyModifiers};
    if event.kind == KeyEventKind::Release {
        return None;
    }
    Some(match event.code {
        KeyCode::Char('c') if event.modifiers.contains(KeyModifiers::CONTROL) => Key::Interrupt,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Enter => Key::Enter,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Esc => Key::Esc,
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        _ => return None,
    })
}

/// The interactive screen on the real terminal, until the person quits.
pub async fn run<B: Bank>(bank: &mut B, show_clock: bool) -> anyhow::Result<ExitCode> {
    let mut terminal = ratatui::try_init()?;
    let result = event_loop(&mut terminal, bank, show_clock).await;
    ratatui::restore();
    result
}

async fn event_loop<B: Bank>(
    terminal: &mut ratatui::DefaultTerminal,
    bank: &mut B,
    show_clock: bool,
) -> anyhow::Result<ExitCode> {
    use crossterm::event::{self, Event};
    let mut app = App::new(show_clock);
    let start = app.start();
    terminal.draw(|frame| app.draw(frame))?;
    perform(&mut app, bank, start).await;
    loop {
        terminal.draw(|frame| app.draw(frame))?;
        // Waiting for a key blocks this thread, which is the screen's only job.
        if !event::poll(IDLE_PING)? {
            // An ATM keeps its connection while it waits for a customer, too.
            if !matches!(app.screen, Screen::Closed(_) | Screen::Connecting) {
                app.pending = Some("ping");
                perform(&mut app, bank, Action::Send { op: "ping", fields: Map::new() }).await;
            }
            continue;
        }
        let Event::Key(key) = event::read()? else { continue };
        let Some(key) = key_of(&key) else { continue };
        let action = app.key(key);
        if matches!(action, Action::Send { .. }) {
            terminal.draw(|frame| app.draw(frame))?;
        }
        if !perform(&mut app, bank, action).await {
            break;
        }
    }
    if app.is_signed_in() {
        // Leaving a signed-in session open would let the next person at the machine use it.
        let _ = bank.call("logout", Map::new()).await;
    }
    Ok(ExitCode::SUCCESS)
}
