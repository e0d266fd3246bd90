"""Redaction: planted secrets are removed from text, labels and pprof string
tables; profiles stay valid (go tool pprof opens them)."""

from __future__ import annotations

import gzip

import pytest
from findings_local import pprof_top

from tui.profiles import Profile
from tui.profiles.writer import build_profile
from tui.redact import (
    MASK,
    is_secret_key,
    redact_mapping,
    redact_obj,
    redact_profile_bytes,
    redact_text,
)

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk"
PLANTED = {
    "GET /api/v1/items?token=tok-abc123&page=2": "tok-abc123",
    "Authorization: Bearer s3cr3t-bearer-value": "s3cr3t-bearer-value",
    "curl -H 'Authorization: Basic dXNlcjpwYXNz' http://x": "dXNlcjpwYXNz",
    "app --password hunter2 --verbose": "hunter2",
    "app --db-password=p4ss --port=80": "p4ss",
    "postgres://admin:pa55w0rd@db:5432/x": "pa55w0rd",
    "key id AKIAIOSFODNN7EXAMPLE used": "AKIAIOSFODNN7EXAMPLE",
    "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY": "wJalrXUtnFEMI",
    f"cookie session={JWT}": JWT[:20],
    f"jwt {JWT} in a log line": JWT[:20],
    "/login?user=bob&password=correct-horse": "correct-horse",
    "DB_PASSWORD=swordfish": "swordfish",
    '{"api_key": "k-7788-9900", "user": "bob"}': "k-7788-9900",
    "X-Api-Key: 0123456789abcdef": "0123456789abcdef",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789 pushed": "ghp_abcdefghij",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----": "MIIEow",
}


@pytest.mark.parametrize("text,secret", list(PLANTED.items()))
def test_planted_secret_is_removed(text, secret):
    out = redact_text(text)
    assert secret not in out
    assert MASK in out


@pytest.mark.parametrize("text", [
    "main.(*Cache).get", "runtime.gopark", "net/http.(*conn).serve", "main.keyFunc",
    "monkey=banana", "GET /api/orders?page=2", "sync.(*Mutex).Lock",
    "crypto/sha256.block", "container cgroup: 9 of 10 periods throttled",
])
def test_ordinary_text_is_untouched(text):
    assert redact_text(text) == text


def test_labels_and_annotations_with_secret_keys():
    d = {"app": "api", "api-token": "abc", "vault.hashicorp.com/agent-inject-secret-db": "x",
         "note": "see ?token=zzz", "monkey": "banana", "password": "p"}
    out = redact_mapping(d)
    assert out["app"] == "api" and out["monkey"] == "banana"
    assert out["api-token"] == MASK and out["password"] == MASK
    assert out["vault.hashicorp.com/agent-inject-secret-db"] == MASK
    assert out["note"] == f"see ?token={MASK}"
    assert is_secret_key("client_secret") and not is_secret_key("tier")


def test_nested_report_objects():
    obj = {"target": {"labels": {"db-password": "x"}}, "evidence": ["at /x?token=abc"]}
    out = redact_obj(obj)
    assert out["target"]["labels"]["db-password"] == MASK
    assert out["evidence"] == [f"at /x?token={MASK}"]


def _profile_with_secrets() -> bytes:
    msg = build_profile(
        [("goroutine", "count")],
        [(("runtime.goexit", "main.handle", "main.fetch /v1?token=tok-999"), [3]),
         (("runtime.goexit", "main.worker"), [2])],
    )
    # pprof.Do labels on a sample: one secret-ish, one not
    strings = list(msg.string_table)
    strings += ["auth_token", "eyJ-not-a-jwt-but-secret", "route", "/api/orders"]
    del msg.string_table[:]
    msg.string_table.extend(strings)
    n = len(strings)
    lb = msg.sample[0].label.add()
    lb.key, lb.str = n - 4, n - 3
    lb2 = msg.sample[0].label.add()
    lb2.key, lb2.str = n - 2, n - 1
    return gzip.compress(msg.SerializeToString())


def test_profile_string_table_rewritten_and_profile_still_valid(tmp_path):
    data = _profile_with_secrets()
    clean, n = redact_profile_bytes(data)
    assert n == 2  # the function name and the secret label
    p = Profile.from_bytes(clean)
    names = {f for st, _ in p.stacks() for f in st}
    assert f"main.fetch /v1?token={MASK}" in names
    assert "tok-999" not in gzip.decompress(clean).decode("latin-1")
    labels = p.labels()
    assert labels[0]["auth_token"] == MASK and labels[0]["route"] == "/api/orders"
    assert p.total() == 5
    unchanged, m = redact_profile_bytes(gzip.compress(build_profile(
        [("goroutine", "count")], [(("main.main",), [1])]).SerializeToString()))
    assert m == 0


@pytest.mark.slow
def test_redacted_profile_opens_in_go_tool_pprof(go_tool, tmp_path):
    clean, _ = redact_profile_bytes(_profile_with_secrets())
    path = tmp_path / "goroutine.pb.gz"
    path.write_bytes(clean)
    rows = pprof_top(go_tool, path)
    assert any("main.fetch" in r[2] and MASK in r[2] for r in rows)
    assert not any("tok-999" in r[2] for r in rows)
