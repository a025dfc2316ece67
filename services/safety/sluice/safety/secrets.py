"""Secrets in text: gitleaks' maintained rule set plus Sluice's own rules, in linear time.

The rules are gitleaks' default configuration, vendored unchanged as reference
data (`data/secrets/gitleaks.toml`, MIT; provenance and update steps in
`data/secrets/SOURCE.md`). They are honoured as gitleaks documents them (its
README "Configuration" and `detect/detect.go`):

- a rule runs only when one of its `keywords` occurs in the lower-cased text;
- its secret is group `secretGroup`, else the first non-empty group, else the
  whole match with newlines trimmed;
- a secret whose Shannon entropy is at or under the rule's `entropy` is dropped;
- so is one that the global allowlist or one of the rule's allowlists allows:
  `regexes` tried on the secret, the match or the line (`regexTarget`),
  `stopwords` looked for in the secret, either sufficing unless `condition` is AND.

Every regex is RE2 (gitleaks' patterns are Go RE2 syntax), so matching is
linear in the text whatever it holds; like gitleaks, a long text is read in
fragments with keywords checked per fragment. Rules that cannot apply to a
message are skipped, rules that fire on ordinary text are disabled, and two
loader changes fit the rules to prose and to RE2; `RULESET` counts all three,
with reasons. Sluice's own rules (`_ADDITIONS`) sit beside gitleaks'.

This module must not import `sluice.safety.detectors`, which imports it.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import re2

_DIR = Path(__file__).parent / "data" / "secrets"

# gitleaks rules left out, with the evidence (measured as gitleaks defines them,
# by tests/unit/test_safety_secrets.py's sweep and on the installed packages).
_DISABLED: dict[str, str] = {
    "generic-api-key": "fires on ordinary code: 19 findings in 129 MB of installed packages' code and "
                       "docs, 17 of them identifiers, constants or hashes (KEY_OFFSET_V0 = HEADER_STRUCT_V0"
                       ".size, key_sha256 digests); a secret in an answer blocks it. It costs the most "
                       "per text, and 200 ms on 400 KB crafted around its keywords. Lost with it: "
                       "NAME_SECRET_KEY=value lines (one in the routing corpus)",
    "private-key": "fires on code that quotes the BEGIN and END markers (google-auth's _python_rsa.py); "
                   "sluice-private-key finds every block it does, terminated or not",
}

# gitleaks ends most values with a code terminator (quote, space, `;`, escaped
# newline, end). Messages are prose too, where a key is followed by `.`, `,`
# or `)`: those are accepted as well, or "my key is sk_live_... ." is missed.
_CODE_END = r"""(?:[\x60'"\s;]|\\[nr]|$)"""
_PROSE_END = r"""(?:[\x60'"\s;.,!?:)\]}>]|\\[nr]|$)"""
# gitleaks' rules for "<vendor> ... = <value>" start with up to 50 identifier
# characters before the vendor's name. They only widen the match, never the
# secret (the earliest vendor name that leads to a match is the same with or
# without them), yet they multiply RE2's DFA states: dropped, 3x faster on
# prose. Kept for a rule with an allowlist that reads the match or the line.
_IDENT_PREFIX = r"[\w.-]{0,50}?"
_PREFIXED = ("(?i)" + _IDENT_PREFIX, "(?i:" + _IDENT_PREFIX, _IDENT_PREFIX)

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 logs when its DFA runs out of memory; it then falls back to its NFA


def _compile(pattern: str) -> Any:
    return re2.compile(pattern, _OPTIONS)


# Placeholders, not credentials, in a URL's password; the same list gitleaks'
# curl-auth-user rule allows for `curl -u user:password`.
_PLACEHOLDER_PASSWORD = _compile(r"(?i)change(?:it|me)|pass(?:word)?|pwd|test|token|\*+|x+")

_URL_USER = r"[^\s:/?#@'\"<>\[\]]*"
_URL_HOST = r"@[\w\[-]"
_PEM_END = r"-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----"


def _looks_like_token(value: str) -> bool:
    """Whether a URL's user name (20+ characters, by its rule) is a token: it mixes
    letters and digits and its entropy is over 3 bits, unlike "john.smith.mail"."""
    return (any(c.isdigit() for c in value) and any(c.isalpha() for c in value)
            and shannon_entropy(value) > 3.0)


# Sluice's own rules: (id, regex, keywords, secret group, check on the secret or
# None). Only the two URL rules also take gitleaks' global allowlist (template
# variables such as ${DB_PASSWORD}). From the Anthropic rule on, they keep every
# shape the earlier hand-kept list caught where gitleaks' rule for the same
# provider is narrower (said on each).
_ADDITIONS: tuple[tuple[str, str, tuple[str, ...], int, Callable[[str], bool] | None], ...] = (
    ("sluice-api-key", r"\bsk-sluice-[a-z0-9]+-[A-Za-z0-9]{16,}", ("sk-sluice-",), 0, None),
    # A block without its END line (pasted in half, or still streaming) is a key to the end of the
    # text. The header must end its line (or the text): code quoting the marker is not a key.
    ("sluice-private-key",
     rf"(?i)-----BEGIN[ A-Z0-9_-]{{0,100}}PRIVATE KEY(?: BLOCK)?-----(?:(?:\s|\\[nr])(?:[\s\S]*?{_PEM_END}|[\s\S]*)|$)",
     ("-----begin",), 0, None),
    # scheme://user:password@host: the password only. The last "@" ends it, as browsers
    # parse; a "#" is taken as part of it, as people paste such passwords unescaped.
    ("sluice-url-password", rf"(?i)\b[a-z][a-z0-9+.-]{{1,30}}://{_URL_USER}:([^\s/?'\"<>]+){_URL_HOST}",
     ("://",), 1, lambda s: _PLACEHOLDER_PASSWORD.fullmatch(s) is None),
    # scheme://token@host, as git remotes carry a token.
    ("sluice-url-token", rf"(?i)\b[a-z][a-z0-9+.-]{{1,30}}://([A-Za-z0-9_.~%-]{{20,}}){_URL_HOST}",
     ("://",), 1, _looks_like_token),
    ("sluice-aws-secret-access-key",
     r"(?i)secret[_-]?access[_-]?key[\"']?[ \t]*(?:=|:|=>|:=)[ \t]*[\"']?([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)",
     ("secret_access_key", "secretaccesskey", "secret-access-key"), 1, None),
    # gitleaks: exactly 93 characters then "AA".
    ("sluice-anthropic-api-key", r"\bsk-ant-[A-Za-z0-9_-]{20,}", ("sk-ant-",), 0, None),
    # gitleaks: only keys carrying the "T3BlbkFJ" marker.
    ("sluice-openai-api-key", r"\bsk-(?:proj-)?[A-Za-z0-9_-]{32,}", ("sk-",), 0, None),
    # gitleaks: base32 digits only, and AWS's documented example key allowed.
    ("sluice-aws-access-key-id", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", ("akia", "asia"), 0, None),
    # gitleaks: exactly 36 characters, so a longer token is cut short.
    ("sluice-github-token", r"\bgh[pousr]_[A-Za-z0-9]{36,}\b", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), 0, None),
    # gitleaks: fixed digit groups per token kind.
    ("sluice-slack-token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
     ("xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxs-", "xoxr-"), 0, None),
    # gitleaks: entropy over 4 and a code terminator after the key.
    ("sluice-google-api-key", r"\bAIza[0-9A-Za-z_-]{35}\b", ("aiza",), 0, None),
    # gitleaks: 17+ characters in header and payload.
    ("sluice-jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", ("eyj",), 0, None),
)


def shannon_entropy(value: str) -> float:
    """Shannon entropy of `value` in bits, as gitleaks computes it (detect/utils.go:
    counts of characters over the UTF-8 length). 0.0 for the empty string."""
    if not value:
        return 0.0
    inv = 1.0 / len(value.encode())
    return -sum(n * inv * math.log2(n * inv) for n in Counter(value).values())


def _found(regex: Any, text: str) -> bool:
    # gitleaks counts a regex as matching when FindString is non-empty.
    m = regex.search(text)
    return m is not None and m.end() > m.start()


@dataclass(frozen=True)
class _Allowlist:
    target: str  # what `regex` is tried on: "secret", "match" or "line"
    regex: Any | None  # gitleaks joins an allowlist's regexes into one alternation
    stopwords: Any | None  # lower-case literals, searched in the lower-cased secret
    all_of: bool  # condition AND

    def allows(self, secret: str, match: str, line: Callable[[], str]) -> bool:
        if not secret:
            return False
        target = secret if self.target == "secret" else match if self.target == "match" else line()
        by_regex = self.regex is not None and _found(self.regex, target)
        by_word = self.stopwords is not None and self.stopwords.search(secret.lower()) is not None
        if self.all_of:
            return (self.regex is None or by_regex) and (self.stopwords is None or by_word)
        return by_regex or by_word


def _allowlist(spec: Mapping[str, Any]) -> _Allowlist | None:
    """An allowlist from its TOML table, or None when it can only allow by file
    path or commit, which a message has neither of. Raises ValueError (bad
    condition or regexTarget) and re2.error (a regex RE2 cannot compile)."""
    condition = str(spec.get("condition", "OR")).upper()
    if condition not in ("OR", "||", "AND", "&&"):
        raise ValueError(f"unknown allowlist condition {condition!r}")
    all_of = condition in ("AND", "&&")
    target = spec.get("regexTarget") or "secret"
    if target not in ("secret", "match", "line"):
        raise ValueError(f"unknown allowlist regexTarget {target!r}")
    regexes, stopwords = spec.get("regexes") or [], spec.get("stopwords") or []
    if (all_of and (spec.get("paths") or spec.get("commits"))) or not (regexes or stopwords):
        return None
    regex = _compile("(?:" + "|".join(regexes) + ")") if regexes else None
    words = _compile("|".join(re2.escape(w.lower()) for w in sorted(set(stopwords)))) if stopwords else None
    return _Allowlist(target, regex, words, all_of)


@dataclass(frozen=True)
class _Rule:
    id: str
    regex: Any  # compiled RE2, matched on the UTF-8 bytes of the text
    keywords: tuple[str, ...]
    secret_group: int  # 0: the first non-empty group, or the match when there is none
    entropy: float  # 0.0: no minimum
    allowlists: tuple[_Allowlist, ...]  # gitleaks' global ones first, where they apply
    check: Callable[[str], bool] | None = None

    def find(self, data: bytes, pos: int, endpos: int, stop: int, lines: dict[tuple[int, int], str],
             verdicts: dict[tuple[bytes, int, int], bool], out: list[tuple[int, int]]) -> int:
        """Appends to `out` the secrets (byte start, end) of this rule's matches in
        data[pos:endpos] that start before `stop` (the rest of `data` is context for
        \\b and $), and returns where the last of those matches ends (`pos` if none).
        `lines` caches the lines allowlists read; `verdicts` the checks made, so
        repeated text costs one check, not one each."""
        groups, chosen = self.regex.groups, self.secret_group
        by_line = any(a.target == "line" for a in self.allowlists)
        last = pos
        for m in self.regex.finditer(data, pos, endpos):
            start, end = m.span()
            if start >= stop:
                break  # the next fragment finds it, with what follows it
            last = end
            while start < end and data[start] == 10:  # gitleaks trims newlines off a match
                start += 1
            while end > start and data[end - 1] == 10:
                end -= 1
            s, e = start, end
            if chosen:
                s, e = m.span(chosen)
            elif groups:
                s, e = next(((a, b) for a, b in map(m.span, range(1, groups + 1)) if b > a), (start, end))
            if e <= s:
                continue
            key = (data[start:end], s - start, e - start)
            keep = verdicts.get(key)
            if keep is None:
                keep = self._keep(data, start, end, s, e, lines)
                if not by_line:  # a line-reading allowlist may answer differently elsewhere
                    verdicts[key] = keep
            if keep:
                out.append((s, e))
        return last

    def _keep(self, data: bytes, start: int, end: int, s: int, e: int,
              lines: dict[tuple[int, int], str]) -> bool:
        secret = data[s:e].decode()
        if self.entropy and shannon_entropy(secret) <= self.entropy:
            return False
        if self.check is not None and not self.check(secret):
            return False

        def line() -> str:
            stop = data.find(b"\n", end)
            bounds = (data.rfind(b"\n", 0, start) + 1, len(data) if stop < 0 else stop)
            if bounds not in lines:  # decoded once, however many findings the line holds
                lines[bounds] = data[bounds[0]:bounds[1]].decode()
            return lines[bounds]

        match = data[start:end].decode()
        return not any(a.allows(secret, match, line) for a in self.allowlists)


@dataclass(frozen=True)
class RuleSet:
    """What the secret rules in force are made of. `loaded`: rule ids in use,
    gitleaks' then Sluice's; `skipped` and `disabled`: gitleaks rule id -> reason."""

    source: str  # repository the rules come from
    commit: str  # its commit they were taken at
    sha256: str  # of the vendored gitleaks.toml, as read at import
    loaded: tuple[str, ...]
    skipped: Mapping[str, str]
    disabled: Mapping[str, str]
    adapted: Mapping[str, int]  # how many gitleaks regexes each loader change applies to


def _provenance() -> tuple[str, str]:
    text = (_DIR / "SOURCE.md").read_text()
    repo = re.search(r"^- Repository: (\S+)", text, re.MULTILINE)
    commit = re.search(r"^- Commit: ([0-9a-f]{40})", text, re.MULTILINE)
    if repo is None or commit is None:
        raise ValueError("data/secrets/SOURCE.md names no repository or commit")
    return repo.group(1), commit.group(1)


def _load() -> tuple[list[_Rule], RuleSet]:
    """Reads gitleaks.toml and builds the rules. Raises ValueError or re2.error
    when the global allowlist is malformed: the whole rule set would be wrong."""
    raw = (_DIR / "gitleaks.toml").read_bytes()
    config = tomllib.loads(raw.decode())
    global_specs = list(config.get("allowlists", []))
    if "allowlist" in config:  # the pre-v8.25 single global table
        global_specs.append(config["allowlist"])
    global_lists: list[_Allowlist] = []
    targeted: dict[str, list[Mapping[str, Any]]] = {}
    for spec in global_specs:
        for rule_id in spec.get("targetRules", []):
            targeted.setdefault(rule_id, []).append(spec)
        if not spec.get("targetRules") and (allowlist := _allowlist(spec)) is not None:
            global_lists.append(allowlist)

    rules: list[_Rule] = []
    skipped: dict[str, str] = {}
    disabled: dict[str, str] = {}
    adapted = Counter[str]()
    for spec in config.get("rules", []):
        rule_id = spec["id"]
        if rule_id in _DISABLED:
            disabled[rule_id] = _DISABLED[rule_id]
            continue
        if spec.get("path"):
            skipped[rule_id] = "applies only to files whose path matches; a message has no path"
            continue
        if not spec.get("regex"):
            skipped[rule_id] = "has no regex"
            continue
        if spec.get("required") or spec.get("skipReport"):
            skipped[rule_id] = "is part of a composite (required) rule, which this loader does not implement"
            continue
        keywords = tuple(k.lower() for k in spec.get("keywords") or ())
        if not keywords:
            skipped[rule_id] = "has no keywords, so it would run on every text"
            continue
        pattern = spec["regex"]
        try:
            allowlists = [_allowlist(a) for a in [*spec.get("allowlists", []), *targeted.get(rule_id, [])]]
            if "allowlist" in spec:
                allowlists.append(_allowlist(spec["allowlist"]))
            if _CODE_END in pattern:
                pattern = pattern.replace(_CODE_END, _PROSE_END)
                adapted["prose punctuation ends a value"] += 1
            reads_match = any(a is not None and a.target != "secret" for a in allowlists)
            head = next((h for h in _PREFIXED if pattern.startswith(h)), None) if not reads_match else None
            if head is not None:
                while head is not None:  # some rules repeat it: [\w.-]{0,50}?(?i:[\w.-]{0,50}?...
                    pattern = pattern[:len(head) - len(_IDENT_PREFIX)] + pattern[len(head):]
                    head = next((h for h in _PREFIXED if pattern.startswith(h)), None)
                adapted["identifier prefix dropped"] += 1
            regex = _compile(pattern)
        except (re2.error, ValueError) as exc:
            skipped[rule_id] = f"cannot be compiled: {exc}"
            continue
        group = int(spec.get("secretGroup", 0))
        if group > regex.groups:
            skipped[rule_id] = f"secretGroup {group} but the regex has {regex.groups} groups"
            continue
        rules.append(_Rule(rule_id, regex, keywords, group, float(spec.get("entropy", 0.0)),
                           (*global_lists, *(a for a in allowlists if a is not None))))
    for rule_id, pattern, keywords, group, check in _ADDITIONS:
        own = tuple(global_lists) if rule_id.startswith("sluice-url-") else ()
        rules.append(_Rule(rule_id, _compile(pattern), keywords, group, 0.0, own, check))

    source, commit = _provenance()
    info = RuleSet(source, commit, hashlib.sha256(raw).hexdigest(), tuple(r.id for r in rules),
                   MappingProxyType(skipped), MappingProxyType(disabled), MappingProxyType(dict(adapted)))
    return rules, info


_RULES, RULESET = _load()

# One RE2 set of every keyword: a single linear pass says which occur. Measured
# on 400 KB of prompts (244 keywords): 1.0 ms, where `in` per keyword takes 66 ms
# and an alternation's finditer 7 ms (570 ms on 400 KB of one keyword repeated).
_KEYWORD_LIST = sorted({k for r in _RULES for k in r.keywords})
_KEYWORDS = re2.Set.SearchSet()
for _k in _KEYWORD_LIST:
    _KEYWORDS.Add(re2.escape(_k))
_KEYWORDS.Compile()
_RULES_BY_KEYWORD: list[tuple[int, ...]] = [
    tuple(i for i, r in enumerate(_RULES) if k in r.keywords) for k in _KEYWORD_LIST]

# A text is read in fragments, as gitleaks reads a file (sources/file.go: 100 KB
# fragments, keywords checked per fragment): a rule whose keyword occurs once
# in a long prompt reads 20 KB of it, not all of it. Each fragment is read with
# the _REACH bytes after it, so a match of up to _REACH that starts in it is
# found whole; a rule's next match starts where its last one ended, as in one
# pass over the text. A private key block is looked for in the whole text: an
# unterminated one runs to its end.
_FRAGMENT = 16 * 1024
_REACH = 4 * 1024
_WHOLE_TEXT = {i for i, r in enumerate(_RULES) if r.id == "sluice-private-key"}

# Where two rules find the same span, the specific one names it: gitleaks' own
# before Sluice's, generic-api-key (when enabled) last, as gitleaks drops a
# generic finding that overlaps another.
_PRIORITY = [len(_RULES) if r.id == "generic-api-key" else i for i, r in enumerate(_RULES)]


def keywords() -> list[str]:
    """Every keyword of the rules in force, sorted (what a hostile input would repeat)."""
    return sorted({k for rule in _RULES for k in rule.keywords})


def may_contain(lower: str) -> bool:
    """Cheap pre-check on the lower-cased text: False means `spans()` finds nothing
    (no rule's keyword occurs). One RE2 pass."""
    return _KEYWORDS.Match(lower.encode("utf-8", "replace")) is not None


def _char_offsets(data: bytes, offsets: set[int]) -> dict[int, int]:
    # UTF-8 byte offsets (RE2 reports them on character boundaries) to str offsets, in one pass.
    out, char, last = {}, 0, 0
    for off in sorted(offsets):
        char += len(data[last:off].decode())
        out[off], last = char, off
    return out


def _boundary(data: bytes, at: int) -> int:
    # The first UTF-8 character boundary at or after `at`.
    while at < len(data) and data[at] & 0xC0 == 0x80:
        at += 1
    return min(at, len(data))


def spans(text: str) -> list[tuple[int, int, str]]:
    """Secrets in `text`: (start, end, rule id) in `text`'s offsets, non-overlapping
    (the longest wins; on a tie the more specific rule), in text order.

    Linear in len(text): per 16 KB fragment, one RE2 pass for keywords, then one
    per rule whose keyword occurs in it; then work per match."""
    # A lone surrogate (JSON allows "\ud800") becomes "?": one character, one byte, offsets kept.
    data = text.encode("utf-8", "replace")
    # ASCII lower-casing of the bytes: keywords are ASCII, and any keyword found
    # here is in text.lower() too, so may_contain() stays a safe pre-check.
    low = data.lower()
    lines: dict[tuple[int, int], str] = {}
    verdicts: dict[int, dict[tuple[bytes, int, int], bool]] = {}
    resume: dict[int, int] = {}  # rule -> end of its last match
    whole: set[int] = set()
    by_rule: dict[int, list[tuple[int, int]]] = {}  # rule -> its secrets' byte spans
    start = 0
    while start < len(data):
        stop = _boundary(data, start + _FRAGMENT)
        reach = _boundary(data, stop + _REACH)
        hits = _KEYWORDS.Match(low[start:reach])
        for i in {i for h in hits or () for i in _RULES_BY_KEYWORD[h]}:
            if i in _WHOLE_TEXT:
                whole.add(i)
            else:
                resume[i] = _RULES[i].find(data, max(start, resume.get(i, 0)), reach, stop, lines,
                                           verdicts.setdefault(i, {}), by_rule.setdefault(i, []))
        start = stop
    for i in whole:
        _RULES[i].find(data, 0, len(data), len(data) + 1, lines, {}, by_rule.setdefault(i, []))
    found = [(s, e, i) for i, found_ in by_rule.items() for s, e in found_]
    found.sort(key=lambda f: (f[0], f[0] - f[1], _PRIORITY[f[2]]))
    kept: list[tuple[int, int, int]] = []
    for f in found:
        if not kept or f[0] >= kept[-1][1]:
            kept.append(f)
        elif f[1] - f[0] > kept[-1][1] - kept[-1][0]:
            kept[-1] = f  # starts inside the last one and is longer: it wins
    if len(data) != len(text):
        pos = _char_offsets(data, {o for s, e, _ in kept for o in (s, e)})
        kept = [(pos[s], pos[e], i) for s, e, i in kept]
    return [(s, e, _RULES[i].id) for s, e, i in kept]
