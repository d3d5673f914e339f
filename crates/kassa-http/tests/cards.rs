//! Story tests for cards, PINs and credit-card applications, over HTTP on
//! SQLite and PostgreSQL; the PIN check the terminal protocol will use is
//! called on the service itself (terminals do not exist yet).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::too_many_lines, missing_docs)]

mod common;
use common::*;

use std::sync::Mutex;

use kassa_service::cards::{luhn_valid, mask};
use kassa_store::sql::{self, Value as SqlValue};

/// Everything the server logs while these tests run, to look for card
/// numbers in it.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The default level (info) for everything, and everything Kassa's
        // own crates say. (A driver's debug output, which would echo
        // statement parameters, is not something the server turns on.)
        let filter = tracing_subscriber::EnvFilter::new(
            "info,kassa_http=trace,kassa_service=trace,kassa_ledger=trace,kassa_store=trace,\
             kassa_store_sqlite=trace,kassa_store_postgres=trace",
        );
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(|| LogWriter).with_ansi(false).try_init();
    });
}

fn logs() -> String {
    String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned()
}

/// The harness's app, and a second node (`Bank`) over the same database
/// for service-level calls: nodes sharing a database is how Kassa scales,
/// so the second node sees and changes exactly what the server does.
async fn spawn(engine: Engine) -> Option<(App, Bank)> {
    capture_logs();
    let app = spawn_app(engine).await?;
    let (store, db): (Arc<dyn LedgerStore>, Arc<dyn Database>) = match &app._guard {
        Guard::Dir(dir) => {
            let store = kassa_store_sqlite::SqliteStore::open(dir.path().join("kassa.db")).await.unwrap();
            (Arc::new(store.clone()), Arc::new(store))
        }
        Guard::Postgres(database) => {
            let store = kassa_store_postgres::PostgresStore::connect(database.url(), 8).await.unwrap();
            (Arc::new(store.clone()), Arc::new(store))
        }
    };
    let mut settings = Settings::new(BankIdentity::default(), SecretBytes(vec![KEY; 32]));
    settings.argon2_memory_kib = 1024;
    let bank = Bank::start(db, Ledger::start(store, LedgerConfig::default()), settings).await.unwrap();
    Some((app, bank))
}

fn card_consents() -> Value {
    json!([{"document": "terms", "version": "2026-01"}, {"document": "cards", "version": "2026-01"}])
}

fn credit_consents() -> Value {
    json!([{"document": "terms", "version": "2026-01"}, {"document": "cards", "version": "2026-01"},
           {"document": "credit", "version": "2026-01"}])
}

async fn open_debit_card(app: &App, token: &str, holder_name: Option<&str>) -> Value {
    let answer = app
        .post(
            "/api/v1/accounts",
            Some(token),
            json!({"kind": "debit_card", "currency": "BYN", "holder_name": holder_name, "consents": card_consents()}),
        )
        .await;
    assert_eq!(answer.status, 201, "{:?}: open card: {}", app.engine, answer.body);
    answer.body
}

async fn reveal(app: &App, token: &str, id: i64) -> Answer {
    app.post(&format!("/api/v1/accounts/{id}/card/reveal"), Some(token), json!({"password": PASSWORD})).await
}

async fn set_pin(app: &App, token: &str, id: i64, pin: &str) -> Answer {
    app.post(&format!("/api/v1/accounts/{id}/card/pin"), Some(token), json!({"password": PASSWORD, "pin": pin})).await
}

fn is_masked(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    chars.len() == 19
        && chars.iter().enumerate().all(|(i, c)| match i {
            4 | 9 | 14 => *c == ' ',
            0..=3 | 5 | 6 | 15..=18 => c.is_ascii_digit(),
            _ => *c == '•',
        })
}

/// Every text, blob and integer value of every table, as (table, text).
async fn all_stored_text(bank: &Bank) -> Vec<(String, String)> {
    stored_values(bank, true).await
}

/// Every text and blob value (and integer, if `ints`) of every table, as
/// (table, text).
async fn stored_values(bank: &Bank, ints: bool) -> Vec<(String, String)> {
    let db = Arc::clone(bank.database());
    sql::read(&*db, move |tx| {
        let list = if tx.backend() == "postgres" {
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        } else {
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        };
        let tables: Vec<String> = tx.query(list, &[])?.iter().map(|row| row.text(0).unwrap()).collect();
        let mut out = Vec::new();
        for table in tables {
            for row in tx.query(&format!("SELECT * FROM {table}"), &[])? {
                for value in row.0 {
                    match value {
                        SqlValue::Text(text) => out.push((table.clone(), text)),
                        SqlValue::Blob(blob) => out.push((table.clone(), String::from_utf8_lossy(&blob).into_owned())),
                        SqlValue::Int(int) if ints => out.push((table.clone(), int.to_string())),
                        SqlValue::Int(_) | SqlValue::Null => {}
                    }
                }
            }
        }
        Ok::<_, kassa_store::StoreError>(out)
    })
    .await
    .unwrap()
}

async fn audit(app: &App, action: &str) -> Vec<Value> {
    let answer = app.get(&format!("/api/v1/staff/audit?action={action}&limit=200"), &app.manager).await;
    assert_eq!(answer.status, 200, "{:?}: {}", app.engine, answer.body);
    answer.body["items"].as_array().unwrap().clone()
}

// ---------------------------------------------------------------- stories

async fn a_debit_card_story(engine: Engine) {
    let Some((app, bank)) = spawn(engine).await else { return };
    let a = app.register(1).await;
    let b = app.register(2).await;
    let card = open_debit_card(&app, &a.token, None).await;
    let id = id_of(&card);
    assert_eq!(card["kind"], "debit_card", "{engine:?}");
    assert_eq!(card["status"], "active", "{engine:?}");
    let masked = card["card"]["number_masked"].as_str().unwrap().to_owned();
    assert!(is_masked(&masked), "{engine:?}: {masked}");
    assert!(masked.starts_with("4585 22"), "{engine:?}: the configured issuer prefix: {masked}");
    // Transliterated from the registered name by default.
    assert_eq!(
        card["card"]["holder_name"],
        registration(1)["first_name"].as_str().unwrap().to_uppercase()
            + " "
            + &registration(1)["last_name"].as_str().unwrap().to_uppercase(),
        "{engine:?}"
    );
    let today = bank.today();
    assert_eq!(card["card"]["valid_to"], format!("{:04}-{:02}", today.year() + 3, today.month()), "{engine:?}");
    assert_eq!(card["card"]["pin_set"], false, "{engine:?}");

    // A given holder name wins; it must be Latin.
    let named = open_debit_card(&app, &a.token, Some("i. petrov")).await;
    assert_eq!(named["card"]["holder_name"], "I. PETROV", "{engine:?}");
    let cyrillic = app
        .post(
            "/api/v1/accounts",
            Some(&a.token),
            json!({"kind": "debit_card", "currency": "BYN", "holder_name": "Иван", "consents": card_consents()}),
        )
        .await;
    assert_eq!(cyrillic.status, 422, "{engine:?}: {}", cyrillic.body);
    assert_eq!(cyrillic.code(), "holder_name_invalid", "{engine:?}");

    // The owner sees the details after re-entering the password.
    let wrong =
        app.post(&format!("/api/v1/accounts/{id}/card/reveal"), Some(&a.token), json!({"password": "nope"})).await;
    assert_eq!(wrong.status, 422, "{engine:?}: {}", wrong.body);
    assert_eq!(wrong.code(), "password_wrong", "{engine:?}");
    assert!(!wrong.body.to_string().contains("cvv"), "{engine:?}");
    let details = reveal(&app, &a.token, id).await;
    assert_eq!(details.status, 200, "{engine:?}: {}", details.body);
    assert_eq!(details.headers["cache-control"], "no-store", "{engine:?}");
    let number = details.body["number"].as_str().unwrap().to_owned();
    assert!(luhn_valid(&number) && number.len() == 16, "{engine:?}: {number}");
    assert_eq!(mask(&number), masked, "{engine:?}");
    let cvv = details.body["cvv"].as_str().unwrap().to_owned();
    assert!(cvv.len() == 3 && cvv.bytes().all(|b| b.is_ascii_digit()), "{engine:?}: {cvv}");
    assert_eq!(reveal(&app, &a.token, id).await.body["cvv"], cvv.as_str(), "{engine:?}: the CVV is reproducible");
    // Nobody else sees it: another customer gets 404, staff have no route.
    let other = reveal(&app, &b.token, id).await;
    assert_eq!(other.status, 404, "{engine:?}: {}", other.body);
    let staff = app
        .post(&format!("/api/v1/accounts/{id}/card/reveal"), Some(&app.teller), json!({"password": TELLER_PASSWORD}))
        .await;
    assert_eq!(staff.status, 403, "{engine:?}: {}", staff.body);

    // A card number works wherever an account number does.
    let spaced = format!("{} {} {} {}", &number[..4], &number[4..8], &number[8..12], &number[12..]);
    let deposit = app
        .post(
            "/api/v1/staff/cash/deposits",
            Some(&app.teller),
            json!({"account": spaced, "amount": "50.00", "currency": "BYN"}),
        )
        .await;
    assert_eq!(deposit.status, 201, "{engine:?}: {}", deposit.body);
    assert_eq!(deposit.body["credit_account"], id, "{engine:?}");
    let b_account = app.open_account(&b.token).await;
    app.deposit(&b_account, "30.00").await;
    let paid = app
        .post(
            "/api/v1/transfers",
            Some(&b.token),
            json!({"from_account": b_account["number"], "to_account": number, "amount": "10.00", "currency": "BYN"}),
        )
        .await;
    assert_eq!(paid.status, 201, "{engine:?}: {}", paid.body);
    let spent = app
        .post(
            "/api/v1/transfers",
            Some(&a.token),
            json!({"from_account": number, "to_phone": b.phone, "amount": "5.00", "currency": "BYN"}),
        )
        .await;
    assert_eq!(spent.status, 201, "{engine:?}: {}", spent.body);
    assert_eq!(app.balance(&a.token, id).await, "55.00", "{engine:?}");
    let unknown = app
        .post(
            "/api/v1/transfers",
            Some(&b.token),
            json!({"from_account": b_account["number"], "to_account": "4585220000000006", "amount": "1.00", "currency": "BYN"}),
        )
        .await;
    assert_eq!(unknown.status, 404, "{engine:?}: an unknown card number: {}", unknown.body);

    // Lists and views show the number masked, never whole.
    let list = app.get("/api/v1/accounts", &a.token).await;
    assert_eq!(list.status, 200, "{engine:?}");
    let text = list.body.to_string();
    assert!(text.contains(&masked) && !text.contains(&number), "{engine:?}: {text}");
    assert!(!text.contains("cvv"), "{engine:?}: {text}");
    for answer in
        [app.account(&a.token, id).await, app.get(&format!("/api/v1/staff/accounts/{id}"), &app.teller).await.body]
    {
        assert!(!answer.to_string().contains(&number), "{engine:?}: {answer}");
        assert!(!answer.to_string().contains("cvv"), "{engine:?}: {answer}");
    }

    // The PIN: four digits; setting it is journaled without it.
    let short = set_pin(&app, &a.token, id, "123").await;
    assert_eq!(short.code(), "pin_invalid", "{engine:?}: {}", short.body);
    let set = set_pin(&app, &a.token, id, "4321").await;
    assert_eq!(set.status, 200, "{engine:?}: {}", set.body);
    assert_eq!(set.body["card"]["pin_set"], true, "{engine:?}");
    assert_eq!(set_pin(&app, &b.token, id, "1111").await.status, 404, "{engine:?}: not b's card");

    // Lost: the card's account is blocked (it still receives, pays nothing).
    let lost = app
        .send(
            Method::PUT,
            &format!("/api/v1/staff/accounts/{id}/card"),
            Some(&app.teller),
            Some(json!({"action": "lost"})),
        )
        .await;
    assert_eq!(lost.status, 200, "{engine:?}: {}", lost.body);
    assert_eq!(lost.body["status"], "blocked", "{engine:?}");
    assert_eq!(lost.body["card"]["lost"], true, "{engine:?}");
    let refused = app
        .post(
            "/api/v1/transfers",
            Some(&a.token),
            json!({"from_account": id.to_string(), "to_phone": b.phone, "amount": "1.00", "currency": "BYN"}),
        )
        .await;
    assert_eq!(refused.status, 422, "{engine:?}: {}", refused.body);
    assert_eq!(app.balance(&a.token, id).await, "55.00", "{engine:?}");
    let by_customer = app
        .send(
            Method::PUT,
            &format!("/api/v1/staff/accounts/{id}/card"),
            Some(&a.token),
            Some(json!({"action": "pin_reset"})),
        )
        .await;
    assert_eq!(by_customer.status, 403, "{engine:?}");
    assert_eq!(audit(&app, "card.lost").await.len(), 1, "{engine:?}");
    // A card product may carry its own issuer prefix.
    let admin = Caller {
        user: Some(kassa_service::SignedIn {
            id: 1,
            role: kassa_service::Role::Admin,
            session_id: "t".into(),
            restricted: false,
        }),
        origin: "test".into(),
        clock: None,
    };
    let form = |kind: &str, prefix: &str| kassa_service::accounts::ProductForm {
        code: Some("visa_debit".into()),
        kind: Some(kind.into()),
        name: Some("Visa debit".into()),
        currencies: Some(vec!["BYN".into()]),
        consents: Some(vec![kassa_service::accounts::Consent { document: "terms".into(), version: "2026-01".into() }]),
        card_prefix: Some(prefix.into()),
        ..Default::default()
    };
    let refused = bank.put_product(&admin, form("current", "411111")).await.unwrap_err();
    assert_eq!(refused.code(), "card_prefix_invalid", "{engine:?}: a prefix is for card products");
    assert_eq!(bank.put_product(&admin, form("debit_card", "41a")).await.unwrap_err().code(), "card_prefix_invalid");
    let product = bank.put_product(&admin, form("debit_card", "411111")).await.unwrap();
    assert_eq!(product.card_prefix.as_deref(), Some("411111"), "{engine:?}");
    let visa = app
        .post(
            "/api/v1/accounts",
            Some(&b.token),
            json!({"kind": "debit_card", "currency": "BYN", "product": "visa_debit",
                   "consents": [{"document": "terms", "version": "2026-01"}]}),
        )
        .await;
    assert_eq!(visa.status, 201, "{engine:?}: {}", visa.body);
    assert!(visa.body["card"]["number_masked"].as_str().unwrap().starts_with("4111 11"), "{engine:?}: {}", visa.body);

    // A credit card is applied for, not opened.
    let credit = app
        .post(
            "/api/v1/accounts",
            Some(&a.token),
            json!({"kind": "credit_card", "currency": "BYN", "consents": credit_consents()}),
        )
        .await;
    assert_eq!(credit.code(), "application_required", "{engine:?}: {}", credit.body);
    assert!(!logs().contains(&number), "{engine:?}: a full card number was logged");
}
on_both_engines!(a_debit_card_story);

async fn a_pin_is_blocked_after_three_wrong_tries(engine: Engine) {
    let Some((app, bank)) = spawn(engine).await else { return };
    let a = app.register(1).await;
    let card = open_debit_card(&app, &a.token, None).await;
    let id = id_of(&card);
    let number = reveal(&app, &a.token, id).await.body["number"].as_str().unwrap().to_owned();
    let not_set = bank.verify_card_pin(&number, "1234", Some(1)).await.unwrap_err();
    assert_eq!(not_set.code(), "pin_not_set", "{engine:?}");
    assert_eq!(set_pin(&app, &a.token, id, "2468").await.status, 200, "{engine:?}");

    // Wrong PINs from anywhere but a registered terminal never count
    // towards the block; they are throttled (five an hour per card) and
    // journaled instead.
    for _ in 0..4 {
        let error = bank.verify_card_pin(&number, "0000", None).await.unwrap_err();
        assert_eq!(error.code(), "pin_wrong", "{engine:?}");
    }
    let accepted = bank.verify_card_pin(&number, "2468", None).await.unwrap();
    assert_eq!(accepted.account, id, "{engine:?}");
    assert_eq!(accepted.owner, a.id, "{engine:?}");
    for pin in ["2468", "0000"] {
        let throttled = bank.verify_card_pin(&number, pin, None).await.unwrap_err();
        assert_eq!(throttled.code(), "too_many_attempts", "{engine:?}: even the right PIN is not answered");
    }
    let checks = audit(&app, "card.pin_check").await;
    let mut outcomes: Vec<&str> = checks.iter().map(|e| e["outcome"].as_str().unwrap()).collect();
    outcomes.sort_unstable();
    assert_eq!(
        outcomes,
        ["ok", "pin_wrong", "pin_wrong", "pin_wrong", "pin_wrong", "throttled", "throttled"],
        "{engine:?}: {checks:?}"
    );
    assert_eq!(app.account(&a.token, id).await["card"]["pin_blocked"], false, "{engine:?}: never blocked by them");

    // Two wrong at a terminal, then the right one: the count starts over.
    for _ in 0..2 {
        assert_eq!(bank.verify_card_pin(&number, "1111", Some(7)).await.unwrap_err().code(), "pin_wrong", "{engine:?}");
    }
    bank.verify_card_pin(&number, "2468", Some(7)).await.unwrap();
    // Three wrong in a row: blocked, and the right PIN no longer helps.
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(bank.verify_card_pin(&number, "1111", Some(7)).await.unwrap_err().code());
    }
    assert_eq!(codes, ["pin_wrong", "pin_wrong", "pin_blocked"], "{engine:?}");
    assert_eq!(bank.verify_card_pin(&number, "2468", Some(7)).await.unwrap_err().code(), "pin_blocked", "{engine:?}");
    assert_eq!(bank.verify_card_pin(&number, "2468", None).await.unwrap_err().code(), "pin_blocked", "{engine:?}");
    let view = app.account(&a.token, id).await;
    assert_eq!(view["card"]["pin_blocked"], true, "{engine:?}");
    // The owner choosing a new PIN does not lift the block; staff do.
    assert_eq!(set_pin(&app, &a.token, id, "1357").await.status, 200, "{engine:?}");
    assert_eq!(bank.verify_card_pin(&number, "1357", Some(7)).await.unwrap_err().code(), "pin_blocked", "{engine:?}");
    let reset = app
        .send(
            Method::PUT,
            &format!("/api/v1/staff/accounts/{id}/card"),
            Some(&app.teller),
            Some(json!({"action": "pin_reset"})),
        )
        .await;
    assert_eq!(reset.status, 200, "{engine:?}: {}", reset.body);
    assert_eq!(reset.body["card"]["pin_blocked"], false, "{engine:?}");
    assert_eq!(bank.verify_card_pin(&number, "1357", Some(7)).await.unwrap().account, id, "{engine:?}");
    assert_eq!(bank.verify_card_pin(&number, "2468", Some(7)).await.unwrap_err().code(), "pin_wrong", "{engine:?}");
    // Journaled: two counted wrong tries before the block, one block.
    assert_eq!(audit(&app, "card.pin_blocked").await.len(), 1, "{engine:?}");
    assert_eq!(audit(&app, "card.pin_wrong").await.len(), 5, "{engine:?}");
    assert_eq!(bank.verify_card_pin("4585220000000006", "1357", Some(7)).await.unwrap_err().code(), "card_not_found");
}
on_both_engines!(a_pin_is_blocked_after_three_wrong_tries);

async fn concurrent_wrong_pins_block_the_card_once(engine: Engine) {
    let Some((app, bank)) = spawn(engine).await else { return };
    let a = app.register(1).await;
    let card = open_debit_card(&app, &a.token, None).await;
    let id = id_of(&card);
    let number = reveal(&app, &a.token, id).await.body["number"].as_str().unwrap().to_owned();
    assert_eq!(set_pin(&app, &a.token, id, "2468").await.status, 200, "{engine:?}");
    let tries: Vec<_> = (0..6)
        .map(|n| {
            let (bank, number) = (bank.clone(), number.clone());
            tokio::spawn(async move { bank.verify_card_pin(&number, "1111", Some(n)).await })
        })
        .collect();
    let mut codes = Vec::new();
    for task in tries {
        codes.push(task.await.unwrap().unwrap_err().code().to_owned());
    }
    assert!(codes.iter().all(|c| c == "pin_wrong" || c == "pin_blocked"), "{engine:?}: {codes:?}");
    assert!(codes.iter().any(|c| c == "pin_blocked"), "{engine:?}: {codes:?}");
    let db = Arc::clone(bank.database());
    let (failures, blocked) = sql::read(&*db, move |tx| {
        let row =
            tx.query_one("SELECT pin_failures, pin_blocked FROM cards WHERE account_id = $1", &[SqlValue::Int(id)])?;
        Ok::<_, kassa_store::StoreError>((row.int(0)?, row.int(1)?))
    })
    .await
    .unwrap();
    assert_eq!((failures, blocked), (3, 1), "{engine:?}");
    assert_eq!(audit(&app, "card.pin_blocked").await.len(), 1, "{engine:?}");
    assert_eq!(audit(&app, "card.pin_wrong").await.len(), 2, "{engine:?}");
}
on_both_engines!(concurrent_wrong_pins_block_the_card_once);

async fn numbers_are_luhn_and_unique_and_the_cvv_is_stored_nowhere(engine: Engine) {
    let Some((app, bank)) = spawn(engine).await else { return };
    let mut cards = Vec::new();
    for n in 1..=3 {
        let customer = app.register(n).await;
        for _ in 0..4 {
            let card = open_debit_card(&app, &customer.token, None).await;
            let details = reveal(&app, &customer.token, id_of(&card)).await;
            assert_eq!(details.status, 200, "{engine:?}: {}", details.body);
            cards.push(details.body);
        }
        let last = cards.last().unwrap()["account"].as_i64().unwrap();
        assert_eq!(set_pin(&app, &customer.token, last, "9753").await.status, 200, "{engine:?}");
    }
    let numbers: std::collections::BTreeSet<String> =
        cards.iter().map(|c| c["number"].as_str().unwrap().to_owned()).collect();
    assert_eq!(numbers.len(), cards.len(), "{engine:?}: numbers are unique");
    assert!(numbers.iter().all(|n| luhn_valid(n) && n.starts_with("458522")), "{engine:?}: {numbers:?}");
    let stored = all_stored_text(&bank).await;
    // (Whole text or blob values only: a small integer column such as
    // `version` may equal a CVV's digits by chance.)
    let strings = stored_values(&bank, false).await;
    let journal = app.get("/api/v1/staff/audit?limit=200", &app.manager).await;
    assert_eq!(journal.status, 200, "{engine:?}: {}", journal.body);
    assert!(journal.body["next_cursor"].is_null(), "{engine:?}: the whole journal fits in one page");
    let journal = journal.body.to_string();
    assert!(journal.contains("card.reveal"), "{engine:?}: the reveals are journaled");
    let log = logs();
    for card in &cards {
        let number = card["number"].as_str().unwrap();
        let cvv = card["cvv"].as_str().unwrap();
        let valid_to = card["valid_to"].as_str().unwrap();
        // The full number is in the cards table only, and in no log line
        // or journal entry.
        let places: Vec<&String> =
            stored.iter().filter(|(_, text)| text.contains(number)).map(|(table, _)| table).collect();
        assert_eq!(places, ["cards"], "{engine:?}: {number}");
        assert!(!log.contains(number), "{engine:?}: a full card number was logged");
        assert!(!journal.contains(number), "{engine:?}: a full card number was journaled");
        // The CVV's value, where it would be written beside its name, the
        // number or the expiry, is in no stored text (database dump with
        // the journal), no log and no journal answer; nor is it a whole
        // text or blob value. (Not the bare three digits anywhere: a
        // timestamp or a hash may hold them by chance.)
        let contexts = [
            format!("\"cvv\":\"{cvv}\""),
            format!("\"cvv\": \"{cvv}\""),
            format!("cvv: \"{cvv}\""),
            format!("cvv={cvv}"),
            format!("cvv: {cvv}"),
            format!("{valid_to} {cvv}"),
            format!("{valid_to}\0{cvv}"),
            format!("{valid_to}{cvv}"),
            format!("{number}{cvv}"),
            format!("{number} {cvv}"),
        ];
        for context in &contexts {
            let found: Vec<&String> =
                stored.iter().filter(|(_, text)| text.contains(context.as_str())).map(|(table, _)| table).collect();
            assert!(found.is_empty(), "{engine:?}: the CVV is stored as {context:?} in {found:?}");
            assert!(!log.contains(context.as_str()), "{engine:?}: the CVV was logged as {context:?}");
            assert!(!journal.contains(context.as_str()), "{engine:?}: the CVV was journaled as {context:?}");
        }
        let whole: Vec<&String> = strings.iter().filter(|(_, text)| text == cvv).map(|(table, _)| table).collect();
        assert!(whole.is_empty(), "{engine:?}: the CVV is a stored value in {whole:?}");
    }
}
on_both_engines!(numbers_are_luhn_and_unique_and_the_cvv_is_stored_nowhere);

async fn apply_for_card(app: &App, token: &str, limit: &str) -> Value {
    let answer = app
        .post(
            "/api/v1/applications",
            Some(token),
            json!({"kind": "credit_card", "currency": "BYN", "requested_limit": limit, "consents": credit_consents()}),
        )
        .await;
    assert_eq!(answer.status, 201, "{:?}: apply: {}", app.engine, answer.body);
    assert_eq!(answer.body["status"], "submitted", "{:?}", app.engine);
    answer.body
}

async fn a_rejected_application_changes_nothing(engine: Engine) {
    let Some((app, bank)) = spawn(engine).await else { return };
    let a = app.register(1).await;
    let missing = app
        .post(
            "/api/v1/applications",
            Some(&a.token),
            json!({"kind": "credit_card", "currency": "BYN", "requested_limit": "100.00"}),
        )
        .await;
    assert_eq!(missing.code(), "consent_required", "{engine:?}: {}", missing.body);
    let application = apply_for_card(&app, &a.token, "1000.00").await;
    let id = application["id"].as_i64().unwrap();
    let again = app
        .post(
            "/api/v1/applications",
            Some(&a.token),
            json!({"kind": "credit_card", "currency": "BYN", "requested_limit": "5.00", "consents": credit_consents()}),
        )
        .await;
    assert_eq!(again.status, 409, "{engine:?}: one waiting application at a time: {}", again.body);
    let before_accounts = app.get("/api/v1/accounts", &a.token).await.body;
    let before_stored =
        all_stored_text(&bank).await.into_iter().filter(|(t, _)| t == "accounts" || t == "cards").count();
    let listed = app.get("/api/v1/staff/applications?status=submitted", &app.manager).await;
    assert!(listed.body["items"].as_array().unwrap().iter().any(|i| i["id"] == id), "{engine:?}: {}", listed.body);
    assert_eq!(app.get("/api/v1/staff/applications", &app.teller).await.status, 403, "{engine:?}: managers decide");
    let no_reason = app.post(&format!("/api/v1/staff/applications/{id}/reject"), Some(&app.manager), json!({})).await;
    assert_eq!(no_reason.code(), "reason_required", "{engine:?}: {}", no_reason.body);
    let rejected = app
        .post(
            &format!("/api/v1/staff/applications/{id}/reject"),
            Some(&app.manager),
            json!({"reason": "income too low"}),
        )
        .await;
    assert_eq!(rejected.status, 200, "{engine:?}: {}", rejected.body);
    let mine = app.get("/api/v1/applications", &a.token).await;
    let seen = &mine.body["items"][0];
    assert_eq!(seen["status"], "rejected", "{engine:?}: {}", mine.body);
    assert_eq!(seen["reason"], "income too low", "{engine:?}");
    assert_eq!(seen["account"], Value::Null, "{engine:?}");
    let late = app
        .post(
            &format!("/api/v1/staff/applications/{id}/approve"),
            Some(&app.manager),
            json!({"credit_limit": "100.00"}),
        )
        .await;
    assert_eq!(late.status, 409, "{engine:?}: {}", late.body);
    assert_eq!(late.code(), "application_decided", "{engine:?}");
    assert_eq!(app.get("/api/v1/accounts", &a.token).await.body, before_accounts, "{engine:?}");
    let after_stored =
        all_stored_text(&bank).await.into_iter().filter(|(t, _)| t == "accounts" || t == "cards").count();
    assert_eq!(after_stored, before_stored, "{engine:?}: no account or card row");
    let events = audit(&app, "application.reject").await;
    assert_eq!(events.len(), 1, "{engine:?}");
    assert!(events[0].to_string().contains("income too low"), "{engine:?}: {}", events[0]);
    assert!(audit(&app, "application.approve").await.is_empty(), "{engine:?}");
}
on_both_engines!(a_rejected_application_changes_nothing);

async fn an_approved_application_opens_the_card_once(engine: Engine) {
    let Some((app, bank)) = spawn(engine).await else { return };
    let a = app.register(1).await;
    let b = app.register(2).await;
    let b_account = app.open_account(&b.token).await;
    let application = apply_for_card(&app, &a.token, "1000.00").await;
    let id = application["id"].as_i64().unwrap();
    let path = format!("/api/v1/staff/applications/{id}/approve");
    let body = json!({"credit_limit": "500.00"});
    let (first, second) = tokio::join!(
        app.post(&path, Some(&app.manager), body.clone()),
        app.post(&path, Some(&app.manager), body.clone())
    );
    let mut statuses = [first.status, second.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{engine:?}: {} / {}", first.body, second.body);
    let approved = if first.status == 200 { first.body } else { second.body };
    assert_eq!(approved["status"], "approved", "{engine:?}");
    assert_eq!(approved["decided_limit"], "500.00", "{engine:?}");
    let cards: Vec<Value> = app.get("/api/v1/accounts", &a.token).await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|account| account["kind"] == "credit_card")
        .cloned()
        .collect();
    assert_eq!(cards.len(), 1, "{engine:?}: one card: {cards:?}");
    let card = &cards[0];
    assert_eq!(approved["account"], card["id"], "{engine:?}");
    assert_eq!(card["credit_limit"], "500.00", "{engine:?}");
    assert_eq!(card["available"], "500.00", "{engine:?}: the available balance counts the limit");
    assert!(is_masked(card["card"]["number_masked"].as_str().unwrap()), "{engine:?}");
    let mine = app.get("/api/v1/applications", &a.token).await;
    assert_eq!(mine.body["items"][0]["status"], "approved", "{engine:?}");
    assert_eq!(audit(&app, "application.approve").await.len(), 1, "{engine:?}");

    // The limit is spendable, and no further.
    let card_id = id_of(card);
    let pay = |amount: &'static str| {
        app.post(
            "/api/v1/transfers",
            Some(&a.token),
            json!({"from_account": card_id.to_string(), "to_account": b_account["number"], "amount": amount, "currency": "BYN"}),
        )
    };
    assert_eq!(pay("500.00").await.status, 201, "{engine:?}");
    let over = pay("0.01").await;
    assert_eq!(over.status, 422, "{engine:?}: {}", over.body);
    assert_eq!(over.code(), "insufficient_funds", "{engine:?}");
    assert_eq!(app.balance(&a.token, card_id).await, "-500.00", "{engine:?}");
    assert_eq!(app.account(&a.token, card_id).await["over_limit"], false, "{engine:?}");

    // The bank's own interest debit may pass the limit, and says so.
    let db = Arc::clone(bank.database());
    let interest_account = sql::read(&*db, |tx| {
        tx.query_one(
            "SELECT account_id FROM system_accounts WHERE kind = 'interest_expense' AND currency = 'BYN'",
            &[],
        )?
        .int(0)
    })
    .await
    .unwrap();
    let byn = kassa_core::money::Currency::from_code("BYN").unwrap();
    let mut interest = kassa_core::ledger::NewTransfer::single(
        kassa_core::TransferId::from_bytes(*b"interest-test-01"),
        kassa_core::AccountId(card_id),
        kassa_core::AccountId(interest_account),
        kassa_core::money::Amount::from_minor(300),
        byn,
    );
    interest.kind = kassa_core::ledger::TransferKind::Interest;
    interest.bank_debit = true;
    let outcome = bank.ledger().submit(vec![interest]).await.unwrap();
    assert!(outcome[0].is_ok(), "{engine:?}: {outcome:?}");
    let past = app.account(&a.token, card_id).await;
    assert_eq!(past["balance"], "-503.00", "{engine:?}");
    assert_eq!(past["available"], "-3.00", "{engine:?}");
    assert_eq!(past["over_limit"], true, "{engine:?}: reported, never silent");

    // A higher limit: applied for on the card, granted once.
    let not_higher = app
        .post(
            "/api/v1/applications",
            Some(&a.token),
            json!({"kind": "credit_limit", "account": card_id.to_string(), "requested_limit": "500.00"}),
        )
        .await;
    assert_eq!(not_higher.code(), "limit_not_higher", "{engine:?}: {}", not_higher.body);
    let raise = app
        .post(
            "/api/v1/applications",
            Some(&a.token),
            json!({"kind": "credit_limit", "account": card_id.to_string(), "requested_limit": "800.00"}),
        )
        .await;
    assert_eq!(raise.status, 201, "{engine:?}: {}", raise.body);
    let not_mine = app
        .post(
            "/api/v1/applications",
            Some(&b.token),
            json!({"kind": "credit_limit", "account": card_id.to_string(), "requested_limit": "900.00"}),
        )
        .await;
    assert_eq!(not_mine.status, 404, "{engine:?}: {}", not_mine.body);
    let raise_id = raise.body["id"].as_i64().unwrap();
    let lower = app
        .post(
            &format!("/api/v1/staff/applications/{raise_id}/approve"),
            Some(&app.manager),
            json!({"credit_limit": "400.00"}),
        )
        .await;
    assert_eq!(lower.code(), "limit_not_higher", "{engine:?}: {}", lower.body);
    let granted = app
        .post(
            &format!("/api/v1/staff/applications/{raise_id}/approve"),
            Some(&app.manager),
            json!({"credit_limit": "700.00"}),
        )
        .await;
    assert_eq!(
        granted.status,
        200,
        "{engine:?}: {} {}",
        granted.body,
        logs().lines().filter(|l| l.contains("internal")).collect::<Vec<_>>().join("\n")
    );
    let after = app.account(&a.token, card_id).await;
    assert_eq!(after["credit_limit"], "700.00", "{engine:?}");
    assert_eq!(after["available"], "197.00", "{engine:?}");
    assert_eq!(after["over_limit"], false, "{engine:?}");
    let count = app.get("/api/v1/accounts", &a.token).await.body["items"].as_array().unwrap().len();
    assert_eq!(count, 1, "{engine:?}: a limit opens no account");
    let by_customer = app
        .post(
            &format!("/api/v1/staff/applications/{raise_id}/approve"),
            Some(&a.token),
            json!({"credit_limit": "1.00"}),
        )
        .await;
    assert_eq!(by_customer.status, 403, "{engine:?}");
}
on_both_engines!(an_approved_application_opens_the_card_once);

async fn a_cyrillic_name_is_embossed_in_latin_letters(engine: Engine) {
    let Some((app, _bank)) = spawn(engine).await else { return };
    let mut form = registration(5);
    form["first_name"] = json!("Алесь");
    form["last_name"] = json!("Шчыткоў");
    let registered = app.post("/api/v1/auth/register", None, form).await;
    assert_eq!(registered.status, 201, "{engine:?}: {}", registered.body);
    let token = registered.body["access_token"].as_str().unwrap().to_owned();
    let card = open_debit_card(&app, &token, None).await;
    assert_eq!(card["card"]["holder_name"], "ALES SHCHYTKOU", "{engine:?}: {}", card);
    // The same name is settled when applying for a credit card.
    let applied = apply_for_card(&app, &token, "300.00").await;
    let id = applied["id"].as_i64().unwrap();
    let approved = app
        .post(
            &format!("/api/v1/staff/applications/{id}/approve"),
            Some(&app.manager),
            json!({"credit_limit": "300.00"}),
        )
        .await;
    assert_eq!(approved.status, 200, "{engine:?}: {}", approved.body);
    let credit = app.account(&token, approved.body["account"].as_i64().unwrap()).await;
    assert_eq!(credit["kind"], "credit_card", "{engine:?}");
    assert_eq!(credit["card"]["holder_name"], "ALES SHCHYTKOU", "{engine:?}");
    assert_eq!(credit["credit_limit"], "300.00", "{engine:?}");
}
on_both_engines!(a_cyrillic_name_is_embossed_in_latin_letters);

async fn a_node_with_another_card_key_refuses_to_start(engine: Engine) {
    let Some((_app, bank)) = spawn(engine).await else { return };
    let db = Arc::clone(bank.database());
    kassa_service::cards::check_card_key(&*db, &[1; 32]).await.unwrap();
    kassa_service::cards::check_card_key(&*db, &[1; 32]).await.unwrap();
    let error = kassa_service::cards::check_card_key(&*db, &[2; 32]).await.unwrap_err();
    assert_eq!(error.code(), "card_key_mismatch", "{engine:?}: {error}");
    assert!(error.to_string().contains("card.key"), "{engine:?}: {error}");
    // The fingerprint is the first key's still.
    kassa_service::cards::check_card_key(&*db, &[1; 32]).await.unwrap();
}
on_both_engines!(a_node_with_another_card_key_refuses_to_start);

async fn closing_with_unposted_interest_is_refused(engine: Engine) {
    let Some((app, bank)) = spawn(engine).await else { return };
    let a = app.register(1).await;
    let account = app.open_account(&a.token).await;
    let id = id_of(&account);
    let db = Arc::clone(bank.database());
    let day = bank.today().to_string();
    let month = day[..7].to_owned();
    let write = |statement: &'static str, params: Vec<SqlValue>| {
        let db = Arc::clone(&db);
        async move {
            sql::write(&*db, move |tx| tx.execute(statement, &params)).await.unwrap();
        }
    };
    // A day that accrued nothing does not hold the account open.
    write(
        "INSERT INTO interest_accruals (account_id, day, direction, balance_minor, rate, year_days, accrued_minor, \
         carry, created_at_us) VALUES ($1, $2, 'pay', 0, '0.05', 365, 0, 0, 0)",
        vec![SqlValue::Int(id), SqlValue::Text("2020-01-01".into())],
    )
    .await;
    // A day of this month that accrued a minor unit, not yet posted.
    write(
        "INSERT INTO interest_accruals (account_id, day, direction, balance_minor, rate, year_days, accrued_minor, \
         carry, created_at_us) VALUES ($1, $2, 'pay', 10000, '0.05', 365, 1, 0, 0)",
        vec![SqlValue::Int(id), SqlValue::Text(day)],
    )
    .await;
    let path = format!("/api/v1/accounts/{id}");
    let refused = app.send(Method::DELETE, &path, Some(&a.token), None).await;
    assert_eq!(refused.status, 422, "{engine:?}: {}", refused.body);
    assert_eq!(refused.code(), "interest_pending", "{engine:?}");
    assert_eq!(app.account(&a.token, id).await["status"], "active", "{engine:?}");
    // Once the month is posted, the account closes.
    write(
        "INSERT INTO interest_postings (account_id, month, direction, amount_minor, posted_at_us) \
         VALUES ($1, $2, 'pay', 0, 0)",
        vec![SqlValue::Int(id), SqlValue::Text(month)],
    )
    .await;
    let closed = app.send(Method::DELETE, &path, Some(&a.token), None).await;
    assert_eq!(closed.status, 200, "{engine:?}: {}", closed.body);
    assert_eq!(closed.body["status"], "closed", "{engine:?}");
}
on_both_engines!(closing_with_unposted_interest_is_refused);
