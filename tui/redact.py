"""Redaction of secrets in everything an export writes.

Rules (the README copies this list). Each match is replaced by ``[REDACTED]``;
the key or scheme before it is kept so the reader still sees what was there:

1. ``Authorization: Bearer …`` / ``Authorization: Basic …`` headers, and any
   ``Bearer <token>``.
2. ``key=value`` in URLs, query strings, paths and arguments, when the key is
   secret-ish: token, access_token, refresh_token, id_token, api_key, apikey,
   api-key, key, secret, client_secret, password, passwd, pwd, pass, auth,
   signature, sig, session, sessionid, credential(s), private_key (any case,
   also with a ``-``/``_`` prefix such as ``X-Api-Key`` or ``db_password``).
3. Command-line flags ``--password VALUE``, ``--token=VALUE`` and the same
   secret-ish names.
4. Passwords in URLs: ``scheme://user:PASSWORD@host``.
5. AWS access key IDs (``AKIA…``/``ASIA…`` + 16) and ``aws_secret_access_key``
   values; GitHub (``ghp_…``, ``github_pat_…``), Slack (``xox?-…``) and
   Google (``AIza…``) API tokens.
6. JWT-looking strings (three base64url parts, the first starting ``eyJ``).
7. PEM private key blocks.
8. Label and annotation values (pod labels, pprof sample labels) whose key is
   secret-ish (rule 2's names, plus anything containing token, secret,
   password, passwd, credential, apikey, api-key, api_key, private).

In pprof profiles the string table is rewritten (sample labels with a
secret-ish key get a new ``[REDACTED]`` string), so the profile stays valid and
``go tool pprof`` still opens it. Go symbol names are left alone unless they
match a rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "[REDACTED]"

_SECRET_KEYS = (
    r"(?:access[_-]?|refresh[_-]?|id[_-]?|auth[_-]?|bearer[_-]?|session[_-]?)?token"
    r"|api[_-]?key|apikey|x-api-key|key|secret|client[_-]?secret|password|passwd|pwd|pass"
    r"|auth|signature|sig|session(?:id)?|credentials?|private[_-]?key"
)
# A secret-ish name alone or after a separator (db_password, X-Api-Key), or glued
# to a prefix for the unambiguous words (mytoken); "monkey" stays unmasked.
_KEY = (rf"(?:[A-Za-z0-9.]*[_.-])?(?:{_SECRET_KEYS})"
        r"|[A-Za-z0-9_.-]*(?:token|secret|password|passwd)")
_VALUE = r"[^\s&\"'<>;,)\]}]+"

_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
     MASK),
    (re.compile(r"(?i)(authorization\s*[:=]\s*(?:bearer|basic|token)?\s*)[^\s\"'<>,;]+"),
     rf"\1{MASK}"),
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+"), rf"\1{MASK}"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}"), MASK),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), MASK),
    (re.compile(r"(?i)(aws_secret_access_key\s*[=:]\s*)\S+"), rf"\1{MASK}"),
    (re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}\b|\bgithub_pat_[A-Za-z0-9_]{20,}"),
     MASK),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), MASK),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), MASK),
    (re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]+:)[^@\s/]+(@)"), rf"\1{MASK}\2"),
    # --password VALUE / --token=VALUE / -password=VALUE
    (re.compile(rf"(?i)(--?(?:{_KEY})(?:=|\s+))(?!{re.escape(MASK)})(?!-)({_VALUE})"),
     rf"\1{MASK}"),
    # key=value in query strings, paths, env and arguments
    (re.compile(rf"(?i)(?<![A-Za-z0-9_.-])((?:{_KEY})\s*=\s*)(?!{re.escape(MASK)})({_VALUE})"),
     rf"\1{MASK}"),
    # "password": "value" / token: value in JSON or YAML text
    (re.compile(rf"(?i)(\"?(?<![A-Za-z0-9_.-])(?:{_KEY})\"?\s*:\s*\"?)(?!{re.escape(MASK)})"
                r"([^\s\"',}]{4,})"), rf"\1{MASK}"),
]

_SECRETISH_LABEL = re.compile(
    rf"(?i)(?:^|[/._-])(?:{_SECRET_KEYS})$|token|secret|password|passwd|credential|apikey"
    r"|api-key|api_key|private"
)


def redact_text(text: str) -> str:
    """Every rule applied to one string."""
    if not text:
        return text
    for pat, rep in _RULES:
        text = pat.sub(rep, text)
    return text


def is_secret_key(key: str) -> bool:
    """Whether a label/annotation/header key names a secret (rule 8)."""
    return bool(_SECRETISH_LABEL.search(key))


def redact_mapping(d: Mapping[str, Any]) -> dict[str, Any]:
    """Labels, annotations, headers: secret-ish keys masked, other values redacted as text."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if is_secret_key(str(k)):
            out[k] = MASK
        elif isinstance(v, str):
            out[k] = redact_text(v)
        elif isinstance(v, Mapping):
            out[k] = redact_mapping(v)
        elif isinstance(v, list):
            out[k] = [redact_text(x) if isinstance(x, str) else x for x in v]
        else:
            out[k] = v
    return out


def redact_obj(obj: Any) -> Any:
    """Recursively redact a JSON-like structure (dict keys checked, strings scanned)."""
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, Mapping):
        return {k: (MASK if is_secret_key(str(k)) and isinstance(v, str) and v else redact_obj(v))
                for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact_obj(x) for x in obj]
    return obj


def redact_profile_message(msg: Any) -> int:
    """Rewrite a ``profile_pb2.Profile`` in place. Returns how many strings changed.

    Strings are redacted where they are; sample labels with a secret-ish key
    are pointed at one new ``[REDACTED]`` string (the old value may be shared
    with a symbol name, so it is not overwritten).
    """
    changed = 0
    table = list(msg.string_table)
    for i, s in enumerate(table):
        if i == 0:
            continue
        r = redact_text(s)
        if r != s:
            table[i] = r
            changed += 1
    mask_idx = None
    for sample in msg.sample:
        for lb in sample.label:
            if lb.str and 0 <= lb.key < len(table) and is_secret_key(table[lb.key]):
                if mask_idx is None:
                    mask_idx = len(table)
                    table.append(MASK)
                if lb.str != mask_idx:
                    lb.str = mask_idx
                    changed += 1
    if changed:
        del msg.string_table[:]
        msg.string_table.extend(table)
    return changed


def redact_profile_bytes(data: bytes) -> tuple[bytes, int]:
    """A pprof profile (gzip or raw) with secrets redacted, gzipped, and the count.
    Unchanged profiles come back as the original bytes."""
    from tui.profiles.pprof import Profile

    p = Profile.from_bytes(data)
    n = redact_profile_message(p.message)
    if not n:
        return data, 0
    return Profile(p.message).to_bytes(), n
