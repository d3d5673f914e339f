//! The staff console over real HTTP, on SQLite and PostgreSQL: who may
//! enter, what each role may do, CSRF, search, inline errors, and the
//! console's forms (cash desk, approvals, account status and limits,
//! rates, staff users, transactions and the journal).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr, missing_debug_implementations)]

mod common;

use common::*;
use serde_json::Value;

/// A customer registered through the pages with one BYN current account:
/// (their browser, the account's id, its number).
async fn customer_with_account(app: &App, n: u32) -> (Browser, i64, String) {
    let browser = app.browser("en");
    browser.register(n).await;
    browser
        .submit(
            "/products/new",
            "/products/new",
            &[("kind", "current"), ("currency", "BYN"), ("consent", "terms:2026-01")],
        )
        .await;
    let login = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", app.base))
        .json(&serde_json::json!({"login": format!("+3752911100{n:02}"), "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let accounts = reqwest::Client::new()
        .get(format!("{}/api/v1/accounts", app.base))
        .bearer_auth(login["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let account = &accounts["items"][0];
    (browser, account["id"].as_i64().unwrap(), account["number"].as_str().unwrap().to_owned())
}

async fn balance(app: &App, id: i64) -> String {
    let answer = reqwest::Client::new()
        .get(format!("{}/api/v1/accounts/{id}", app.base))
        .bearer_auth(&app.teller)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    answer["balance"].as_str().unwrap_or_default().to_owned()
}

/// Anonymous visitors are sent to sign in; customers get 403 on every
/// console page; the teller gets 403 on the admin's and the manager's.
async fn who_may_enter(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let anonymous = app.browser("en");
    let page = anonymous.get("/staff").await;
    assert!(page.url.ends_with("/login"), "{engine:?}: anonymous → sign in: {}", page.url);
    let (customer, id, _) = customer_with_account(&app, 1).await;
    for path in
        ["/staff", "/staff/customers?q=Ivan", "/staff/cash", "/staff/transactions", "/staff/approvals", "/staff/audit"]
    {
        let page = customer.get(path).await;
        assert_eq!(page.status, 403, "{engine:?}: a customer at {path}");
    }
    let page = customer.get(&format!("/staff/accounts/{id}")).await;
    assert_eq!(page.status, 403, "{engine:?}: a customer at a staff account page");
    let teller = app.staff_browser("teller").await;
    for path in ["/staff/users", "/staff/audit"] {
        let page = teller.get(path).await;
        assert_eq!(page.status, 403, "{engine:?}: the teller at {path}: {}", page.body);
    }
    let home = teller.get("/staff/customers").await;
    assert!(!home.has("href=\"/staff/users\""), "{engine:?}: the teller's menu has no admin pages");
    // The teller may not set rates: the service refuses, nothing is set.
    let refused = teller
        .submit("/staff/cash", "/staff/rates", &[("base", "USD"), ("quote", "BYN"), ("buy", "3"), ("sell", "3.1")])
        .await;
    assert_eq!(refused.status, 403, "{engine:?}: a teller sets a rate");
    assert!(app.bank.rates().await.unwrap().is_empty(), "{engine:?}: no rate was set");
    // Nor block an account (a manager's decision).
    let refused = teller.submit("/staff/cash", &format!("/staff/accounts/{id}/status"), &[("status", "blocked")]).await;
    assert_eq!(refused.status, 403, "{engine:?}: a teller blocks an account");
}
on_both_engines!(who_may_enter);

/// A console form without its CSRF token is refused and changes nothing.
async fn forms_need_their_token(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let (_, id, number) = customer_with_account(&app, 1).await;
    let teller = app.staff_browser("teller").await;
    let refused = teller
        .post_raw(
            "/staff/cash",
            &[("operation", "deposit"), ("account", &number), ("amount", "10.00"), ("currency", "BYN")],
        )
        .await;
    assert_eq!(refused.status, 403, "{engine:?}: a cash deposit without CSRF");
    assert_eq!(balance(&app, id).await, "0.00", "{engine:?}: nothing was deposited");
    let manager = app.staff_browser("manager").await;
    let refused = manager.post_raw(&format!("/staff/accounts/{id}/status"), &[("status", "blocked")]).await;
    assert_eq!(refused.status, 403, "{engine:?}: a block without CSRF");
    let page = manager.get(&format!("/staff/accounts/{id}")).await;
    assert!(page.has("id=\"account-status\">active<"), "{engine:?}: still active");
}
on_both_engines!(forms_need_their_token);

/// Search finds a customer by phone, by passport and by name; the
/// customer's page lists their accounts.
async fn search_finds_customers(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let (_, id, number) = customer_with_account(&app, 1).await;
    customer_with_account(&app, 2).await;
    let teller = app.staff_browser("teller").await;
    let by_phone = teller.get("/staff/customers?q=%2B375291110001").await;
    assert!(by_phone.has("Anna Ivanova") && !by_phone.has("Olga Sidorova"), "{engine:?}: by phone: {}", by_phone.body);
    let by_passport = teller.get("/staff/customers?q=MP1234502").await;
    assert!(by_passport.has("Olga Sidorova") && !by_passport.has("Anna Ivanova"), "{engine:?}: by passport");
    let by_name = teller.get("/staff/customers?q=sidorova").await;
    assert!(by_name.has("Olga Sidorova") && !by_name.has("Anna Ivanova"), "{engine:?}: by name");
    let nobody = teller.get("/staff/customers?q=nobody").await;
    assert!(nobody.has("No customer matches."), "{engine:?}: nobody");
    let customer_id = by_phone.body.split("/staff/customers/").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let page = teller.get(&format!("/staff/customers/{customer_id}")).await;
    assert!(page.has(&number) && page.has(&format!("/staff/accounts/{id}")), "{engine:?}: the accounts are listed");
    assert_eq!(teller.get("/staff/customers/abc").await.status, 404, "{engine:?}: a bad id is 404");
    assert_eq!(teller.get("/staff/customers/999999").await.status, 404, "{engine:?}: a missing customer is 404");
}
on_both_engines!(search_finds_customers);

/// Bad input comes back as inline errors (200), never a 5xx.
async fn bad_input_gives_inline_errors(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let (_, id, number) = customer_with_account(&app, 1).await;
    let teller = app.staff_browser("teller").await;
    let page = teller
        .submit(
            "/staff/cash",
            "/staff/cash",
            &[("operation", "deposit"), ("account", &number), ("amount", "abc"), ("currency", "BYN")],
        )
        .await;
    assert_eq!(page.status, 200, "{engine:?}");
    assert!(page.has("id=\"amount-error\"") && page.has("Enter an amount like 12.50."), "{engine:?}: {}", page.body);
    let page = teller
        .submit(
            "/staff/cash",
            "/staff/cash",
            &[("operation", "deposit"), ("account", "12345"), ("amount", "1"), ("currency", "BYN")],
        )
        .await;
    assert!(page.status == 200 && page.has("notice error"), "{engine:?}: an unknown account: {}", page.body);
    let page = teller.get("/staff/transactions?from=2026-13-01&min_amount=5").await;
    assert_eq!(page.status, 200, "{engine:?}");
    assert!(page.has("id=\"from-error\"") && page.has("id=\"currency-error\""), "{engine:?}: {}", page.body);
    let page = teller.get("/staff/transactions?kind=gift&account=nope").await;
    assert!(page.has("id=\"kind-error\"") && page.has("id=\"account-error\""), "{engine:?}: {}", page.body);
    let manager = app.staff_browser("manager").await;
    let page =
        manager.submit("/staff/cash", &format!("/staff/accounts/{id}/limits"), &[("daily_transfer", "-5")]).await;
    assert!(page.status == 200 && page.has("id=\"daily_transfer-error\""), "{engine:?}: {}", page.body);
    let page = manager
        .submit(
            "/staff/cash",
            &format!("/staff/accounts/{id}/statement"),
            &[("from", "x"), ("to", "2026-01-01"), ("format", "csv")],
        )
        .await;
    assert!(page.status == 200 && page.has("id=\"st-from-error\""), "{engine:?}: {}", page.body);
    let admin = app.staff_browser("admin").await;
    let page = admin
        .submit("/staff/rates", "/staff/rates", &[("base", "USD"), ("quote", "BYN"), ("buy", "x"), ("sell", "3")])
        .await;
    assert!(page.status == 200 && page.has("id=\"buy-error\""), "{engine:?}: {}", page.body);
    let page = admin
        .submit(
            "/staff/users",
            "/staff/users",
            &[("login", "x y"), ("name", ""), ("password", "short"), ("role", "teller")],
        )
        .await;
    assert_eq!(page.status, 200, "{engine:?}: {}", page.body);
    assert!(page.has("field-error") || page.has("notice error"), "{engine:?}: {}", page.body);
}
on_both_engines!(bad_input_gives_inline_errors);

/// The cash desk and the four-eyes rule: a deposit lands; a large
/// withdrawal waits; the teller cannot approve their own; a manager
/// approves it and the money leaves.
async fn cash_desk_and_approvals(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let (_, id, number) = customer_with_account(&app, 1).await;
    let teller = app.staff_browser("teller").await;
    let done = teller
        .submit(
            "/staff/cash",
            "/staff/cash",
            &[("operation", "deposit"), ("account", &number), ("amount", "9000.00"), ("currency", "BYN")],
        )
        .await;
    assert!(done.has("the cash is on the account"), "{engine:?}: {}", done.body);
    assert_eq!(balance(&app, id).await, "9000.00", "{engine:?}");
    let held = teller
        .submit(
            "/staff/cash",
            "/staff/cash",
            &[("operation", "withdrawal"), ("account", &number), ("amount", "6000.00"), ("currency", "BYN")],
        )
        .await;
    assert!(held.has("waits for a second pair of eyes"), "{engine:?}: {}", held.body);
    assert_eq!(balance(&app, id).await, "9000.00", "{engine:?}: nothing left yet");
    let waiting = teller.get("/staff/approvals").await;
    assert!(waiting.has("You asked for this") && !waiting.has("id=\"approve-"), "{engine:?}: no button on one's own");
    let approval = waiting.body.split("id=\"approval-").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let own = teller
        .submit("/staff/approvals", &format!("/staff/approvals/{approval}/decide"), &[("decision", "approve")])
        .await;
    assert_eq!(own.status, 403, "{engine:?}: the maker cannot approve");
    let manager = app.staff_browser("manager").await;
    let approved = manager
        .submit("/staff/approvals", &format!("/staff/approvals/{approval}/decide"), &[("decision", "approve")])
        .await;
    assert!(approved.has("Approved and carried out."), "{engine:?}: {}", approved.body);
    assert_eq!(balance(&app, id).await, "3000.00", "{engine:?}: the withdrawal went through");
    // All transactions, filtered by account, kind, dates and amounts, and as CSV.
    let today = app.bank.today().to_string();
    let list =
        manager.get(&format!("/staff/transactions?account={number}&kind=withdrawal&from={today}&to={today}")).await;
    assert!(list.has("6000.00 BYN") && !list.has("9000.00 BYN"), "{engine:?}: {}", list.body);
    let list = manager.get("/staff/transactions?currency=BYN&min_amount=7000&max_amount=10000").await;
    assert!(list.has("9000.00 BYN") && !list.has("6000.00 BYN"), "{engine:?}: {}", list.body);
    let list = manager.get("/staff/transactions?from=2000-01-01&to=2000-01-02").await;
    assert!(list.has("No transactions match."), "{engine:?}");
    let csv = manager.get(&format!("/staff/transactions.csv?account={number}")).await;
    assert!(csv.body.starts_with("created_at,") && csv.body.lines().count() == 3, "{engine:?}: {}", csv.body);
    let token_free =
        manager.client.get(format!("{}/staff/transactions.xlsx?account={number}", manager.base)).send().await.unwrap();
    assert_eq!(token_free.status().as_u16(), 200, "{engine:?}: xlsx");
    let bytes = token_free.bytes().await.unwrap();
    let mut book: calamine::Xlsx<_> = calamine::open_workbook_from_rs(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let sheet = calamine::Reader::worksheet_range(&mut book, "Transactions").unwrap();
    assert_eq!(sheet.height(), 3, "{engine:?}: a header and two operations");
    // The journal shows the decisions and its chains verify.
    let journal = manager.get("/staff/audit?action=approval.approve").await;
    assert!(
        journal.has("The journal&#x27;s chains verify") || journal.has("chains verify"),
        "{engine:?}: {}",
        journal.body
    );
    assert!(journal.has("approval.approve"), "{engine:?}");
}
on_both_engines!(cash_desk_and_approvals);

/// A manager blocks, unblocks and sets limits; an admin sets a rate and
/// creates, blocks and unblocks a staff user; statements export as CSV and XLSX.
async fn managers_and_admins(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let (_, id, _) = customer_with_account(&app, 1).await;
    let manager = app.staff_browser("manager").await;
    let path = format!("/staff/accounts/{id}");
    let blocked = manager.submit(&path, &format!("{path}/status"), &[("status", "blocked")]).await;
    assert!(blocked.has("The account is blocked.") && blocked.has("id=\"account-status\">blocked<"), "{engine:?}");
    let active = manager.submit(&path, &format!("{path}/status"), &[("status", "active")]).await;
    assert!(active.has("id=\"account-status\">active<"), "{engine:?}");
    let limits = manager.submit(&path, &format!("{path}/limits"), &[("daily_transfer", "250.00")]).await;
    assert!(limits.has("The limits are saved.") && limits.has("250.00"), "{engine:?}: {}", limits.body);
    let today = app.bank.today().to_string();
    for format in ["csv", "xlsx"] {
        let token = manager.get(&path).await.csrf();
        let answer = manager
            .client
            .post(format!("{}{path}/statement", manager.base))
            .form(&[("csrf", token.as_str()), ("from", today.as_str()), ("to", today.as_str()), ("format", format)])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200, "{engine:?}: {format}");
        let disposition = answer.headers()["content-disposition"].to_str().unwrap().to_owned();
        assert!(disposition.contains(&format!(".{format}")), "{engine:?}: {disposition}");
    }
    let admin = app.staff_browser("admin").await;
    let set = admin
        .submit(
            "/staff/rates",
            "/staff/rates",
            &[("base", "usd"), ("quote", "BYN"), ("buy", "3.2000"), ("sell", "3.3000")],
        )
        .await;
    assert!(set.has("The rate is set.") && set.has("USD/BYN"), "{engine:?}: {}", set.body);
    let created = admin
        .submit(
            "/staff/users",
            "/staff/users",
            &[
                ("login", "cashier2"),
                ("name", "Second Cashier"),
                ("password", "another desk phrase 9"),
                ("role", "teller"),
                ("totp", "1"),
            ],
        )
        .await;
    assert!(created.has("The staff user is created.") && created.has("otpauth://"), "{engine:?}: {}", created.body);
    let staff_id =
        created.body.split("/staff/users/").filter_map(|part| part.split('/').next()).last().unwrap().to_owned();
    let blocked =
        admin.submit("/staff/users", &format!("/staff/users/{staff_id}/status"), &[("status", "blocked")]).await;
    assert!(blocked.has("The staff user is blocked"), "{engine:?}: {}", blocked.body);
    let unblocked =
        admin.submit("/staff/users", &format!("/staff/users/{staff_id}/status"), &[("status", "active")]).await;
    assert!(unblocked.has("The staff user is active again."), "{engine:?}");
}
on_both_engines!(managers_and_admins);
