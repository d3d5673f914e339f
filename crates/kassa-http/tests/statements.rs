//! Statements over HTTP: JSON, CSV and XLSX of one account agree line by
//! line and in their totals; bank-day boundaries; who may ask; bad ranges.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::float_arithmetic,
    clippy::float_cmp,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::print_stdout,
    clippy::large_futures,
    missing_debug_implementations
)]

mod common;
use common::*;

use kassa_core::ledger::NewTransfer;
use kassa_core::money::{Amount, Currency};
use kassa_core::{AccountId, TransferId};
use kassa_service::statements::{StatementQuery, StatementScope};

/// The bank's zone in the test settings (the default).
const ZONE: &str = "Europe/Minsk";

fn today() -> jiff::civil::Date {
    jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::get(ZONE).unwrap()).date()
}

fn day(offset: i64) -> String {
    today().checked_add(jiff::Span::new().days(offset)).unwrap().to_string()
}

/// Fetches a statement as raw bytes with its headers.
async fn fetch(app: &App, path: &str, token: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let response = app.client.get(format!("{}{path}", app.base)).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

/// An RFC 4180 reader: quoted fields may hold commas, quotes (doubled) and
/// line breaks; records end with CRLF.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' => {
                assert!(field.is_empty(), "a quote inside an unquoted field: {field:?}");
                quoted = true;
            }
            ',' => record.push(std::mem::take(&mut field)),
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "CR without LF");
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            '\n' => panic!("a bare LF ends a record"),
            _ => field.push(c),
        }
    }
    assert!(!quoted && field.is_empty() && record.is_empty(), "the CSV does not end with CRLF");
    records
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_else(|| panic!("not a string: {value}")).to_owned()
}

/// What a description looks like in the CSV: formula-like text gets a `'`.
fn defused(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@']) { format!("'{text}") } else { text.to_owned() }
}

/// `2026-11-22T23:59:00+03:00` → `2026-11-22 23:59:00`.
fn local(at: &str) -> String {
    at[..19].replacen('T', " ", 1)
}

/// The rows a statement's JSON says the CSV and the XLSX hold: opening,
/// lines, totals, closing, each as the ten columns (amounts as decimals).
fn expected_rows(json: &Value) -> Vec<[String; 10]> {
    let currency = text(&json["account"]["currency"]);
    let empty = String::new;
    let mut rows = vec![[
        text(&json["from"]),
        empty(),
        "opening_balance".into(),
        "Opening balance".into(),
        empty(),
        empty(),
        empty(),
        empty(),
        text(&json["opening_balance"]),
        currency.clone(),
    ]];
    for item in json["items"].as_array().unwrap() {
        rows.push([
            local(&text(&item["at"])),
            text(&item["transfer_id"]),
            text(&item["kind"]),
            text(&item["description"]),
            text(&item["counterparty_account"]),
            text(&item["counterparty_name"]),
            text(&item["debit"]),
            text(&item["credit"]),
            text(&item["balance_after"]),
            currency.clone(),
        ]);
    }
    rows.push([
        text(&json["to"]),
        empty(),
        "totals".into(),
        "Totals".into(),
        empty(),
        empty(),
        text(&json["total_debits"]),
        text(&json["total_credits"]),
        empty(),
        currency.clone(),
    ]);
    rows.push([
        text(&json["to"]),
        empty(),
        "closing_balance".into(),
        "Closing balance".into(),
        empty(),
        empty(),
        empty(),
        empty(),
        text(&json["closing_balance"]),
        currency,
    ]);
    rows
}

/// Minor units of a decimal string with two places.
fn minor(amount: &str) -> i64 {
    let (whole, fraction) = amount.split_once('.').unwrap_or((amount, "00"));
    let negative = whole.starts_with('-');
    let value = whole.trim_start_matches('-').parse::<i64>().unwrap() * 100 + fraction.parse::<i64>().unwrap();
    if negative { -value } else { value }
}

/// An Excel serial date-time as `YYYY-MM-DD HH:MM:SS` (or the date alone
/// at midnight when `date_only`).
fn excel_text(serial: f64, date_only: bool) -> String {
    let days = serial.floor() as i64;
    let seconds = ((serial - serial.floor()) * 86_400.0).round() as i64;
    // Serial 25569 is 1970-01-01.
    let (y, m, d) = kassa_service::people::civil_from_days(days - 25_569);
    if date_only {
        assert_eq!(seconds, 0, "a date cell with a time");
        return format!("{y:04}-{m:02}-{d:02}");
    }
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60)
}

async fn statement_formats_agree(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let payer = app.register(1).await;
    let payee = app.register(2).await;
    let from = app.open_account(&payer.token).await;
    let to = app.open_account(&payee.token).await;
    app.deposit(&from, "100.00").await;
    let descriptions = ["Rent, \"May\"", "=HYPERLINK(\"http://evil\")", "-5 for coffee", "plain"];
    for (n, description) in descriptions.iter().enumerate() {
        let answer = app
            .post(
                "/api/v1/transfers",
                Some(&payer.token),
                json!({"from_account": id_of(&from).to_string(), "to_phone": payee.phone,
                       "amount": format!("{}.25", n + 1), "currency": "BYN", "description": description}),
            )
            .await;
        assert_eq!(answer.status, 201, "{engine:?}: {}", answer.body);
    }
    let base = format!("/api/v1/accounts/{}/statement?from={}&to={}", id_of(&from), day(-1), day(1));

    let json = app.get(&format!("{base}&format=json"), &payer.token).await;
    assert_eq!(json.status, 200, "{engine:?}: {}", json.body);
    let json = json.body;
    let items = json["items"].as_array().unwrap();
    assert_eq!(items.len(), 5, "{json}");
    assert_eq!(json["count"], 5);
    assert_eq!(json["opening_balance"], "0.00");
    assert_eq!(json["total_credits"], "100.00");
    assert_eq!(json["total_debits"], "11.00");
    assert_eq!(json["closing_balance"], "89.00");
    assert_eq!(json["closing_balance"].as_str().unwrap(), app.balance(&payer.token, id_of(&from)).await);
    assert_eq!(json["account"]["number"], from["number"]);
    assert_eq!(json["account"]["owner"], "Ivan P.");
    // Oldest first; the deposit comes from the cash desk, the payments go to Anna.
    assert_eq!(items[0]["kind"], "deposit");
    assert_eq!(items[0]["credit"], "100.00");
    assert_eq!(items[0]["counterparty_name"], "cash desk");
    for (item, description) in items[1..].iter().zip(descriptions) {
        assert_eq!(item["description"], description);
        assert_eq!(item["counterparty_account"], to["number"]);
        assert_eq!(item["counterparty_name"], "Anna I.");
        assert_eq!(item["credit"], "");
    }
    let mut running = minor(json["opening_balance"].as_str().unwrap());
    for item in items {
        let amount = |field: &str| item[field].as_str().filter(|text| !text.is_empty()).map_or(0, minor);
        assert!((amount("debit") == 0) != (amount("credit") == 0), "one side only: {item}");
        running += amount("credit") - amount("debit");
        assert_eq!(running, minor(item["balance_after"].as_str().unwrap()), "{item}");
        assert!(item["at"].as_str().unwrap().ends_with("+03:00"), "{item}");
    }

    // CSV: the same rows, quoted so that they read back exactly.
    let (status, headers, body) = fetch(&app, &format!("{base}&format=csv"), &payer.token).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(disposition.starts_with("attachment; filename=\"statement-") && disposition.ends_with(".csv\""));
    let records = parse_csv(std::str::from_utf8(&body).unwrap());
    assert_eq!(
        records[0],
        [
            "date_time",
            "transfer_id",
            "kind",
            "description",
            "counterparty_account",
            "counterparty_name",
            "debit",
            "credit",
            "balance",
            "currency"
        ]
    );
    let expected = expected_rows(&json);
    assert_eq!(records.len() - 1, expected.len());
    for (record, row) in records[1..].iter().zip(&expected) {
        let mut row = row.clone();
        row[3] = if row[2].ends_with("balance") || row[2] == "totals" { row[3].clone() } else { defused(&row[3]) };
        assert_eq!(record, &row.to_vec());
    }

    // XLSX: the same rows as typed cells: real dates, numbers, a totals row.
    let (status, headers, body) = fetch(&app, &format!("{base}&format=xlsx"), &payer.token).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet");
    assert!(headers["content-disposition"].to_str().unwrap().ends_with(".xlsx\""));
    use calamine::{Data, Reader as _, Xlsx};
    let mut workbook: Xlsx<_> = calamine::open_workbook_from_rs(std::io::Cursor::new(body)).unwrap();
    let range = workbook.worksheet_range("Statement").unwrap();
    let rows: Vec<&[Data]> = range.rows().collect();
    assert_eq!(rows.len() - 1, expected.len());
    assert_eq!(rows[0][0], Data::String("date_time".into()));
    for (row, want) in rows[1..].iter().zip(&expected) {
        let summary = want[1].is_empty();
        match &row[0] {
            Data::DateTime(when) => assert_eq!(excel_text(when.as_f64(), summary), want[0]),
            other => panic!("a date cell holds {other:?}"),
        }
        for col in 1..10 {
            let cell = row.get(col).cloned().unwrap_or(Data::Empty);
            if (6..=8).contains(&col) {
                if want[col].is_empty() {
                    assert_eq!(cell, Data::Empty, "column {col} of {want:?}");
                } else {
                    let Data::Float(number) = cell else { panic!("column {col} is not a number: {cell:?}") };
                    assert_eq!((number * 100.0).round() as i64, minor(&want[col]), "column {col} of {want:?}");
                }
            } else if want[col].is_empty() {
                assert_eq!(cell, Data::Empty, "column {col} of {want:?}");
            } else {
                assert_eq!(cell, Data::String(want[col].clone()), "column {col}");
            }
        }
    }

    // The request was journaled.
    let journal = app.get("/api/v1/staff/audit?action=statement.export&limit=10", &app.manager).await;
    assert_eq!(journal.status, 200, "{}", journal.body);
    let events = journal.body["items"].as_array().unwrap();
    assert_eq!(events.len(), 3, "{}", journal.body);
    assert!(events.iter().all(|event| event["actor"] == format!("customer:{}", payer.id)), "{}", journal.body);
}
on_both_engines!(statement_formats_agree);

async fn quiet_ranges_and_boundaries(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let owner = app.register(1).await;
    let account = app.open_account(&owner.token).await;
    app.deposit(&account, "42.50").await;
    let path = |from: &str, to: &str| format!("/api/v1/accounts/{}/statement?from={from}&to={to}", id_of(&account));

    // Before the account existed: nothing, zero at both ends.
    let before = app.get(&path("2020-01-01", "2020-12-31"), &owner.token).await;
    assert_eq!(before.status, 200, "{}", before.body);
    assert_eq!(before.body["items"], json!([]));
    assert_eq!(before.body["opening_balance"], "0.00");
    assert_eq!(before.body["closing_balance"], "0.00");

    // Days after the deposit with no transfers: opening = closing = balance.
    let later = app.get(&path(&day(2), &day(3)), &owner.token).await;
    assert_eq!(later.status, 200, "{}", later.body);
    assert_eq!(later.body["count"], 0);
    assert_eq!(later.body["opening_balance"], "42.50");
    assert_eq!(later.body["closing_balance"], "42.50");
    assert_eq!(later.body["total_debits"], "0.00");

    // The deposit's own bank day, and only that day, lists it.
    let around = app.get(&path(&day(-1), &day(1)), &owner.token).await;
    let deposit_day = around.body["items"][0]["date"].as_str().unwrap().to_owned();
    let on = app.get(&path(&deposit_day, &deposit_day), &owner.token).await;
    assert_eq!(on.body["count"], 1, "{}", on.body);
    let day_before = jiff::civil::Date::strptime("%Y-%m-%d", &deposit_day).unwrap().yesterday().unwrap().to_string();
    let off = app.get(&path(&day_before, &day_before), &owner.token).await;
    assert_eq!(off.body["count"], 0, "{}", off.body);
    assert_eq!(off.body["closing_balance"], "0.00");
}
on_both_engines!(quiet_ranges_and_boundaries);

async fn only_the_owner_and_staff(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let owner = app.register(1).await;
    let other = app.register(2).await;
    let account = app.open_account(&owner.token).await;
    app.deposit(&account, "10.00").await;
    let query = format!("statement?from={}&to={}", day(-1), day(1));
    let own = format!("/api/v1/accounts/{}/{query}", id_of(&account));
    let staff = format!("/api/v1/staff/accounts/{}/{query}", id_of(&account));

    let stranger = app.get(&own, &other.token).await;
    assert_eq!((stranger.status, stranger.code()), (404, "account_not_found"), "{}", stranger.body);
    let missing = app.get(&format!("/api/v1/accounts/999999/{query}"), &owner.token).await;
    assert_eq!((missing.status, missing.code()), (404, "account_not_found"));
    let teller_on_own_route = app.get(&own, &app.teller).await;
    assert_eq!(teller_on_own_route.status, 403);
    let customer_on_staff_route = app.get(&staff, &owner.token).await;
    assert_eq!(customer_on_staff_route.status, 403);
    let anonymous = app.send(Method::GET, &own, None, None).await;
    assert_eq!(anonymous.status, 401);

    let teller = app.get(&staff, &app.teller).await;
    assert_eq!(teller.status, 200, "{}", teller.body);
    let mine = app.get(&own, &owner.token).await;
    assert_eq!(teller.body["items"], mine.body["items"]);
    assert_eq!(teller.body["closing_balance"], "10.00");
}
on_both_engines!(only_the_owner_and_staff);

async fn bad_ranges_are_422_with_a_code(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let owner = app.register(1).await;
    let account = app.open_account(&owner.token).await;
    let base = format!("/api/v1/accounts/{}/statement", id_of(&account));
    for (query, code) in [
        ("?from=2026-02-30&to=2026-03-01", "date_invalid"),
        ("?from=2026-3-1&to=2026-03-01", "date_invalid"),
        ("?from=2026-03-02&to=2026-03-01", "range_invalid"),
        ("?from=2025-01-01&to=2026-01-02", "range_too_long"),
        ("?to=2026-03-01", "date_required"),
        ("?from=2026-03-01&to=2026-03-01&format=pdf", "format_invalid"),
    ] {
        let answer = app.get(&format!("{base}{query}"), &owner.token).await;
        assert_eq!(answer.status, 422, "{query}: {}", answer.body);
        assert!(answer.codes().iter().any(|c| c == code), "{query}: {}", answer.body);
        assert_eq!(answer.headers["content-type"], "application/problem+json", "{query}");
    }
    // A full year, leap day included, is allowed.
    let year = app.get(&format!("{base}?from=2024-01-01&to=2024-12-31"), &owner.token).await;
    assert_eq!(year.status, 200, "{}", year.body);
}
on_both_engines!(bad_ranges_are_422_with_a_code);

// ------------------------------------------------- exact bank-day boundaries

/// A bank on a store the test can write transfers to at chosen times.
async fn bank_on(engine: Engine) -> Option<(Bank, Arc<dyn LedgerStore>, Guard)> {
    let (store, db, guard) = open_store(engine, 4).await?;
    let ledger = Ledger::start(store.clone(), LedgerConfig::default());
    let mut settings = Settings::new(BankIdentity::default(), SecretBytes(vec![KEY; 32]));
    settings.argon2_memory_kib = 1024;
    assert_eq!(settings.bank.timezone, ZONE);
    let bank = Bank::start(db, ledger, settings).await.unwrap();
    Some((bank, store, guard))
}

/// Microseconds of a local time in the bank's zone.
fn local_us(text: &str) -> i64 {
    let civil: jiff::civil::DateTime = text.parse().unwrap();
    civil.to_zoned(jiff::tz::TimeZone::get(ZONE).unwrap()).unwrap().timestamp().as_microsecond()
}

async fn a_transfer_at_23_59_is_on_that_day(engine: Engine) {
    let Some((bank, store, _guard)) = bank_on(engine).await else { return };
    let registered =
        bank.register(&Caller::anonymous("127.0.0.1"), serde_json::from_value(registration(1)).unwrap()).await.unwrap();
    let customer = Caller {
        user: Some(kassa_service::SignedIn {
            id: registered.customer.id,
            role: kassa_service::Role::Customer,
            session_id: "test".into(),
            restricted: false,
        }),
        origin: "127.0.0.1".into(),
        clock: None,
    };
    let account = bank.open_account(&customer, None, serde_json::from_value(open_form()).unwrap()).await.unwrap();
    let cash = {
        let rows = kassa_store::sql::read(&**bank.database(), |tx| {
            tx.query("SELECT account_id FROM system_accounts WHERE kind = 'cash' AND currency = 'BYN'", &[])
        })
        .await
        .unwrap();
        rows[0].int(0).unwrap()
    };
    let byn = Currency::from_code("BYN").unwrap();
    // Oldest first: the ledger never stamps a transfer before the newest.
    let moments = [
        ("2026-03-09T23:59:59.999999", 1_00),
        ("2026-03-10T00:00:00", 2_00),
        ("2026-03-10T23:59:00", 4_00),
        ("2026-03-10T23:59:59.999999", 8_00),
        ("2026-03-11T00:00:00", 16_00),
    ];
    for (n, (at, amount)) in moments.iter().enumerate() {
        let mut transfer = NewTransfer::single(
            TransferId::from_bytes([u8::try_from(n).unwrap() + 1; 16]),
            AccountId(cash),
            AccountId(account.id),
            Amount::from_minor(*amount),
            byn,
        );
        transfer.description = format!("at {at}");
        let outcome = store.apply(vec![vec![transfer]], local_us(at)).await.unwrap();
        assert!(outcome[0][0].is_ok(), "{outcome:?}");
    }
    let cli = Caller::anonymous("cli");
    let query = |from: &str, to: &str| StatementQuery {
        from: Some(from.into()),
        to: Some(to.into()),
        format: Some("json".into()),
    };
    let mut pages = 0;
    let (day, _) = bank
        .statement(&cli, StatementScope::Cli, account.id, &query("2026-03-10", "2026-03-10"), &mut |_, _| pages += 1)
        .await
        .unwrap();
    assert!(pages > 0);
    let described: Vec<&str> = day.items.iter().map(|item| item.description.as_str()).collect();
    assert_eq!(described, ["at 2026-03-10T00:00:00", "at 2026-03-10T23:59:00", "at 2026-03-10T23:59:59.999999"]);
    assert_eq!(day.items[1].at, "2026-03-10T23:59:00+03:00");
    assert_eq!(day.items[1].date, "2026-03-10");
    assert_eq!(day.opening_balance, "1.00");
    assert_eq!(day.total_credits, "14.00");
    assert_eq!(day.closing_balance, "15.00");
    let (next, _) = bank
        .statement(&cli, StatementScope::Cli, account.id, &query("2026-03-11", "2026-03-12"), &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(next.count, 1);
    assert_eq!((next.opening_balance.as_str(), next.closing_balance.as_str()), ("15.00", "31.00"));
    // The command line's caller is the only anonymous one allowed.
    let stranger = Caller::anonymous("127.0.0.1");
    let refused = bank
        .statement(&stranger, StatementScope::Cli, account.id, &query("2026-03-10", "2026-03-10"), &mut |_, _| {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "forbidden");
}
on_both_engines!(a_transfer_at_23_59_is_on_that_day);
