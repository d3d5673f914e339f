//! Exchange rates, quotes and exchanges over HTTP, on SQLite and on
//! PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    missing_debug_implementations
)]

mod common;

use common::*;

// ---------------------------------------------------------------- helpers

async fn put_rate(app: &App, base: &str, quote: &str, buy: &str, sell: &str, unit: i64) -> Answer {
    app.send(
        Method::PUT,
        "/api/v1/admin/rates",
        Some(&app.admin),
        Some(json!({"base": base, "quote": quote, "buy": buy, "sell": sell, "unit": unit})),
    )
    .await
}

async fn put_rate_ok(app: &App, base: &str, quote: &str, buy: &str, sell: &str, unit: i64) -> Value {
    let answer = put_rate(app, base, quote, buy, sell, unit).await;
    assert_eq!(answer.status, 200, "{:?}: put rate: {}", app.engine, answer.body);
    answer.body
}

async fn open_in(app: &App, token: &str, currency: &str) -> Value {
    let form =
        json!({"kind": "current", "currency": currency, "consents": [{"document": "terms", "version": "2026-01"}]});
    let answer = app.post("/api/v1/accounts", Some(token), form).await;
    assert_eq!(answer.status, 201, "{:?}: open {currency}: {}", app.engine, answer.body);
    answer.body
}

async fn deposit_in(app: &App, account: &Value, amount: &str) {
    let answer = app
        .post(
            "/api/v1/staff/cash/deposits",
            Some(&app.teller),
            json!({"account": account["number"], "amount": amount, "currency": account["currency"]}),
        )
        .await;
    assert_eq!(answer.status, 201, "{:?}: deposit: {}", app.engine, answer.body);
}

async fn exchange(app: &App, token: &str, from: &Value, to: &Value, amount: &str, quote: Option<&str>) -> Answer {
    let mut body =
        json!({"from_account": id_of(from).to_string(), "to_account": id_of(to).to_string(), "amount": amount});
    if let Some(quote) = quote {
        body["quote_id"] = json!(quote);
    }
    app.post("/api/v1/exchanges", Some(token), body).await
}

async fn history(app: &App, token: &str, account: &Value) -> Vec<Value> {
    let answer = app.get(&format!("/api/v1/accounts/{}/transactions", id_of(account)), token).await;
    assert_eq!(answer.status, 200, "{:?}: history: {}", app.engine, answer.body);
    answer.body["items"].as_array().unwrap().clone()
}

async fn journal(app: &App, action: &str) -> Vec<Value> {
    let answer = app.get(&format!("/api/v1/staff/audit?action={action}"), &app.manager).await;
    assert_eq!(answer.status, 200, "{:?}: journal: {}", app.engine, answer.body);
    answer.body["items"].as_array().unwrap().clone()
}

async fn fx_transactions(app: &App) -> Vec<Value> {
    let answer = app.get("/api/v1/staff/transactions?kind=fx", &app.manager).await;
    assert_eq!(answer.status, 200, "{:?}: transactions: {}", app.engine, answer.body);
    answer.body["items"].as_array().unwrap().clone()
}

async fn balance_of(app: &App, token: &str, account: &Value) -> String {
    app.balance(token, id_of(account)).await
}

/// An app with the given exchange fee and a USD/BYN rate of 3.20/3.25, and
/// a customer with a BYN account holding 100.00 and an empty USD account.
async fn byn_and_usd(engine: Engine, fee_basis_points: u32) -> Option<(App, Customer, Value, Value)> {
    let app = spawn_app_with(engine, vec![], move |settings| settings.fx.fee_basis_points = fee_basis_points).await?;
    put_rate_ok(&app, "USD", "BYN", "3.20", "3.25", 1).await;
    let a = app.register(1).await;
    let byn = open_in(&app, &a.token, "BYN").await;
    let usd = open_in(&app, &a.token, "USD").await;
    deposit_in(&app, &byn, "100.00").await;
    Some((app, a, byn, usd))
}

// ------------------------------------------------------------------ tests

async fn rates_keep_their_history_and_anyone_reads_them(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    put_rate_ok(&app, "USD", "BYN", "3.20", "3.30", 1).await;
    let second = put_rate_ok(&app, "USD", "BYN", "3.2150", "3.2875", 1).await;
    assert_eq!((second["buy"].as_str(), second["sell"].as_str()), (Some("3.215"), Some("3.2875")), "{engine:?}");
    put_rate_ok(&app, "RUB", "BYN", "3.40", "3.45", 100).await;

    // Anyone, without a token, sees one current rate per pair.
    let answer = app.send(Method::GET, "/api/v1/rates", None, None).await;
    assert_eq!(answer.status, 200, "{engine:?}: {}", answer.body);
    let items = answer.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{engine:?}: {}", answer.body);
    let usd = items.iter().find(|r| r["base"] == "USD").unwrap();
    assert_eq!((usd["quote"].as_str(), usd["unit"].as_i64()), (Some("BYN"), Some(1)), "{engine:?}");
    assert_eq!((usd["buy"].as_str(), usd["sell"].as_str()), (Some("3.215"), Some("3.2875")), "{engine:?}");
    assert_eq!(usd["stale"], false, "{engine:?}");
    assert!(usd["as_of"].as_str().unwrap().ends_with('Z'), "{engine:?}: {usd}");
    let rub = items.iter().find(|r| r["base"] == "RUB").unwrap();
    assert_eq!((rub["unit"].as_i64(), rub["buy"].as_str()), (Some(100), Some("3.40")), "{engine:?}");

    // The history keeps both USD rates, newest first.
    let answer = app.send(Method::GET, "/api/v1/rates/history?base=USD&quote=BYN", None, None).await;
    assert_eq!(answer.status, 200, "{engine:?}: {}", answer.body);
    let history = answer.body["items"].as_array().unwrap();
    let sells: Vec<_> = history.iter().map(|r| r["sell"].as_str().unwrap()).collect();
    assert_eq!(sells, ["3.2875", "3.30"], "{engine:?}");
    let page = app.send(Method::GET, "/api/v1/rates/history?base=USD&quote=BYN&limit=1", None, None).await;
    assert_eq!(page.body["items"][0]["sell"], "3.2875", "{engine:?}");
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    let next = app
        .send(Method::GET, &format!("/api/v1/rates/history?base=USD&quote=BYN&limit=1&cursor={cursor}"), None, None)
        .await;
    assert_eq!(next.body["items"][0]["sell"], "3.30", "{engine:?}: {}", next.body);

    // Refusals name the field.
    for (body, code) in [
        (json!({"base": "USD", "quote": "BYN", "buy": "3.40", "sell": "3.30"}), "rate_spread_invalid"),
        (json!({"base": "USD", "quote": "BYN", "buy": "3,40", "sell": "3.50"}), "rate_invalid"),
        (json!({"base": "USD", "quote": "BYN", "buy": "0", "sell": "3.50"}), "rate_invalid"),
        (json!({"base": "USD", "quote": "BYN", "buy": "1.000000001", "sell": "3.50"}), "rate_invalid"),
        (json!({"base": "USD", "quote": "USD", "buy": "1", "sell": "1"}), "same_currency"),
        (json!({"base": "USD", "quote": "BYN", "buy": "1", "sell": "1", "unit": 0}), "unit_invalid"),
        (
            json!({"base": "USD", "quote": "BYN", "buy": "1", "sell": "1", "as_of": "2999-01-01T00:00:00Z"}),
            "as_of_invalid",
        ),
        (json!({"base": "XXX", "quote": "BYN", "buy": "1", "sell": "1"}), "unknown_currency"),
    ] {
        let answer = app.send(Method::PUT, "/api/v1/admin/rates", Some(&app.admin), Some(body.clone())).await;
        assert_eq!(answer.status, 422, "{engine:?}: {body}: {}", answer.body);
        assert!(answer.codes().iter().any(|c| c == code), "{engine:?}: {body}: {}", answer.body);
    }
    let reversed = put_rate(&app, "BYN", "USD", "0.30", "0.31", 1).await;
    assert_eq!((reversed.status, reversed.code()), (409, "rate_pair_reversed"), "{engine:?}: {}", reversed.body);
    let a = app.register(1).await;
    let answer = app
        .send(Method::PUT, "/api/v1/admin/rates", Some(&a.token), Some(json!({"base": "USD", "quote": "BYN"})))
        .await;
    assert_eq!(answer.status, 403, "{engine:?}");
    // Three rates set, each journaled.
    assert_eq!(journal(&app, "rate.set").await.len(), 3, "{engine:?}");
    let history = app.send(Method::GET, "/api/v1/rates/history?base=USD&quote=BYN", None, None).await;
    assert_eq!(history.body["items"].as_array().unwrap().len(), 2, "{engine:?}: refusals stored nothing");
}
on_both_engines!(rates_keep_their_history_and_anyone_reads_them);

async fn an_exchange_records_the_rate_and_both_amounts(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    put_rate_ok(&app, "USD", "BYN", "3.20", "3.25", 1).await;
    put_rate_ok(&app, "RUB", "BYN", "3.40", "3.45", 100).await;
    let a = app.register(1).await;
    let byn = open_in(&app, &a.token, "BYN").await;
    let usd = open_in(&app, &a.token, "USD").await;
    let rub = open_in(&app, &a.token, "RUB").await;
    deposit_in(&app, &byn, "100.00").await;

    // BYN → USD: the bank sells USD at 3.25: 65.00 BYN buy 20.00 USD.
    let answer = exchange(&app, &a.token, &byn, &usd, "65.00", None).await;
    assert_eq!(answer.status, 201, "{engine:?}: {}", answer.body);
    let body = &answer.body;
    assert_eq!(body["rate"], "3.25", "{engine:?}: {body}");
    assert_eq!(
        (body["base"].as_str(), body["quote"].as_str(), body["unit"].as_i64()),
        (Some("USD"), Some("BYN"), Some(1))
    );
    assert_eq!(
        (body["debit_amount"].as_str(), body["credit_amount"].as_str()),
        (Some("65.00"), Some("20.00")),
        "{body}"
    );
    assert_eq!(body["fee"], "0.00", "{engine:?}");
    let transfers = body["transfers"].as_array().unwrap();
    assert_eq!(transfers.len(), 2, "{engine:?}: no fee, no fee leg: {body}");
    assert_eq!(body["id"], transfers[0]["id"], "{engine:?}");
    assert!(transfers.iter().all(|t| t["kind"] == "fx" && t["state"] == "posted"), "{engine:?}: {body}");
    assert_eq!((transfers[0]["amount"].as_str(), transfers[0]["currency"].as_str()), (Some("65.00"), Some("BYN")));
    assert_eq!((transfers[1]["amount"].as_str(), transfers[1]["currency"].as_str()), (Some("20.00"), Some("USD")));
    assert_eq!(transfers[0]["debit_account"], byn["id"], "{engine:?}");
    assert_eq!(transfers[1]["credit_account"], usd["id"], "{engine:?}");
    // Through the FX position accounts, which are not the customer's.
    assert_ne!(transfers[0]["credit_account"], usd["id"], "{engine:?}");
    assert_ne!(transfers[1]["debit_account"], byn["id"], "{engine:?}");
    assert_eq!(balance_of(&app, &a.token, &byn).await, "35.00", "{engine:?}");
    assert_eq!(balance_of(&app, &a.token, &usd).await, "20.00", "{engine:?}");

    // The history shows kind fx, with the rate and both amounts.
    let lines = history(&app, &a.token, &usd).await;
    assert_eq!(lines.len(), 1, "{engine:?}");
    assert_eq!(lines[0]["kind"], "fx", "{engine:?}");
    let description = lines[0]["description"].as_str().unwrap();
    for part in ["65.00 BYN", "20.00 USD", "3.25 BYN per 1 USD"] {
        assert!(description.contains(part), "{engine:?}: {description:?} lacks {part:?}");
    }
    assert_eq!(history(&app, &a.token, &byn).await[0]["kind"], "fx", "{engine:?}");
    // So does the journal, with the customer named for notifications.
    let events = journal(&app, "exchange.create").await;
    assert_eq!(events.len(), 1, "{engine:?}");
    let detail = &events[0]["detail"];
    assert_eq!(events[0]["outcome"], "ok", "{engine:?}");
    assert_eq!((detail["rate"].as_str(), detail["side"].as_str()), (Some("3.25"), Some("sell")), "{detail}");
    assert_eq!((detail["debit_amount"].as_str(), detail["credit_amount"].as_str()), (Some("65.00"), Some("20.00")));
    assert_eq!(detail["customers"], json!([a.id]), "{engine:?}");

    // USD → BYN: the bank buys USD at 3.20; 7.77 USD = 24.864 BYN, rounded down.
    let answer = exchange(&app, &a.token, &usd, &byn, "7.77", None).await;
    assert_eq!(answer.status, 201, "{engine:?}: {}", answer.body);
    assert_eq!((answer.body["rate"].as_str(), answer.body["credit_amount"].as_str()), (Some("3.20"), Some("24.86")));
    assert_eq!(balance_of(&app, &a.token, &usd).await, "12.23", "{engine:?}");
    assert_eq!(balance_of(&app, &a.token, &byn).await, "59.86", "{engine:?}");

    // Per 100 RUB: 10.00 BYN buy 10 × 100 / 3.45 = 289.855… RUB, rounded down.
    let answer = exchange(&app, &a.token, &byn, &rub, "10.00", None).await;
    assert_eq!(answer.status, 201, "{engine:?}: {}", answer.body);
    assert_eq!((answer.body["unit"].as_i64(), answer.body["credit_amount"].as_str()), (Some(100), Some("289.85")));
    assert_eq!(balance_of(&app, &a.token, &rub).await, "289.85", "{engine:?}");

    // No rate between USD and RUB: refused, nothing moves.
    let answer = exchange(&app, &a.token, &usd, &rub, "1.00", None).await;
    assert_eq!((answer.status, answer.code()), (422, "rate_not_available"), "{engine:?}: {}", answer.body);
    // More than the account holds: the ledger refuses the chain.
    let answer = exchange(&app, &a.token, &usd, &byn, "12.24", None).await;
    assert_eq!((answer.status, answer.code()), (422, "insufficient_funds"), "{engine:?}: {}", answer.body);
    assert_eq!(balance_of(&app, &a.token, &usd).await, "12.23", "{engine:?}");
    assert_eq!(fx_transactions(&app).await.len(), 6, "{engine:?}: three exchanges of two legs");
}
on_both_engines!(an_exchange_records_the_rate_and_both_amounts);

async fn a_three_leg_exchange_failing_on_its_last_leg_leaves_no_trace(engine: Engine) {
    let Some((app, a, byn, usd)) = byn_and_usd(engine, 100).await else { return };
    let byn_history = history(&app, &a.token, &byn).await;

    // 100.00 BYN covers the amount but not the 1% fee: the fee leg, last
    // in the chain, fails, and the two legs before it are undone.
    let answer = exchange(&app, &a.token, &byn, &usd, "100.00", None).await;
    assert_eq!((answer.status, answer.code()), (422, "insufficient_funds"), "{engine:?}: {}", answer.body);
    assert_eq!(balance_of(&app, &a.token, &byn).await, "100.00", "{engine:?}");
    assert_eq!(balance_of(&app, &a.token, &usd).await, "0.00", "{engine:?}");
    assert_eq!(history(&app, &a.token, &byn).await, byn_history, "{engine:?}");
    assert!(history(&app, &a.token, &usd).await.is_empty(), "{engine:?}");
    assert!(fx_transactions(&app).await.is_empty(), "{engine:?}: no position moved");
    let fees = app.get("/api/v1/staff/transactions?kind=fee", &app.manager).await;
    assert!(fees.body["items"].as_array().unwrap().is_empty(), "{engine:?}: {}", fees.body);
    let events = journal(&app, "exchange.create").await;
    assert_eq!(events.len(), 1, "{engine:?}");
    assert_eq!(events[0]["outcome"], "insufficient_funds", "{engine:?}: only the refusal is journaled");

    // 99.00 BYN and its 0.99 fee fit: three legs, the fee to fee income.
    let answer = exchange(&app, &a.token, &byn, &usd, "99.00", None).await;
    assert_eq!(answer.status, 201, "{engine:?}: {}", answer.body);
    assert_eq!(answer.body["fee"], "0.99", "{engine:?}");
    assert_eq!(answer.body["credit_amount"], "30.46", "{engine:?}: 99 / 3.25 = 30.4615…");
    let transfers = answer.body["transfers"].as_array().unwrap();
    assert_eq!(transfers.len(), 3, "{engine:?}");
    assert_eq!((transfers[2]["kind"].as_str(), transfers[2]["amount"].as_str()), (Some("fee"), Some("0.99")));
    assert_eq!(transfers[2]["debit_account"], byn["id"], "{engine:?}");
    assert_eq!(balance_of(&app, &a.token, &byn).await, "0.01", "{engine:?}");
    assert_eq!(balance_of(&app, &a.token, &usd).await, "30.46", "{engine:?}");
    let events = journal(&app, "exchange.create").await;
    assert_eq!(events[0]["outcome"], "ok", "{engine:?}");
}
on_both_engines!(a_three_leg_exchange_failing_on_its_last_leg_leaves_no_trace);

async fn a_quote_locks_its_rate_until_it_expires(engine: Engine) {
    let Some(app) = spawn_app_with(engine, vec![], |settings| settings.fx.quote_ttl_s = 1).await else { return };
    put_rate_ok(&app, "USD", "BYN", "3.20", "3.25", 1).await;
    let a = app.register(1).await;
    let b = app.register(2).await;
    let byn = open_in(&app, &a.token, "BYN").await;
    let usd = open_in(&app, &a.token, "USD").await;
    deposit_in(&app, &byn, "100.00").await;

    let quote = app
        .post(
            "/api/v1/exchange-quotes",
            Some(&a.token),
            json!({"from_currency": "BYN", "to_currency": "USD", "amount": "32.50"}),
        )
        .await;
    assert_eq!(quote.status, 201, "{engine:?}: {}", quote.body);
    assert_eq!((quote.body["rate"].as_str(), quote.body["credit_amount"].as_str()), (Some("3.25"), Some("10.00")));
    let id = quote.body["id"].as_str().unwrap().to_owned();

    // The rate changes; the quote keeps the old one.
    put_rate_ok(&app, "USD", "BYN", "6.40", "6.50", 1).await;
    let answer = exchange(&app, &a.token, &byn, &usd, "32.50", Some(&id)).await;
    assert_eq!(answer.status, 201, "{engine:?}: {}", answer.body);
    assert_eq!((answer.body["rate"].as_str(), answer.body["credit_amount"].as_str()), (Some("3.25"), Some("10.00")));
    assert_eq!(answer.body["quote_id"], id.as_str(), "{engine:?}");
    // Without the quote, the current rate.
    let answer = exchange(&app, &a.token, &byn, &usd, "32.50", None).await;
    assert_eq!(answer.body["credit_amount"], "5.00", "{engine:?}: {}", answer.body);

    // Someone else cannot use it; nor can the other direction.
    let b_byn = open_in(&app, &b.token, "BYN").await;
    let b_usd = open_in(&app, &b.token, "USD").await;
    let answer = exchange(&app, &b.token, &b_byn, &b_usd, "1.00", Some(&id)).await;
    assert_eq!((answer.status, answer.code()), (404, "quote_not_found"), "{engine:?}: {}", answer.body);
    let answer = exchange(&app, &a.token, &usd, &byn, "1.00", Some(&id)).await;
    assert_eq!((answer.status, answer.code()), (422, "quote_mismatch"), "{engine:?}: {}", answer.body);

    // Once its lifetime (1 s here) has passed, it is refused.
    let expires = quote.body["expires_at"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let before = balance_of(&app, &a.token, &byn).await;
    let answer = exchange(&app, &a.token, &byn, &usd, "1.00", Some(&id)).await;
    assert_eq!(
        (answer.status, answer.code()),
        (422, "quote_expired"),
        "{engine:?}: {} (expires {expires})",
        answer.body
    );
    assert_eq!(balance_of(&app, &a.token, &byn).await, before, "{engine:?}");

    let answer = app
        .post("/api/v1/exchange-quotes", Some(&a.token), json!({"from_currency": "BYN", "to_currency": "BYN"}))
        .await;
    assert_eq!((answer.status, answer.code()), (422, "same_currency"), "{engine:?}: {}", answer.body);
    let answer = app
        .post("/api/v1/exchange-quotes", Some(&a.token), json!({"from_currency": "BYN", "to_currency": "EUR"}))
        .await;
    assert_eq!((answer.status, answer.code()), (422, "rate_not_available"), "{engine:?}: {}", answer.body);
}
on_both_engines!(a_quote_locks_its_rate_until_it_expires);

async fn a_stale_rate_refuses_exchanges(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let a = app.register(1).await;
    let byn = open_in(&app, &a.token, "BYN").await;
    let usd = open_in(&app, &a.token, "USD").await;
    deposit_in(&app, &byn, "100.00").await;
    // Fixed two days ago; the default limit is one day.
    let old = kassa_service::people::rfc3339((now() - 48 * 3600) * 1_000_000);
    let answer = app
        .send(
            Method::PUT,
            "/api/v1/admin/rates",
            Some(&app.admin),
            Some(json!({"base": "USD", "quote": "BYN", "buy": "3.20", "sell": "3.25", "as_of": old})),
        )
        .await;
    assert_eq!(answer.status, 200, "{engine:?}: {}", answer.body);
    assert_eq!(answer.body["stale"], true, "{engine:?}");
    let rates = app.send(Method::GET, "/api/v1/rates", None, None).await;
    assert_eq!(rates.body["items"][0]["stale"], true, "{engine:?}");

    let answer = exchange(&app, &a.token, &byn, &usd, "10.00", None).await;
    assert_eq!((answer.status, answer.code()), (422, "rate_stale"), "{engine:?}: {}", answer.body);
    let answer = app
        .post("/api/v1/exchange-quotes", Some(&a.token), json!({"from_currency": "BYN", "to_currency": "USD"}))
        .await;
    assert_eq!((answer.status, answer.code()), (422, "rate_stale"), "{engine:?}: {}", answer.body);
    assert_eq!(balance_of(&app, &a.token, &byn).await, "100.00", "{engine:?}");

    // A fresh rate trades again.
    put_rate_ok(&app, "USD", "BYN", "3.20", "3.25", 1).await;
    let answer = exchange(&app, &a.token, &byn, &usd, "6.50", None).await;
    assert_eq!(
        (answer.status, answer.body["credit_amount"].as_str()),
        (201, Some("2.00")),
        "{engine:?}: {}",
        answer.body
    );
}
on_both_engines!(a_stale_rate_refuses_exchanges);

async fn an_exchange_to_another_customers_account_is_refused(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    put_rate_ok(&app, "USD", "BYN", "3.20", "3.25", 1).await;
    let a = app.register(1).await;
    let b = app.register(2).await;
    let a_byn = open_in(&app, &a.token, "BYN").await;
    let a_byn2 = open_in(&app, &a.token, "BYN").await;
    let b_usd = open_in(&app, &b.token, "USD").await;
    let b_byn = open_in(&app, &b.token, "BYN").await;
    deposit_in(&app, &a_byn, "100.00").await;
    deposit_in(&app, &b_byn, "100.00").await;

    let answer = exchange(&app, &a.token, &a_byn, &b_usd, "10.00", None).await;
    assert_eq!((answer.status, answer.code()), (422, "exchange_not_own_account"), "{engine:?}: {}", answer.body);
    // By number too.
    let body = json!({"from_account": a_byn["number"], "to_account": b_usd["number"], "amount": "10.00"});
    let answer = app.post("/api/v1/exchanges", Some(&a.token), body).await;
    assert_eq!((answer.status, answer.code()), (422, "exchange_not_own_account"), "{engine:?}: {}", answer.body);
    // From someone else's account: there is no such account of yours.
    let a_usd = open_in(&app, &a.token, "USD").await;
    let answer = exchange(&app, &a.token, &b_byn, &a_usd, "10.00", None).await;
    assert_eq!((answer.status, answer.code()), (404, "account_not_found"), "{engine:?}: {}", answer.body);
    let answer = exchange(&app, &a.token, &a_byn, &a_byn2, "10.00", None).await;
    assert_eq!((answer.status, answer.code()), (422, "same_currency"), "{engine:?}: {}", answer.body);
    let answer = app.post("/api/v1/exchanges", Some(&a.token), json!({"from_account": a_byn["id"].to_string()})).await;
    assert_eq!(answer.status, 422, "{engine:?}: {}", answer.body);
    assert!(answer.codes().contains(&"field_required".to_owned()), "{engine:?}: {}", answer.body);
    let answer = exchange(&app, &a.token, &a_byn, &a_usd, "10.001", None).await;
    assert_eq!(answer.status, 422, "{engine:?}: {}", answer.body);
    // Staff may not exchange for a customer through this route.
    let answer = exchange(&app, &app.teller, &a_byn, &a_usd, "10.00", None).await;
    assert_eq!(answer.status, 403, "{engine:?}: {}", answer.body);

    assert_eq!(balance_of(&app, &a.token, &a_byn).await, "100.00", "{engine:?}");
    assert_eq!(balance_of(&app, &b.token, &b_usd).await, "0.00", "{engine:?}");
    assert_eq!(balance_of(&app, &b.token, &b_byn).await, "100.00", "{engine:?}");
    assert!(fx_transactions(&app).await.is_empty(), "{engine:?}");
}
on_both_engines!(an_exchange_to_another_customers_account_is_refused);

async fn an_idempotency_key_exchanges_once(engine: Engine) {
    let Some((app, a, byn, usd)) = byn_and_usd(engine, 50).await else { return };
    let send = |amount: &'static str| {
        let body =
            json!({"from_account": id_of(&byn).to_string(), "to_account": id_of(&usd).to_string(), "amount": amount});
        app.client
            .post(format!("{}/api/v1/exchanges", app.base))
            .bearer_auth(&a.token)
            .header("Idempotency-Key", "fx-key-1")
            .json(&body)
    };
    let first = app.answer(send("65.00")).await;
    assert_eq!(first.status, 201, "{engine:?}: {}", first.body);
    assert_eq!(first.body["fee"], "0.32", "{engine:?}: 0.5% of 65.00 = 0.325, rounded down");
    // The rate changes; the retry is answered from what was done.
    put_rate_ok(&app, "USD", "BYN", "6.40", "6.50", 1).await;
    let again = app.answer(send("65.00")).await;
    assert_eq!(again.status, 201, "{engine:?}: {}", again.body);
    assert_eq!(again.body, first.body, "{engine:?}");
    assert_eq!(balance_of(&app, &a.token, &byn).await, "34.68", "{engine:?}: moved once");
    assert_eq!(balance_of(&app, &a.token, &usd).await, "20.00", "{engine:?}");
    let other = app.answer(send("10.00")).await;
    assert_eq!((other.status, other.code()), (422, "idempotency_key_reused"), "{engine:?}: {}", other.body);
    assert_eq!(fx_transactions(&app).await.len(), 2, "{engine:?}");
}
on_both_engines!(an_idempotency_key_exchanges_once);

async fn rates_are_read_from_a_polled_rates_file(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rates.json");
    let write = |buy: &str, sell: &str| {
        let text = json!({"rates": [
            {"base": "USD", "quote": "BYN", "buy": buy, "sell": sell},
            {"base": "RUB", "quote": "BYN", "buy": "3.40", "sell": "3.45", "unit": 100, "as_of": "2026-01-31T09:00:00Z"},
            {"base": "EUR", "quote": "BYN", "buy": "3.60", "sell": "3.50"},
        ]});
        std::fs::write(&path, text.to_string()).unwrap();
    };
    write("3.20", "3.25");
    let file = path.to_str().unwrap().to_owned();
    let Some(app) = spawn_app_with(engine, vec![], |settings| {
        settings.fx.rates_file = file;
        settings.fx.rates_poll_s = 1;
    })
    .await
    else {
        return;
    };
    // Waits (bounded) until the poller has recorded what `want` describes.
    async fn wait_for(app: &App, want: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..100 {
            let rates = app.send(Method::GET, "/api/v1/rates", None, None).await.body;
            if want(&rates) {
                return rates;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("{:?}: the rates file was not read", app.engine);
    }
    let usd = |rates: &Value, sell: &str| {
        rates["items"].as_array().unwrap().iter().any(|r| r["base"] == "USD" && r["sell"] == sell)
    };
    let rates = wait_for(&app, |rates| usd(rates, "3.25")).await;
    let items = rates["items"].as_array().unwrap();
    let rub = items.iter().find(|r| r["base"] == "RUB").unwrap();
    assert_eq!((rub["unit"].as_i64(), rub["source"].as_str()), (Some(100), Some("file")), "{engine:?}: {rates}");
    assert_eq!(rub["as_of"], "2026-01-31T09:00:00Z", "{engine:?}");
    assert!(items.iter().all(|r| r["base"] != "EUR"), "{engine:?}: a refused rate is skipped: {rates}");

    // A change in the file is a new rate; the old one stays as history,
    // and an unchanged rate is not recorded again.
    write("3.21", "3.26");
    wait_for(&app, |rates| usd(rates, "3.26")).await;
    let history = app.send(Method::GET, "/api/v1/rates/history?base=USD&quote=BYN", None, None).await;
    let sells: Vec<_> = history.body["items"].as_array().unwrap().iter().map(|r| r["sell"].clone()).collect();
    assert_eq!(sells, [json!("3.26"), json!("3.25")], "{engine:?}");
    let rub = app.send(Method::GET, "/api/v1/rates/history?base=RUB&quote=BYN", None, None).await;
    assert_eq!(rub.body["items"].as_array().unwrap().len(), 1, "{engine:?}: {}", rub.body);
    let events = journal(&app, "rate.set").await;
    assert!(events.iter().all(|e| e["actor"] == "system" && e["detail"]["source"] == "file"), "{engine:?}");
}
on_both_engines!(rates_are_read_from_a_polled_rates_file);

async fn a_keyed_retry_naming_a_card_by_its_number_is_a_replay(engine: Engine) {
    let Some((app, a, byn, usd)) = byn_and_usd(engine, 0).await else { return };
    let consents = json!([{"document": "terms", "version": "2026-01"}, {"document": "cards", "version": "2026-01"}]);
    let answer = app
        .post(
            "/api/v1/accounts",
            Some(&a.token),
            json!({"kind": "debit_card", "currency": "BYN", "consents": consents}),
        )
        .await;
    assert_eq!(answer.status, 201, "{engine:?}: open card: {}", answer.body);
    let card = answer.body;
    deposit_in(&app, &card, "50.00").await;
    let revealed = app
        .post(&format!("/api/v1/accounts/{}/card/reveal", id_of(&card)), Some(&a.token), json!({"password": PASSWORD}))
        .await;
    assert_eq!(revealed.status, 200, "{engine:?}: reveal: {}", revealed.body);
    let number = revealed.body["number"].as_str().unwrap().to_owned();
    assert_eq!(number.len(), 16, "{engine:?}: {number}");

    let send = |from: String, to: String, amount: &'static str| {
        app.client
            .post(format!("{}/api/v1/exchanges", app.base))
            .bearer_auth(&a.token)
            .header("Idempotency-Key", "fx-card-key")
            .json(&json!({"from_account": from, "to_account": to, "amount": amount}))
    };
    let usd_id = id_of(&usd).to_string();
    let first = app.answer(send(number.clone(), usd_id.clone(), "32.50")).await;
    assert_eq!(first.status, 201, "{engine:?}: {}", first.body);
    assert_eq!(first.body["from_account"], id_of(&card), "{engine:?}");
    // The same request again, by card number and then by account id: a replay.
    let again = app.answer(send(number.clone(), usd_id.clone(), "32.50")).await;
    assert_eq!((again.status, &again.body), (201, &first.body), "{engine:?}");
    let by_id = app.answer(send(id_of(&card).to_string(), usd_id.clone(), "32.50")).await;
    assert_eq!((by_id.status, &by_id.body), (201, &first.body), "{engine:?}");
    assert_eq!(balance_of(&app, &a.token, &card).await, "17.50", "{engine:?}: moved once");
    assert_eq!(balance_of(&app, &a.token, &usd).await, "10.00", "{engine:?}");
    // A reference that is not a number, or names another account, is a different request.
    for from in ["not-an-account".to_owned(), id_of(&byn).to_string()] {
        let other = app.answer(send(from, usd_id.clone(), "32.50")).await;
        assert_eq!((other.status, other.code()), (422, "idempotency_key_reused"), "{engine:?}: {}", other.body);
    }
    assert_eq!(fx_transactions(&app).await.len(), 2, "{engine:?}");
}
on_both_engines!(a_keyed_retry_naming_a_card_by_its_number_is_a_replay);
