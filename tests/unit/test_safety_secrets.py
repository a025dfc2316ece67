"""Secrets detection (sluice.safety.secrets): the vendored gitleaks rule set and
its provenance, real-shaped examples of each kind (values generated here, never
real keys), negatives, a false-positive sweep over the project's own text, and
timings on prose and on text made of one keyword repeated."""

from __future__ import annotations

import ast
import glob
import hashlib
import itertools
import json
import random
import string
import time
from pathlib import Path

import pytest

from sluice.safety import secrets
from sluice.safety.secrets import RULESET, may_contain, spans

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "services/safety/sluice/safety/data/secrets"
CORPUS = sorted((ROOT / "services/routing/sluice/routing/data/corpus").glob("*.jsonl"))
ALNUM = string.ascii_letters + string.digits


def fake(n: int, alphabet: str = ALNUM, seed: int = 0) -> str:
    """n characters drawn from `alphabet` by a seeded generator: key-shaped, never a key."""
    rng = random.Random(f"{seed}-{n}-{alphabet}")
    return "".join(rng.choice(alphabet) for _ in range(n))


def found(text: str) -> list[tuple[str, str]]:
    return [(text[s:e], rule) for s, e, rule in spans(text)]


# --- the rule set and where it comes from --------------------------------------------------


def test_vendored_file_matches_its_provenance():
    source = (DATA / "SOURCE.md").read_text()
    digest = hashlib.sha256((DATA / "gitleaks.toml").read_bytes()).hexdigest()
    assert RULESET.sha256 == digest and digest in source
    assert RULESET.commit in source and len(RULESET.commit) == 40
    assert RULESET.source == "https://github.com/gitleaks/gitleaks"
    assert (DATA / "LICENSE-gitleaks").read_text().startswith("MIT License")


def test_rules_loaded_skipped_and_disabled_are_counted_with_reasons():
    print(f"\nloaded {len(RULESET.loaded)}, skipped {len(RULESET.skipped)}, disabled {len(RULESET.disabled)}, "
          f"adapted {dict(RULESET.adapted)}")
    for rule_id, reason in {**RULESET.skipped, **RULESET.disabled}.items():
        print(f"  {rule_id}: {reason}")
    assert len(RULESET.loaded) > 200
    assert set(RULESET.disabled) == set(secrets._DISABLED)
    assert all(reason for reason in [*RULESET.skipped.values(), *RULESET.disabled.values()])
    # At this commit the only rules skipped are the ones that need a file path.
    assert all("path" in reason for reason in RULESET.skipped.values())
    assert not set(RULESET.loaded) & (set(RULESET.skipped) | set(RULESET.disabled))


def test_module_does_not_import_detectors():
    # detectors.py imports secrets.py; the reverse would be an import cycle.
    tree = ast.parse(Path(secrets.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any("detectors" in (m or "") for m in imported)


def test_shannon_entropy_is_gitleaks_figure():
    assert secrets.shannon_entropy("") == 0.0
    assert secrets.shannon_entropy("aaaa") == 0.0
    assert secrets.shannon_entropy("abcd") == pytest.approx(2.0)


# --- what must be found ----------------------------------------------------------------

AWS_SECRET = fake(40, ALNUM + "/+", 1)
PEM_HALF = "-----BEGIN RSA PRIVATE KEY-----\n" + fake(64, seed=4) + "\n" + fake(40, seed=5)
PEM_WHOLE = ("-----BEGIN OPENSSH PRIVATE KEY-----\n" + fake(70, seed=6) + "\n"
             "-----END OPENSSH PRIVATE KEY-----")
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
       + fake(43, ALNUM + "-_", 23))
SLACK = "xoxb-" + fake(12, string.digits, 16) + "-" + fake(13, string.digits, 17) + "-" + fake(24, seed=18)
ANTHROPIC = "sk-ant-api03-" + fake(93, ALNUM + "-_", 7) + "AA"
OPENAI = "sk-proj-" + fake(74, seed=9) + "T3BlbkFJ" + fake(74, seed=10)
POSITIVES = [
    # (text, the secret exactly as it must be spanned, rule id)
    ("DATABASE_URL=postgres://orders:Qx7-vLp2_Rk9@db.internal:5432/orders", "Qx7-vLp2_Rk9", "sluice-url-password"),
    ("uri = 'mongodb+srv://svc-app:Zr8pQ7wL2mN4@cluster0.abcde.mongodb.net/prod'", "Zr8pQ7wL2mN4",
     "sluice-url-password"),
    ("REDIS_URL=redis://:R3d1s-0f-th3-d4y@cache:6379/0", "R3d1s-0f-th3-d4y", "sluice-url-password"),
    ("broker: amqp://worker:tK9q2Wv7@rabbit.local:5672/vhost", "tK9q2Wv7", "sluice-url-password"),
    ("mysql://root:My5ql!Root#1@127.0.0.1:3306/app", "My5ql!Root#1", "sluice-url-password"),
    (f"git remote add origin https://deploy:{fake(24, seed=2)}@git.example.com/team/app.git", fake(24, seed=2),
     "sluice-url-password"),
    (f"clone https://{fake(28, seed=3)}@git.example.com/team/app.git", fake(28, seed=3), "sluice-url-token"),
    ("key = '" + PEM_HALF, PEM_HALF, "sluice-private-key"),  # pasted in half: a key to the end of the text
    (f"here:\n{PEM_WHOLE}\nthanks", PEM_WHOLE, "sluice-private-key"),
    (f"key: {ANTHROPIC}\n", ANTHROPIC, "anthropic-api-key"),
    (f"My key is sk-ant-api03-{fake(36, seed=8)} keep it safe", f"sk-ant-api03-{fake(36, seed=8)}",
     "sluice-anthropic-api-key"),
    (f"OPENAI_API_KEY={OPENAI}", OPENAI, "openai-api-key"),
    (f"use sk-proj-{fake(48, seed=11)} for now", f"sk-proj-{fake(48, seed=11)}", "sluice-openai-api-key"),
    (f"aws_access_key_id = AKIA{fake(16, string.ascii_uppercase + '234567', 12)}",
     f"AKIA{fake(16, string.ascii_uppercase + '234567', 12)}", "aws-access-token"),
    (f"aws_secret_access_key = {AWS_SECRET}\n", AWS_SECRET, "sluice-aws-secret-access-key"),
    (f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}", AWS_SECRET, "sluice-aws-secret-access-key"),
    (f'{{"AccessKeyId": "ASIA{fake(16, string.ascii_uppercase, 13)}", "SecretAccessKey": "{AWS_SECRET}"}}',
     AWS_SECRET, "sluice-aws-secret-access-key"),
    (f"token ghp_{fake(36, seed=14)} expires", f"ghp_{fake(36, seed=14)}", "github-pat"),
    (f"GH_TOKEN=github_pat_{fake(82, ALNUM + '_', 15)}", f"github_pat_{fake(82, ALNUM + '_', 15)}",
     "github-fine-grained-pat"),
    (f"SLACK_BOT_TOKEN={SLACK}", SLACK, "slack-bot-token"),
    (f"maps key AIza{fake(35, ALNUM + '-_', 19)} in the app", f"AIza{fake(35, ALNUM + '-_', 19)}", "gcp-api-key"),
    (f"stripe.api_key = 'sk_live_{fake(24, seed=20)}'", f"sk_live_{fake(24, seed=20)}", "stripe-access-token"),
    (f"restricted key rk_live_{fake(24, seed=21)}", f"rk_live_{fake(24, seed=21)}", "stripe-access-token"),
    # In prose a key is followed by a full stop.
    (f"Here is my Stripe key: sk_live_{fake(24, seed=22)}.", f"sk_live_{fake(24, seed=22)}", "stripe-access-token"),
    (f"Authorization: Bearer {JWT}", JWT, "jwt"),
    (f"SLUICE_API_KEY=sk-sluice-acme-{fake(24, seed=24)}", f"sk-sluice-acme-{fake(24, seed=24)}", "sluice-api-key"),
]


@pytest.mark.parametrize("text,secret,rule", POSITIVES, ids=[p[2] for p in POSITIVES])
def test_each_kind_is_found_with_its_exact_span(text: str, secret: str, rule: str):
    assert (secret, rule) in found(text), found(text)
    assert may_contain(text.lower())


def test_the_earlier_hand_kept_list_still_finds_its_shapes():
    # The shapes the earlier _SECRET_PATTERNS caught (tests/unit/data/pii_corpus.yaml).
    for value in ["sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "AKIAIOSFODNN7EXAMPLE",
                  "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB", "xoxb-123456789012-abcdefghijklmn",
                  "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTYifQ.SflKxwRJSMeKKF2QT4fwpM",
                  "AIza" + fake(35, seed=25), "sk-" + fake(40, seed=26),
                  "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----"]:
        assert [v for v, _ in found(f"x {value} y")] == [value], value


def test_a_private_key_still_streaming_is_a_key_to_the_end():
    head = "-----BEGIN EC PRIVATE KEY-----"
    assert found(f"so: {head}") == [(head, "sluice-private-key")]
    text = f"so: {head}\nMHcCAQEEIBkg"
    assert found(text) == [(text[4:], "sluice-private-key")]


def test_a_token_in_a_urls_user_info_is_a_secret_not_an_email():
    # The user-info of a URL is typed as a secret; detectors.py lets the secret win over "email".
    token = "ghp_" + fake(36, seed=27)
    text = f"git clone https://{token}@github.com/acme/app.git"
    assert found(text) == [(token, "github-pat")]
    text = "https://x-access-token:" + token + "@github.com/acme/app.git"
    assert [v for v, _ in found(text)] == [token]


# --- what must not be found ------------------------------------------------------------

NEGATIVES = [
    "The committee met on Tuesday to discuss the budget, the new access policy and the key dates for "
    "the spring term. Everyone agreed the token gesture was appreciated; the secret to success is patience.",
    "def login(user, password=None, token=None, api_key=None):\n    key = cache.get(token)\n"
    "    return session.post(url, auth=(user, password), headers={'X-Api-Key': api_key})\n",
    "request 3f2b9c1e-8d4a-4e6b-9f0a-2c7d5e1b8a90 and 0b5f6a1e-2c3d-4e5f-8a9b-0c1d2e3f4a5b failed",
    "fixed in a94a8fe5ccb19ba61c4c0873d391e987982fbbd3 and 7c211433f02071597741e6ff5a8ea34789abbf43",
    '"integrity": "sha512-v2kDEe57lecTulaDIuNTPy3Ry4gLGJ6Z1O3vE1krgXZNrsQ+5Js7UlJuyd2s8Gzl+mDCNHQsGI7GH6e/'
    'Cgv26hSpw=="\nversion = "2.31.0"\nhash = "sha256:58cd2187c01e70e6e26505bca751777aa9f2ee0b7f4300988b709f44e013003f"',
    "password: <your password here>",
    "DATABASE_URL=postgres://localhost:5432/db",
    "see https://example.com/path?query=1#frag and ftp://files.example.org/pub",
    "postgres://user:password@localhost/db and redis://default:changeme@cache:6379",
    "postgres://app:${DB_PASSWORD}@db:5432/app",
    'PKCS1_MARKER = ("-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----")',
    "The public key -----BEGIN PUBLIC KEY----- is fine to share, as is sk-short.",
    "publishable key pk_live_" + fake(24, seed=28) + " goes in the browser",
    "ssh://git@github.com/acme/app.git and https://john.smith.mailbox@example.org",
    "Not secrets: sk-short, AKIA-notakey, the word ghp, eyJ alone",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_ordinary_text_code_ids_hashes_and_placeholders_are_not_secrets(text: str):
    assert found(text) == []


def _benign() -> dict[str, str]:
    texts: dict[str, str] = {}
    for path in CORPUS:
        for line in path.read_text().splitlines():
            case = json.loads(line)
            for field in ("system", "text"):
                if field in case:
                    texts[f"{case['id']}.{field}"] = case[field]
    return texts


# Planted on purpose in the corpus: a code-review prompt whose manifest holds a live key.
PLANTED = {"code_review-e-015.text": [("sk_live_8f2c1e9a77", "stripe-access-token")]}


def test_false_positive_sweep_over_the_routing_corpus_finds_only_the_planted_key():
    texts = _benign()
    hits = {name: found(text) for name, text in texts.items()}
    hits = {name: h for name, h in hits.items() if h}
    print(f"\n{len(texts)} corpus prompts and system prompts, {sum(map(len, texts.values()))} chars: {hits}")
    assert hits == PLANTED


def test_false_positive_sweep_over_readmes_and_python_sources():
    paths = [ROOT / p for p in glob.glob("**/README.md", root_dir=ROOT, recursive=True)
             if not p.startswith((".venv", "node_modules")) and "/node_modules/" not in p]
    for tree in ("libs", "services"):
        paths += (ROOT / tree).rglob("*.py")
    assert len(paths) > 50
    hits = {str(p.relative_to(ROOT)): found(p.read_text()) for p in paths}
    assert {p: h for p, h in hits.items() if h} == {}


# --- spans: offsets, overlaps, fragments -------------------------------------------------


def test_offsets_are_in_the_original_text_and_spans_do_not_overlap():
    token = "ghp_" + fake(36, seed=29)
    text = f"Café ☕ — naïve 🙂 {token} and postgres://u:{(p := 'Pw-' + fake(9, seed=30))}@h/d"
    result = spans(text)
    assert [(text[s:e], r) for s, e, r in result] == [(token, "github-pat"), (p, "sluice-url-password")]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(result))


def test_a_lone_surrogate_does_not_break_offsets():
    token = "ghp_" + fake(36, seed=32)
    text = f"\ud800 bad json \udfff then {token}"
    assert found(text) == [(token, "github-pat")]
    assert may_contain(text.lower())


def test_the_longest_of_overlapping_findings_wins():
    # gitleaks' github-pat takes 36 characters; Sluice's rule the whole, longer token.
    token = "ghp_" + fake(40, seed=31)
    assert found(f"t={token} ") == [(token, "sluice-github-token")]


def test_secrets_across_fragment_boundaries_are_found_whole():
    # Fragments are 16 KB: keys just before, across and just after their ends.
    text = "The quick brown fox jumps over the lazy dog. " * 2000
    keys = []
    for i, at in enumerate(sorted((16384 - 40, 16384 - 12, 16384 + 3, 32768 - 5, 49152 - 1, 60000), reverse=True)):
        keys.append("sk_live_" + fake(24, seed=40 + i))
        text = text[:at] + f" {keys[-1]} " + text[at:]
    password = "Pw-" + fake(12, seed=50)
    cut = 16384 * 4 - 10  # the URL's "://" before a fragment's end, its password after it
    text = text[:cut] + f" postgres://app:{password}@db/x " + text[cut:]
    assert sorted(v for v, _ in found(text)) == sorted([*keys, password])


def test_may_contain_is_a_safe_pre_check():
    samples = [*(p[0] for p in POSITIVES), *NEGATIVES, *list(_benign().values())[:300]]
    for text in samples:
        lower = text.lower()
        # The keyword pass (one RE2 set) agrees with a plain substring test per keyword.
        hits = secrets._KEYWORDS.Match(lower.encode()) or []
        assert {secrets._KEYWORD_LIST[h] for h in hits} == {k for k in secrets._KEYWORD_LIST if k in lower}
        if not may_contain(lower):
            assert spans(text) == []
    assert not may_contain("hello there, how are you today?")


# --- time ---------------------------------------------------------------------------------


def _best(fn, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _prose(size: int) -> str:
    """`size` characters of the routing corpus' English prompts, end to end."""
    cases = [json.loads(line) for path in CORPUS for line in path.read_text().splitlines()]
    english = "\n\n".join(case["text"] for case in cases if case["lang"] == "en")
    return (english * (size // len(english) + 1))[:size]


def _candidates(text: str) -> int:
    """Matches of the rules whose keywords occur in `text`."""
    data = text.encode()
    rules = {i for h in secrets._KEYWORDS.Match(data.lower()) or () for i in secrets._RULES_BY_KEYWORD[h]}
    return sum(1 for i in rules for _ in secrets._RULES[i].regex.finditer(data))


def test_prose_timing_budget():
    rows = []
    for size, budget in ((100_000, 0.003), (400_000, 0.012)):
        prose = _prose(size)
        took = _best(lambda prose=prose: spans(prose), runs=5)
        rows.append(f"{size // 1000} KB prose: {took * 1000:.2f} ms (budget {budget * 1000:.0f} ms)")
        assert took <= budget, rows
    print("\n" + "\n".join(rows))


def test_repeated_keywords_cost_at_most_three_times_prose():
    size = 400_000
    prose = _prose(size)
    base = _best(lambda: spans(prose))
    anchors = sorted({*secrets._KEYWORD_LIST, *(k.upper() for k in secrets._KEYWORD_LIST),
                      "sk-", "AKIA", "ghp_", "password=", "://a:b@", "-----BEGIN", "xoxb-", "key", "token",
                      "secret"})
    rows, failures = [], []
    started = time.perf_counter()
    for anchor in anchors:
        text = (anchor * (size // len(anchor) + 1))[:size]
        took = _best(lambda text=text: spans(text))
        candidates = _candidates(text)
        # At most 3x prose, plus a bounded cost for each key-shaped match the text
        # holds (every repetition of "glpat-" is one: an RE2 call and a check each).
        allowed = 3 * base + 10e-6 * candidates
        rows.append((took, anchor, candidates, allowed))
        if took > allowed:
            failures.append(anchor)
    rows.sort(reverse=True)
    print(f"\nprose {size // 1000} KB: {base * 1000:.2f} ms; {len(anchors)} anchors in "
          f"{time.perf_counter() - started:.1f} s; slowest:")
    for took, anchor, candidates, allowed in rows[:20]:
        print(f"  {anchor!r:24} {took * 1000:7.2f} ms  candidates {candidates:6}  allowed {allowed * 1000:6.2f} ms")
    assert not failures, failures
