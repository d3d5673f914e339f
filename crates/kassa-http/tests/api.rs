//! The HTTP API end to end: a real server on a random port, real HTTP
//! requests, on SQLite and on PostgreSQL.

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
use kassa_http::openapi::all_routes;

// ------------------------------------------------------------------ tests

on_both_engines!(readme_tour);
on_both_engines!(money_rules);
on_both_engines!(authorization_matrix);
on_both_engines!(every_documented_route_is_served);
on_both_engines!(mass_assignment_is_ignored);
on_both_engines!(forged_and_revoked_tokens_are_refused);
on_both_engines!(sign_in_is_throttled_per_login);
on_both_engines!(bad_input_is_always_a_4xx);
on_both_engines!(idempotent_transfers_move_money_once);
on_both_engines!(recipient_lookups_are_limited_per_customer);
on_both_engines!(registration_rules_of_the_country_profile);
on_both_engines!(the_staff_desk_is_journaled_with_the_staff_member);
on_both_engines!(an_address_over_its_limit_never_stops_another_logins_first_try);

/// The per-address limit (100 failures in 10 minutes): past it, failures
/// from that address are 429, yet a customer with no recent failures signs
/// in at the first try from the same address; another address is not
/// affected; `X-Forwarded-For` counts only from a trusted proxy.
async fn an_address_over_its_limit_never_stops_another_logins_first_try(engine: Engine) {
    let Some(app) = spawn_app_trusting(engine, vec!["127.0.0.1".parse().unwrap()]).await else { return };
    app.register(1).await;
    let attempt = |login: String, password: &'static str, from: &'static str| {
        let request = app
            .client
            .post(format!("{}/api/v1/auth/login", app.base))
            .header("x-forwarded-for", from)
            .json(&json!({"login": login, "password": password}));
        app.answer(request)
    };
    for n in 0..100 {
        let answer = attempt(format!("nobody{n}"), "wrong password here", "198.51.100.7").await;
        assert_eq!(answer.status, 401, "{engine:?}: failure {n}: {}", answer.body);
    }
    let over = attempt("nobody-else".into(), "wrong password here", "198.51.100.7").await;
    assert_eq!(over.status, 429, "{engine:?}: the 101st failure from one address: {}", over.body);
    assert!(over.headers.contains_key("retry-after"), "{engine:?}");
    let first_try = attempt("+375291234567".into(), PASSWORD, "198.51.100.7").await;
    assert_eq!(first_try.status, 200, "{engine:?}: a correct first try from the same address: {}", first_try.body);
    let elsewhere = attempt("nobody5".into(), "wrong password here", "198.51.100.8").await;
    assert_eq!(elsewhere.status, 401, "{engine:?}: another address is not limited: {}", elsewhere.body);

    // Without a trusted proxy the header is ignored: the failures count
    // against the peer (127.0.0.1), whatever the header claims.
    let Some(plain) = spawn_app(engine).await else { return };
    for n in 0..100 {
        let request = plain
            .client
            .post(format!("{}/api/v1/auth/login", plain.base))
            .header("x-forwarded-for", format!("203.0.113.{}", n % 250))
            .json(&json!({"login": format!("nobody{n}"), "password": "wrong password here"}));
        assert_eq!(plain.answer(request).await.status, 401, "{engine:?}: failure {n}");
    }
    let request = plain
        .client
        .post(format!("{}/api/v1/auth/login", plain.base))
        .header("x-forwarded-for", "192.0.2.1")
        .json(&json!({"login": "nobody-else", "password": "wrong password here"}));
    let over = plain.answer(request).await;
    assert_eq!(over.status, 429, "{engine:?}: a forged header must not escape the limit: {}", over.body);
}

/// DESIGN.md section 4 over HTTP: input normalised before validation, one
/// specific code per invalid field, unique phone and personal id, the first
/// account of a currency is the default and the default can be moved (and
/// payments by phone follow it), an account number with a typo is refused
/// before money moves.
async fn registration_rules_of_the_country_profile(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let mut form = registration(1);
    form["phone"] = json!("+375 (29) 123-45-67");
    let registered = app.post("/api/v1/auth/register", None, form).await;
    assert_eq!(registered.status, 201, "{engine:?}: {}", registered.body);
    assert_eq!(registered.body["customer"]["phone"], "+375291234567", "{engine:?}: normalised");
    let a = Customer {
        id: registered.body["customer"]["id"].as_i64().unwrap(),
        token: registered.body["access_token"].as_str().unwrap().to_owned(),
        refresh: String::new(),
        phone: "+375291234567".into(),
    };

    // Every field wrong at once: one problem per field, each with its code.
    let bad = json!({
        "first_name": "A", "last_name": "Ivan0v", "phone": "+4930123456", "email": "not-an-address",
        "password": "short", "passport_number": "M1234567", "personal_id": "12345",
    });
    let refused = app.post("/api/v1/auth/register", None, bad).await;
    assert_eq!(refused.status, 422, "{engine:?}: {}", refused.body);
    let problems: Vec<(String, String)> = refused.body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["field"].as_str().unwrap().to_owned(), p["code"].as_str().unwrap().to_owned()))
        .collect();
    for (field, code) in [
        ("first_name", "name_too_short"),
        ("last_name", "name_invalid_characters"),
        ("phone", "phone_wrong_country"),
        ("email", "email_invalid"),
        ("password", "password_too_short"),
        ("passport_number", "passport_number_invalid"),
        ("personal_id", "personal_id_invalid"),
    ] {
        assert!(problems.contains(&(field.to_owned(), code.to_owned())), "{engine:?}: {field}/{code} in {problems:?}");
    }
    assert_eq!(problems.len(), 7, "{engine:?}: one problem per field: {problems:?}");
    let mut common = registration(5);
    common["password"] = json!("password1234");
    let refused = app.post("/api/v1/auth/register", None, common).await;
    assert!(refused.codes().iter().any(|c| c == "password_too_common"), "{engine:?}: {}", refused.body);

    // The phone and the personal id are unique.
    let mut same_phone = registration(6);
    same_phone["phone"] = json!("+375291234567");
    let refused = app.post("/api/v1/auth/register", None, same_phone).await;
    assert!(refused.codes().iter().any(|c| c == "phone_taken"), "{engine:?}: {}", refused.body);
    let mut same_id = registration(7);
    same_id["personal_id"] = registration(1)["personal_id"].clone();
    let refused = app.post("/api/v1/auth/register", None, same_id).await;
    assert!(refused.codes().iter().any(|c| c == "personal_id_taken"), "{engine:?}: {}", refused.body);

    // The first account of a currency is the default; the default moves.
    let b = app.register(2).await;
    let first = app.open_account(&b.token).await;
    let second = app.open_account(&b.token).await;
    assert_eq!(first["is_default"], true, "{engine:?}: {first}");
    assert_eq!(second["is_default"], false, "{engine:?}: {second}");
    let moved = app
        .send(
            Method::PATCH,
            &format!("/api/v1/accounts/{}", id_of(&second)),
            Some(&b.token),
            Some(json!({"is_default": true})),
        )
        .await;
    assert_eq!(moved.status, 200, "{engine:?}: {}", moved.body);
    assert_eq!(app.account(&b.token, id_of(&first)).await["is_default"], false, "{engine:?}: one default per currency");
    let account_a = app.open_account(&a.token).await;
    app.deposit(&account_a, "10.00").await;
    let sent = app.transfer(&a.token, id_of(&account_a), &b.phone, "2.00").await;
    assert_eq!(sent.status, 201, "{engine:?}: {}", sent.body);
    assert_eq!(sent.body["credit_account"], id_of(&second), "{engine:?}: paid to the new default");

    // A typo in an account number is caught by its check digits.
    let number = second["number"].as_str().unwrap().to_owned();
    let last = number.chars().last().unwrap();
    let typo = format!("{}{}", &number[..number.len() - 1], if last == '1' { '2' } else { '1' });
    let refused = app
        .post(
            "/api/v1/transfers",
            Some(&a.token),
            json!({"from_account": id_of(&account_a).to_string(), "to_account": typo, "amount": "1.00", "currency": "BYN"}),
        )
        .await;
    assert_eq!(refused.status, 422, "{engine:?}: {}", refused.body);
    assert!(refused.codes().iter().any(|c| c == "account_number_check_digits"), "{engine:?}: {}", refused.body);
    assert_eq!(app.balance(&a.token, id_of(&account_a)).await, "8.00", "{engine:?}: nothing moved");
}

/// What the seed banks' admins do at the desk, over HTTP: a teller
/// registers a customer (who must change the given password before anything
/// else), opens an account for them, takes cash and moves money between two
/// customers' accounts; every step is journaled with the teller as actor.
async fn the_staff_desk_is_journaled_with_the_staff_member(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let mut form = registration(3);
    form.as_object_mut().unwrap().remove("password");
    let registered = app.post("/api/v1/staff/customers", Some(&app.teller), form).await;
    assert_eq!(registered.status, 201, "{engine:?}: {}", registered.body);
    let customer_id = registered.body["customer"]["id"].as_i64().unwrap();
    let temporary = registered.body["temporary_password"].as_str().unwrap().to_owned();
    let phone = registered.body["customer"]["phone"].as_str().unwrap().to_owned();

    let opened =
        app.post(&format!("/api/v1/staff/customers/{customer_id}/accounts"), Some(&app.teller), open_form()).await;
    assert_eq!(opened.status, 201, "{engine:?}: {}", opened.body);
    assert_eq!(opened.body["owner"], customer_id, "{engine:?}: {}", opened.body);
    app.deposit(&opened.body, "50.00").await;

    // The given password works once, for changing it and nothing else.
    let signed_in = app.login(&phone, &temporary, None).await;
    assert_eq!(signed_in.status, 200, "{engine:?}: {}", signed_in.body);
    assert_eq!(signed_in.body["password_change_required"], true, "{engine:?}: {}", signed_in.body);
    let restricted = signed_in.body["access_token"].as_str().unwrap().to_owned();
    let refused = app.get("/api/v1/accounts", &restricted).await;
    assert_eq!(refused.status, 403, "{engine:?}: {}", refused.body);
    assert_eq!(refused.body["code"], "password_change_required", "{engine:?}: {}", refused.body);
    let changed = app
        .post(
            "/api/v1/auth/password",
            Some(&restricted),
            json!({"current_password": temporary, "new_password": PASSWORD}),
        )
        .await;
    assert_eq!(changed.status, 204, "{engine:?}: {}", changed.body);
    let token = app.login_ok(&phone, PASSWORD, None).await;
    assert_eq!(app.balance(&token, id_of(&opened.body)).await, "50.00", "{engine:?}");

    // A staff transfer between two customers' accounts.
    let other = app.register(4).await;
    let other_account = app.open_account(&other.token).await;
    let moved = app
        .post(
            "/api/v1/staff/transfers",
            Some(&app.teller),
            json!({"from_account": opened.body["number"], "to_account": other_account["number"], "amount": "20.00",
                   "currency": "BYN", "description": "as instructed at the desk"}),
        )
        .await;
    assert_eq!(moved.status, 201, "{engine:?}: {}", moved.body);
    assert_eq!(app.balance(&token, id_of(&opened.body)).await, "30.00", "{engine:?}");
    assert_eq!(app.balance(&other.token, id_of(&other_account)).await, "20.00", "{engine:?}");

    // The journal names the teller for each desk action.
    let me = app.get("/api/v1/staff/audit?action=staff.transfer&limit=10", &app.manager).await;
    let teller = me.body["items"][0]["actor"].as_str().unwrap_or_default().to_owned();
    assert!(teller.starts_with("staff:"), "{engine:?}: {}", me.body);
    for action in ["customer.register", "account.open", "cash.deposit", "staff.transfer"] {
        let events = app.get(&format!("/api/v1/staff/audit?action={action}&limit=50"), &app.manager).await;
        assert_eq!(events.status, 200, "{engine:?}: {}", events.body);
        let by_teller = events.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["actor"] == teller.as_str() && e["role"] == "teller")
            .count();
        assert!(by_teller >= 1, "{engine:?}: no {action} by {teller}: {}", events.body);
    }

    // Every list pages: accounts and staff users too.
    app.post(&format!("/api/v1/staff/customers/{customer_id}/accounts"), Some(&app.teller), open_form()).await;
    let first = app.get(&format!("/api/v1/staff/customers/{customer_id}/accounts?limit=1"), &app.teller).await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 1, "{engine:?}: {}", first.body);
    let cursor = first.body["next_cursor"].as_str().expect("a second page").to_owned();
    let second = app.get(&format!("/api/v1/accounts?limit=5&cursor={cursor}"), &token).await;
    assert_eq!(second.body["items"].as_array().unwrap().len(), 1, "{engine:?}: {}", second.body);
    assert_ne!(second.body["items"][0]["id"], first.body["items"][0]["id"], "{engine:?}");
    let staff = app.get("/api/v1/admin/staff?limit=2", &app.admin).await;
    assert_eq!(staff.body["items"].as_array().unwrap().len(), 2, "{engine:?}: {}", staff.body);
    let rest = app
        .get(&format!("/api/v1/admin/staff?cursor={}", staff.body["next_cursor"].as_str().unwrap()), &app.admin)
        .await;
    assert_eq!(rest.body["items"].as_array().unwrap().len(), 1, "{engine:?}: three staff users: {}", rest.body);
}

/// The masked-name preview is rate-limited per customer (20 an hour by
/// default), so no one can walk the phone book for names; the limit is one
/// customer's, refusals are journaled, and a payment itself is not limited.
async fn recipient_lookups_are_limited_per_customer(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let a = app.register(1).await;
    let b = app.register(2).await;
    let c = app.register(3).await;
    let account_a = app.open_account(&a.token).await;
    app.open_account(&b.token).await;
    app.deposit(&account_a, "10.00").await;
    let lookup = "/api/v1/recipients?phone=%2B375297654321&currency=BYN";
    for n in 0..20 {
        let found = app.get(lookup, &a.token).await;
        assert_eq!(found.status, 200, "{engine:?}: lookup {n}: {}", found.body);
    }
    let refused = app.get(lookup, &a.token).await;
    assert_eq!(refused.status, 429, "{engine:?}: {}", refused.body);
    assert_eq!(refused.body["code"], "too_many_attempts", "{engine:?}: {}", refused.body);
    let wait: i64 = refused.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&wait), "{engine:?}: Retry-After {wait}");
    // An unknown phone counts too, and is refused the same way.
    let unknown = app.get("/api/v1/recipients?phone=%2B375291119999&currency=BYN", &a.token).await;
    assert_eq!(unknown.status, 429, "{engine:?}: {}", unknown.body);
    // Another customer is not affected, and paying by phone still works.
    let other = app.get(lookup, &c.token).await;
    assert_eq!(other.status, 200, "{engine:?}: {}", other.body);
    let sent = app.transfer(&a.token, id_of(&account_a), &b.phone, "1.00").await;
    assert_eq!(sent.status, 201, "{engine:?}: {}", sent.body);
    let audit = app.get("/api/v1/staff/audit?action=recipient.lookup&limit=200", &app.manager).await;
    assert_eq!(audit.status, 200, "{engine:?}: {}", audit.body);
    let outcomes: Vec<&str> =
        audit.body["items"].as_array().unwrap().iter().filter_map(|e| e["outcome"].as_str()).collect();
    assert_eq!(outcomes.len(), 23, "{engine:?}: {outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| **o == "too_many_attempts").count(), 2, "{engine:?}: {outcomes:?}");
}

async fn readme_tour(engine: Engine) {
    {
        let Some(app) = spawn_app(engine).await else { return };
        let a = app.register(1).await;
        let b = app.register(2).await;
        // Opening needs the consents.
        let refused = app.post("/api/v1/accounts", Some(&a.token), json!({"kind": "current", "currency": "BYN"})).await;
        assert_eq!(refused.status, 422, "{engine:?}: {}", refused.body);
        assert!(refused.codes().iter().any(|c| c == "consent_required"), "{engine:?}: {}", refused.body);
        let account_a = app.open_account(&a.token).await;
        let account_b = app.open_account(&b.token).await;
        assert_eq!(account_a["balance"], "0.00");
        app.deposit(&account_a, "100.00").await;
        assert_eq!(app.balance(&a.token, id_of(&account_a)).await, "100.00");

        let recipient = app.get("/api/v1/recipients?phone=%2B375297654321&currency=BYN", &a.token).await;
        assert_eq!(recipient.status, 200, "{engine:?}: {}", recipient.body);
        assert_eq!(recipient.body["name"], "Anna I.", "{engine:?}: {}", recipient.body);
        assert!(!recipient.body.to_string().contains("Ivanova"), "{}", recipient.body);

        let sent = app.transfer(&a.token, id_of(&account_a), &b.phone, "25.50").await;
        assert_eq!(sent.status, 201, "{engine:?}: {}", sent.body);
        assert_eq!(app.balance(&a.token, id_of(&account_a)).await, "74.50");
        assert_eq!(app.balance(&b.token, id_of(&account_b)).await, "25.50");

        let first = app.get(&format!("/api/v1/accounts/{}/transactions?limit=1", id_of(&account_a)), &a.token).await;
        assert_eq!(first.status, 200, "{engine:?}: {}", first.body);
        assert_eq!(first.body["items"].as_array().unwrap().len(), 1);
        assert_eq!(first.body["items"][0]["amount"], "25.50", "{}", first.body);
        let cursor = first.body["next_cursor"].as_str().expect("a next page").to_owned();
        let second = app
            .get(&format!("/api/v1/accounts/{}/transactions?limit=1&cursor={cursor}", id_of(&account_a)), &a.token)
            .await;
        assert_eq!(second.status, 200, "{engine:?}: {}", second.body);
        assert_eq!(second.body["items"][0]["amount"], "100.00", "{}", second.body);

        let audit = app.get("/api/v1/staff/audit?limit=200", &app.manager).await;
        assert_eq!(audit.status, 200, "{engine:?}: {}", audit.body);
        let actions: Vec<&str> =
            audit.body["items"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
        for action in ["customer.register", "cash.deposit", "transfer.create"] {
            assert!(actions.contains(&action), "{engine:?}: {action} missing from {actions:?}");
        }
        let verify = app.get("/api/v1/staff/audit/verify", &app.manager).await;
        assert_eq!(verify.status, 200, "{engine:?}: {}", verify.body);
        assert_eq!(verify.body["ok"], true, "{engine:?}: {}", verify.body);
    }
}

async fn money_rules(engine: Engine) {
    {
        let Some(app) = spawn_app(engine).await else { return };
        let a = app.register(1).await;
        let b = app.register(2).await;
        let account_a = app.open_account(&a.token).await;
        app.open_account(&b.token).await;
        app.deposit(&account_a, "10.00").await;
        let id = id_of(&account_a);

        let poor = app.transfer(&a.token, id, &b.phone, "50.00").await;
        assert_eq!((poor.status, poor.code()), (422, "insufficient_funds"), "{engine:?}: {}", poor.body);
        let decimals = app.transfer(&a.token, id, &b.phone, "1.001").await;
        assert_eq!(decimals.status, 422, "{engine:?}: {}", decimals.body);
        assert!(decimals.codes().iter().any(|c| c == "amount_too_many_decimals"), "{engine:?}: {}", decimals.body);
        let exponent = app.transfer(&a.token, id, &b.phone, "1e3").await;
        assert_eq!(exponent.status, 422, "{engine:?}: {}", exponent.body);
        assert!(exponent.codes().iter().any(|c| c == "amount_exponent_notation"), "{engine:?}: {}", exponent.body);
        assert_eq!(app.balance(&a.token, id).await, "10.00");

        let not_empty = app.send(Method::DELETE, &format!("/api/v1/accounts/{id}"), Some(&a.token), None).await;
        assert_eq!((not_empty.status, not_empty.code()), (409, "account_not_empty"), "{engine:?}: {}", not_empty.body);
        let spare = app.open_account(&a.token).await;
        let closed =
            app.send(Method::DELETE, &format!("/api/v1/accounts/{}", id_of(&spare)), Some(&a.token), None).await;
        assert_eq!(closed.status, 200, "{engine:?}: {}", closed.body);
        assert_eq!(closed.body["status"], "closed");

        let blocked = app
            .send(
                Method::PUT,
                &format!("/api/v1/staff/accounts/{id}/status"),
                Some(&app.manager),
                Some(json!({"status": "blocked"})),
            )
            .await;
        assert_eq!(blocked.status, 200, "{engine:?}: {}", blocked.body);
        let refused = app.transfer(&a.token, id, &b.phone, "1.00").await;
        assert_eq!(refused.status, 422, "{engine:?}: {}", refused.body);
        assert_eq!(app.balance(&a.token, id).await, "10.00");

        let c = app.register(3).await;
        for _ in 0..8 {
            app.open_account(&c.token).await;
        }
        let ninth = app.post("/api/v1/accounts", Some(&c.token), open_form()).await;
        assert_eq!(ninth.status, 422, "{engine:?}: {}", ninth.body);
        assert!(ninth.codes().iter().any(|c| c == "account_limit_reached"), "{engine:?}: {}", ninth.body);
    }
}

async fn authorization_matrix(engine: Engine) {
    {
        let Some(app) = spawn_app(engine).await else { return };
        let a = app.register(1).await;
        let b = app.register(2).await;
        let account_a = app.open_account(&a.token).await;
        app.open_account(&b.token).await;
        app.deposit(&account_a, "40.00").await;
        let id = id_of(&account_a);
        for route in all_routes() {
            let method = method_of(route);
            let path = route.path.replace("{id}", &id.to_string());
            let body = plausible_body(route.body);
            let what = format!("{engine:?}: {} {}", route.method, route.path);
            if route.access == Access::Customer && route.path.contains("{id}") {
                let body = if method == Method::PATCH { Some(json!({"nickname": "mine now"})) } else { body.clone() };
                let answer = app.send(method.clone(), &path, Some(&b.token), body).await;
                assert_eq!(answer.status, 404, "{what}: another customer's account: {}", answer.body);
            }
            if matches!(route.access, Access::Teller | Access::Manager | Access::Admin) {
                let answer = app.send(method.clone(), &path, Some(&a.token), body.clone()).await;
                assert_eq!(answer.status, 403, "{what}: customer token: {}", answer.body);
            }
            if matches!(route.access, Access::Manager | Access::Admin) {
                let answer = app.send(method.clone(), &path, Some(&app.teller), body.clone()).await;
                assert_eq!(answer.status, 403, "{what}: teller token: {}", answer.body);
            }
            if route.access == Access::Admin {
                let answer = app.send(method.clone(), &path, Some(&app.manager), body.clone()).await;
                assert_eq!(answer.status, 403, "{what}: manager token: {}", answer.body);
            }
            if route.access != Access::Anyone {
                let answer = app.send(method.clone(), &path, None, body.clone()).await;
                assert_eq!(answer.status, 401, "{what}: no token: {}", answer.body);
            }
        }
        let after = app.account(&a.token, id).await;
        assert_eq!(after["balance"], "40.00", "{engine:?}");
        assert_eq!(after["status"], "active", "{engine:?}");
        assert_eq!(after["owner"], a.id, "{engine:?}");
        assert_ne!(after["nickname"], "mine now", "{engine:?}");
    }
}

async fn every_documented_route_is_served(engine: Engine) {
    {
        let Some(app) = spawn_app(engine).await else { return };
        for route in all_routes() {
            let path = route.path.replace("{id}", "1");
            let answer = app.send(method_of(route), &path, None, plausible_body(route.body)).await;
            let unserved = answer.status == 405 || (answer.status == 404 && answer.body["detail"] == "no such route");
            assert!(!unserved, "{engine:?}: {} {} is not served: {}", route.method, route.path, answer.body);
        }
    }
}

async fn mass_assignment_is_ignored(engine: Engine) {
    {
        let Some(app) = spawn_app(engine).await else { return };
        let mut form = registration(1);
        let extra = json!({"role": "admin", "status": "blocked", "balance": "1000", "id": 999});
        for (key, value) in extra.as_object().unwrap() {
            form[key] = value.clone();
        }
        let answer = app.post("/api/v1/auth/register", None, form).await;
        assert_eq!(answer.status, 201, "{engine:?}: {}", answer.body);
        assert_eq!(answer.body["customer"]["status"], "active", "{engine:?}: {}", answer.body);
        let token = answer.body["access_token"].as_str().unwrap().to_owned();
        let me_id = answer.body["customer"]["id"].as_i64().unwrap();
        let staff = app.get("/api/v1/staff/customers", &token).await;
        assert_eq!(staff.status, 403, "{engine:?}: {}", staff.body);
        let admin = app.get("/api/v1/admin/settings", &token).await;
        assert_eq!(admin.status, 403, "{engine:?}: {}", admin.body);
        let me = app.get("/api/v1/me", &token).await;
        assert_eq!(me.status, 200, "{engine:?}: {}", me.body);

        let mut open = open_form();
        open["balance"] = json!("1000");
        open["owner"] = json!(999);
        open["status"] = json!("active");
        let opened = app.post("/api/v1/accounts", Some(&token), open).await;
        assert_eq!(opened.status, 201, "{engine:?}: {}", opened.body);
        assert_eq!(opened.body["balance"], "0.00", "{engine:?}: {}", opened.body);
        assert_eq!(opened.body["owner"], me_id, "{engine:?}: {}", opened.body);
        let again = app.account(&token, id_of(&opened.body)).await;
        assert_eq!(again["balance"], "0.00");
    }
}

fn claims_of(token: &str) -> Claims {
    TokenKeys::new(vec![KEY; 32], "kassa", "kassa-api").verify(token, now()).expect("a token the server signed")
}

async fn forged_and_revoked_tokens_are_refused(engine: Engine) {
    {
        let Some(app) = spawn_app(engine).await else { return };
        let a = app.register(1).await;
        assert_eq!(app.get("/api/v1/me", &a.token).await.status, 200);
        let claims = claims_of(&a.token);
        let right = TokenKeys::new(vec![KEY; 32], "kassa", "kassa-api");

        let mut forged = Vec::new();
        forged.push(("garbage", "garbage".to_owned()));
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        forged.push(("alg none", format!("{header}.{payload}.")));
        forged.push(("other key", TokenKeys::new(vec![9; 32], "kassa", "kassa-api").sign(&claims).unwrap()));
        let mut expired = claims.clone();
        expired.iat = now() - 2000;
        expired.exp = now() - 1000;
        forged.push(("expired", right.sign(&expired).unwrap()));
        let mut audience = claims.clone();
        audience.aud = "somebody-else".into();
        forged.push(("wrong audience", right.sign(&audience).unwrap()));
        let mut admin = claims.clone();
        admin.role = "admin".into();
        admin.sub = "staff:1".into();
        forged
            .push(("role changed, other key", TokenKeys::new(vec![9; 32], "kassa", "kassa-api").sign(&admin).unwrap()));
        for (what, token) in forged {
            let answer = app.get("/api/v1/me", &token).await;
            assert_eq!(answer.status, 401, "{engine:?}: {what}: {}", answer.body);
        }

        // Logout ends the session for the access token too.
        let out = app.post("/api/v1/auth/logout", Some(&a.token), json!({})).await;
        assert_eq!(out.status, 204, "{engine:?}: {}", out.body);
        let after = app.get("/api/v1/me", &a.token).await;
        assert_eq!((after.status, after.code()), (401, "session_revoked"), "{engine:?}: {}", after.body);

        // Refresh rotation: a reused refresh token ends the family.
        let b = app.register(2).await;
        let first = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": b.refresh})).await;
        assert_eq!(first.status, 200, "{engine:?}: {}", first.body);
        let newest = first.body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(app.get("/api/v1/me", &newest).await.status, 200);
        let reused = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": b.refresh})).await;
        assert_eq!((reused.status, reused.code()), (401, "refresh_token_reused"), "{engine:?}: {}", reused.body);
        let refused = app.get("/api/v1/me", &newest).await;
        assert_eq!(refused.status, 401, "{engine:?}: newest access token after reuse: {}", refused.body);
        let _ = &b.token;
    }
}

async fn sign_in_is_throttled_per_login(engine: Engine) {
    {
        let Some(app) = spawn_app(engine).await else { return };
        let a = app.register(1).await;
        app.register(2).await;
        let unknown = app.login("+375299999999", "wrong password 123", None).await;
        let wrong = app.login(&a.phone, "wrong password 123", None).await;
        assert_eq!((unknown.status, unknown.code()), (401, "invalid_credentials"), "{engine:?}: {}", unknown.body);
        assert_eq!((wrong.status, wrong.code()), (401, "invalid_credentials"), "{engine:?}: {}", wrong.body);
        let mut statuses = Vec::new();
        let mut last = None;
        for _ in 0..11 {
            let answer = app.login(&a.phone, "wrong password 123", None).await;
            statuses.push(answer.status);
            last = Some(answer);
        }
        let last = last.unwrap();
        assert!(statuses.iter().all(|s| *s == 401 || *s == 429), "{engine:?}: {statuses:?}");
        assert_eq!(last.status, 429, "{engine:?}: {statuses:?}: {}", last.body);
        let retry: u64 = last.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(retry >= 1, "{engine:?}");
        // Even the right password is refused while throttled.
        let right = app.login(&a.phone, PASSWORD, None).await;
        assert_eq!(right.status, 429, "{engine:?}: {}", right.body);
        // Another customer from the same address is not locked out.
        let other = app.login("+375297654321", PASSWORD, None).await;
        assert_eq!(other.status, 200, "{engine:?}: {}", other.body);
    }
}

async fn bad_input_is_always_a_4xx(engine: Engine) {
    {
        let Some(app) = spawn_app(engine).await else { return };
        let a = app.register(1).await;
        let b = app.register(2).await;
        let account_a = app.open_account(&a.token).await;
        app.open_account(&b.token).await;
        app.deposit(&account_a, "100.00").await;
        let id = id_of(&account_a);
        let number = account_a["number"].as_str().unwrap().to_owned();
        let mut payloads: Vec<(&str, Vec<u8>, bool)> = vec![
            ("not json", b"this is not json".to_vec(), true),
            ("array", b"[]".to_vec(), true),
            ("wrong types", br#"{"amount": 5, "from_account": 5, "account": 5, "status": 5, "login": 5, "password": 5, "phone": 5, "first_name": 5, "email": 5, "kind": 5, "nickname": 5, "is_default": "yes", "sms_per_transaction": "no", "email_per_transaction": 1, "on_login": [], "refresh_token": 5, "current_password": 5, "new_password": 5, "code": 5, "name": 5, "role": 5, "consents": "all", "currencies": "BYN"}"#.to_vec(), true),
            ("deep nesting", "[".repeat(10_000).into_bytes(), true),
            ("deep objects", "{\"a\":".repeat(10_000).into_bytes(), true),
            ("huge", format!("{{\"amount\":\"{}\"}}", "1".repeat(1 << 20)).into_bytes(), true),
            ("null", b"null".to_vec(), true),
        ];
        let unicode = json!({"amount": "١٢٣", "currency": "BYN", "account": number, "from_account": id.to_string(),
            "to_phone": b.phone, "status": "blocked"});
        payloads.push(("unicode digits", serde_json::to_vec(&unicode).unwrap(), true));
        let valid = json!({"amount": "1.00", "currency": "BYN", "account": number, "from_account": id.to_string(),
            "to_phone": b.phone});
        payloads.push(("no content type", serde_json::to_vec(&valid).unwrap(), false));
        // Money that is not money: each must be refused on every money route.
        for (what, amount) in [
            ("three decimals for BYN", json!("1.005")),
            ("exponent notation", json!("1e2")),
            ("a huge amount", json!("99999999999999999999999999.99")),
            ("a negative amount", json!("-1.00")),
            ("an amount as a JSON number beyond f64", serde_json::from_str::<Value>("1e400").unwrap_or(json!(1e300))),
        ] {
            let mut money = valid.clone();
            money["amount"] = amount;
            payloads.push((what, serde_json::to_vec(&money).unwrap(), true));
        }
        let mut ids = registration(9);
        ids["phone"] = json!("+375٢٩١٢٣٤٥٦٧");
        ids["passport_number"] = json!("MP١٢٣٤٥٦٧");
        payloads.push(("unicode digits in a phone and a passport", serde_json::to_vec(&ids).unwrap(), true));
        let mut nul = valid.clone();
        for field in ["login", "password", "first_name", "nickname", "description", "name", "current_password"] {
            nul[field] = json!("a\u{0}b");
        }
        payloads.push(("a NUL character", serde_json::to_vec(&nul).unwrap(), true));
        let customers_before = app.get("/api/v1/staff/customers?limit=200", &app.manager).await.body["items"].clone();
        let staff_before = app.get("/api/v1/admin/staff", &app.admin).await.body.clone();
        let products_before = app.get("/api/v1/products", &a.token).await.body.clone();
        for route in all_routes() {
            let method = method_of(route);
            if route.body.is_none() || !matches!(method, Method::POST | Method::PUT | Method::PATCH) {
                continue;
            }
            let token = match route.access {
                Access::Admin => &app.admin,
                Access::Teller | Access::Manager => &app.manager,
                _ => &a.token,
            };
            let path = route.path.replace("{id}", &id.to_string());
            for (what, bytes, json_type) in &payloads {
                // Only the money routes read an amount, and only the
                // registrations a phone and a passport; elsewhere the field
                // is unknown and ignored.
                let money = what.contains("amount") || what.contains("decimals") || what.contains("exponent");
                if (*what == "unicode digits" || money) && !matches!(route.body, Some("Transfer" | "Cash")) {
                    continue;
                }
                if what.contains("passport") && route.body != Some("Registration") {
                    continue;
                }
                let mut request = app
                    .client
                    .request(method.clone(), format!("{}{path}", app.base))
                    .bearer_auth(token)
                    .body(bytes.clone());
                if *json_type {
                    request = request.header("content-type", "application/json");
                }
                let answer = if bytes.len() > 64 * 1024 {
                    // The server answers before reading all of a body this
                    // large and closes the connection, which reqwest reports
                    // as an error while it is still writing: read the status
                    // line over a plain socket instead.
                    app.raw(&method, &path, token, bytes).await
                } else {
                    app.answer(request).await
                };
                assert!(
                    (400..500).contains(&answer.status),
                    "{engine:?}: {} {} with {what}: {} {}",
                    route.method,
                    route.path,
                    answer.status,
                    answer.body
                );
                assert_problem(&answer, &format!("{engine:?}: {} {} with {what}", route.method, route.path));
            }
            // Missing fields: `{}` is a 4xx wherever a field is required,
            // and never a 5xx where every field is optional.
            let empty = app.send(method.clone(), &path, Some(token), Some(json!({}))).await;
            assert!(
                empty.status < 500,
                "{engine:?}: {} {} with {{}}: {} {}",
                route.method,
                route.path,
                empty.status,
                empty.body
            );
            if matches!(
                route.body,
                Some("Transfer" | "Cash" | "Registration" | "Login" | "OpenAccount" | "Product" | "StaffUser")
            ) {
                assert!(
                    (400..500).contains(&empty.status),
                    "{engine:?}: {} {} with {{}}: {}",
                    route.method,
                    route.path,
                    empty.status
                );
                assert_problem(&empty, &format!("{engine:?}: {} {} with {{}}", route.method, route.path));
            }
        }
        // Query strings and path ids that are not what they should be, on
        // every route: never a 5xx, and every refusal a problem document.
        for route in all_routes() {
            let token = match route.access {
                Access::Admin => &app.admin,
                Access::Teller | Access::Manager => &app.manager,
                _ => &a.token,
            };
            for (what, id_text) in
                [("a huge id", "99999999999999999999999"), ("a unicode id", "%D9%A1"), ("a negative id", "-1")]
            {
                if !route.path.contains("{id}") {
                    continue;
                }
                let path = route.path.replace("{id}", id_text);
                let answer = app.send(method_of(route), &path, Some(token), plausible_body(route.body)).await;
                assert_eq!(
                    answer.status, 404,
                    "{engine:?}: {} {} with {what}: {}",
                    route.method, route.path, answer.body
                );
                assert_problem(&answer, &format!("{engine:?}: {} {} with {what}", route.method, route.path));
            }
            if method_of(route) != Method::GET {
                continue;
            }
            let path = route.path.replace("{id}", &id.to_string());
            for query in [
                "limit=abc",
                "limit=99999999999999999999",
                "limit=-1",
                "limit=0",
                "cursor=%FF%FE",
                "cursor=١٢",
                "phone=%D9%A1%D9%A2&currency=BYN",
                "currency=XXX&phone=%2B375297654321",
                "action=%00",
            ] {
                let answer = app.get(&format!("{path}?{query}"), token).await;
                assert!(
                    answer.status < 500,
                    "{engine:?}: GET {}?{query}: {} {}",
                    route.path,
                    answer.status,
                    answer.body
                );
                if (400..500).contains(&answer.status) {
                    assert_problem(&answer, &format!("{engine:?}: GET {}?{query}", route.path));
                }
            }
        }
        assert_eq!(
            app.get("/api/v1/staff/customers?limit=200", &app.manager).await.body["items"],
            customers_before,
            "{engine:?}: no customer was created or changed"
        );
        assert_eq!(app.get("/api/v1/admin/staff", &app.admin).await.body, staff_before, "{engine:?}: no staff user");
        assert_eq!(app.get("/api/v1/products", &a.token).await.body, products_before, "{engine:?}: no product");
        assert_eq!(app.balance(&a.token, id).await, "100.00", "{engine:?}");
        assert_eq!(app.get("/api/v1/me", &a.token).await.status, 200, "{engine:?}: the customer is still signed in");
    }
}

/// A refusal is an `application/problem+json` document with a stable code.
fn assert_problem(answer: &Answer, what: &str) {
    if answer.headers.is_empty() {
        return; // read over a plain socket (the 1 MB body): status only
    }
    let content_type = answer.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(content_type.starts_with("application/problem+json"), "{what}: content type {content_type:?}");
    assert!(answer.body["code"].as_str().is_some_and(|code| !code.is_empty()), "{what}: no code in {}", answer.body);
}

async fn idempotent_transfers_move_money_once(engine: Engine) {
    {
        let Some(app) = spawn_app(engine).await else { return };
        let a = app.register(1).await;
        let b = app.register(2).await;
        let account_a = app.open_account(&a.token).await;
        let account_b = app.open_account(&b.token).await;
        app.deposit(&account_a, "100.00").await;
        let id = id_of(&account_a);
        let form = json!({"from_account": id.to_string(), "to_phone": b.phone, "amount": "1.25", "currency": "BYN"});
        let url = format!("{}/api/v1/transfers", app.base);
        let mut handles = Vec::new();
        for _ in 0..50 {
            let request =
                app.client.post(&url).bearer_auth(&a.token).header("Idempotency-Key", "tour-key-1").json(&form);
            handles.push(tokio::spawn(async move {
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                (status, response.json::<Value>().await.unwrap())
            }));
        }
        let mut ids = std::collections::BTreeSet::new();
        for handle in handles {
            let (status, body) = handle.await.unwrap();
            assert_eq!(status, 201, "{engine:?}: {body}");
            ids.insert(body["id"].as_str().unwrap().to_owned());
        }
        assert_eq!(ids.len(), 1, "{engine:?}: {ids:?}");
        assert_eq!(app.balance(&a.token, id).await, "98.75", "{engine:?}");
        assert_eq!(app.balance(&b.token, id_of(&account_b)).await, "1.25", "{engine:?}");

        let mut changed = form.clone();
        changed["amount"] = json!("2.00");
        let reused = app
            .answer(app.client.post(&url).bearer_auth(&a.token).header("Idempotency-Key", "tour-key-1").json(&changed))
            .await;
        assert_eq!((reused.status, reused.code()), (422, "idempotency_key_reused"), "{engine:?}: {}", reused.body);
        assert_eq!(app.balance(&a.token, id).await, "98.75", "{engine:?}");
    }
}
