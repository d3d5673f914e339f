#!/usr/bin/env python3
"""Writes the hand-made seed corpus of the `frames` fuzz target into
corpus/frames/seed-*: good frames of every operation (as whole sessions, so
the state machine reaches every stage) and every class of bad frame.
Run from fuzz/: python3 seeds/make_seeds.py"""
import json, os

out = os.path.join(os.path.dirname(__file__), "..", "corpus", "frames")
os.makedirs(out, exist_ok=True)

def frames(*objects):
    lines = []
    for i, o in enumerate(objects, 1):
        if isinstance(o, (bytes, str)):
            lines.append(o.encode() if isinstance(o, str) else o)
        else:
            o = dict({"id": i, "clock": i * 2}, **o)
            lines.append(json.dumps(o, separators=(",", ":")).encode())
    return b"\n".join(lines) + b"\n"

def write(name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)

hello = {"op": "hello", "protocol_version": 1, "client": "seed"}
hello_terminal = {"op": "hello", "protocol_version": 1, "terminal_id": 3, "terminal_key": "k3y"}
customer_ops = [
    {"op": "balance"}, {"op": "balance", "account": "BY20KASA30120000000000000007"},
    {"op": "accounts"},
    {"op": "transfer", "to_account": "BY20KASA30120000000000000008", "amount": "5.00", "description": "rent"},
    {"op": "transfer", "to_phone": "+375291112233", "amount": "1.50"},
    {"op": "history"}, {"op": "history", "cursor": "77", "limit": 50},
    {"op": "ping"},
]
cash_ops = [{"op": "deposit", "amount": "100.00"}, {"op": "withdraw", "amount": "20.00", "account": "4000123412341234"}]
staff_ops = [
    {"op": "customers", "query": "Ivanova", "limit": 5},
    {"op": "open_account", "customer_id": 7, "kind": "debit_card", "currency": "BYN", "holder_name": "ANNA I"},
    {"op": "close_account", "account": "BY20KASA30120000000000000007"},
    {"op": "transactions", "account": "BY20KASA30120000000000000007", "kind": "transfer", "cursor": "9", "limit": 1},
]
write("seed-good-session", frames(
    {"op": "ping"}, hello, {"op": "login", "phone": "+375291112233", "password": "correct horse"},
    *customer_ops, {"op": "logout"},
    {"op": "login", "staff_login": "admin", "password": "pw", "totp": "123456"}, *staff_ops, {"op": "logout"},
    {"op": "resume", "session_token": "abc.def"}, {"op": "logout"}))
write("seed-good-terminal", frames(
    hello_terminal, {"op": "login", "card_number": "4000123412341234", "pin": "1234"}, *cash_ops, *customer_ops,
    {"op": "logout"}, {"op": "login", "staff_login": "teller", "password": "pw"}, {"op": "customers"}))
for op in customer_ops + cash_ops + staff_ops + [hello, hello_terminal, {"op": "logout"}]:
    write("seed-op-" + op["op"] + ("-t" if "terminal_id" in op else ""), frames(op))
write("seed-refusals", frames(
    {"op": "balance"}, {"op": "hello", "protocol_version": 2}, hello, {"op": "balance"}, {"op": "customers"},
    {"op": "logout"}, {"op": "login", "card_number": "4", "pin": "1"}, {"op": "login", "phone": "+1", "password": "p"},
    {"op": "customers"}, {"op": "deposit", "amount": "1"}, hello, {"op": "login", "phone": "+1", "password": "p"}))
write("seed-not-json", b"not json\n[1,2]\n\"str\"\n42\nnull\n{\n{\"id\":1,\"op\":\"ping\"\n\n{}\n")
write("seed-unknown-op", frames({"op": "rob_the_bank"}, {"op": ""}, {"op": "HELLO"}, {"op": "ping "}, {"id": 9}))
write("seed-wrong-types", frames(
    {"op": 5}, {"op": "hello", "protocol_version": "1"}, {"op": "hello", "protocol_version": 1.5},
    {"op": "withdraw", "amount": 10}, {"op": "balance", "account": 42}, {"op": "history", "limit": "5"},
    {"op": "history", "limit": 0}, {"op": "history", "limit": 51}, {"op": "login", "phone": ["+1"], "password": "p"},
    {"op": "open_account", "customer_id": "7", "kind": "current", "currency": "BYN"},
    {"op": "open_account", "customer_id": 1.0, "kind": "current", "currency": "BYN"},
    {"op": "hello", "protocol_version": 1, "terminal_id": "3", "terminal_key": "k"},
    {"op": "ping", "clock": "9"}, {"op": "ping", "clock": 1.5}, {"op": "ping", "clock": None}, {"op": "ping", "clock": True}))
write("seed-missing-fields", frames(
    {"op": "hello"}, {"op": "hello", "protocol_version": 1, "terminal_id": 3},
    {"op": "hello", "protocol_version": 1, "terminal_key": "k"}, {"op": "login"}, {"op": "login", "phone": "+1"},
    {"op": "login", "card_number": "4"}, {"op": "login", "staff_login": "a"}, {"op": "resume"},
    {"op": "withdraw"}, {"op": "deposit", "amount": None}, {"op": "transfer", "amount": "1"},
    {"op": "transfer", "amount": "1", "to_account": "a", "to_phone": "b"}, {"op": "open_account"},
    {"op": "close_account"}, b'{"clock":1,"op":"ping"}', b'{"id":1}'))
write("seed-nul", frames(
    {"op": "login", "phone": "+1\u0000", "password": "p"}, {"op": "ping", "x\u0000y": 1},
    {"op": "ping", "deep": [{"a": ["\u0000"]}]}, {"op": "hel\u0000lo", "protocol_version": 1}) + b'{"id":1,"op":"ping"\x00}\n')
write("seed-huge-clocks", b"\n".join([
    b'{"id":1,"clock":9223372036854775808,"op":"ping"}',
    b'{"id":2,"clock":18446744073709551615,"op":"ping"}',
    b'{"id":3,"clock":18446744073709551616,"op":"ping"}',
    b'{"id":4,"clock":1180591620717411303424,"op":"ping"}',
    b'{"id":5,"clock":1e30,"op":"ping"}',
    b'{"id":6,"clock":1e400,"op":"ping"}',
    b'{"id":7,"clock":-1,"op":"ping"}',
    b'{"id":8,"clock":-9223372036854775809,"op":"ping"}',
    b'{"id":9,"clock":4294967296,"op":"ping"}',
    b'{"id":10,"clock":4294967297,"op":"ping"}',
    b'{"id":11,"clock":4294967400,"op":"ping"}',
    b'{"id":12,"clock":1.8446744073709552e19,"op":"ping"}',
]) + b"\n")
write("seed-negative-ids", b"\n".join([
    b'{"id":-1,"op":"ping"}', b'{"id":-9223372036854775808,"op":"ping"}', b'{"id":9007199254740992,"op":"ping"}',
    b'{"id":9007199254740991,"op":"ping"}', b'{"id":1.0,"op":"ping"}', b'{"id":"1","op":"ping"}',
    b'{"id":null,"op":"ping"}', b'{"id":1e3,"op":"ping"}', b'{"id":0,"op":"ping"}',
    b'{"id":1,"op":"open_account","customer_id":-3,"kind":"current","currency":"BYN"}',
    b'{"id":2,"op":"hello","protocol_version":1,"terminal_id":-4,"terminal_key":"k"}',
    b'{"id":3,"op":"hello","protocol_version":-1}',
]) + b"\n")
write("seed-deep-nesting", b'{"id":1,"op":"ping","x":' + b"[" * 200 + b"]" * 200 + b"}\n"
      + b'{"id":2,"op":"ping","x":' + b'{"a":' * 100 + b"1" + b"}" * 100 + b"}\n"
      + b"[" * 5000 + b"\n")
big = b'{"id":1,"op":"ping","pad":"' + b"a" * (16 * 1024) + b'"}'
write("seed-16k-line", frames(hello) + big + b"\n" + frames({"op": "balance"}))
near = b'{"id":1,"op":"ping","pad":"'
near = near + b"b" * (16 * 1024 - 1 - len(near) - 2) + b'"}'
write("seed-16k-edge", near + b"\r\n" + frames({"op": "ping"}))
write("seed-invalid-utf8", b'{"id":1,"op":"ping","x":"\xff\xfe"}\n{"id":2,"op":"\xc3\x28"}\n\xf0\x28\x8c\xbc\n'
      + b'{"id":3,"op":"login","phone":"\xed\xa0\x80","password":"p"}\n{"id":4,"op":"ping","s":"\\ud800"}\n')
write("seed-crlf-and-blank", b'{"id":1,"op":"ping"}\r\n\r\n\n{"id":2,"clock":3,"op":"hello","protocol_version":1}\r\n')
