"""Policy packs: versioned YAML files of rules and the profiles that combine them.

A pack file (see policies/standard.yaml beside this file, and the README):

    pack: sluice-standard          # name
    version: "2026.11.0"
    description: ...
    output: {holdback_chars: 64, release_chars: 16}
    rules:                         # each: id, description, applies, match, action, severity
      - id: pii.email
        ...
    profiles:                      # a tenant's `safety_profile` names one
      default: {description: ..., rules: [pii.*, injection.ignore-instructions], overrides: {}}
    tenants:                       # per-tenant changes to its profile
      acme: {add: [...], overrides: {pii.phone: {action: allow}}}

A folder may hold several packs; a profile name belongs to one of them. The
whole folder is validated before any of it is used: every error names the
file, the rule (or profile, or tenant) and the field. A verdict names
"<pack>@<version>#<first 12 hex of the file's SHA-256>", so an edit that
forgot to bump the version still tells two policies apart.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import re2
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sluice.safety import detectors, heuristics, model
from sluice.safety.detectors import Finding, Text
from sluice.safety.v1 import verdict_pb2

ActionName = Literal["allow", "redact", "block", "flag"]
SeverityName = Literal["low", "medium", "high", "critical"]

ACTIONS = {"allow": verdict_pb2.ACTION_ALLOW, "redact": verdict_pb2.ACTION_REDACT,
           "block": verdict_pb2.ACTION_BLOCK, "flag": verdict_pb2.ACTION_FLAG}
SEVERITIES = {"low": verdict_pb2.SEVERITY_LOW, "medium": verdict_pb2.SEVERITY_MEDIUM,
              "high": verdict_pb2.SEVERITY_HIGH, "critical": verdict_pb2.SEVERITY_CRITICAL}
_REGEX_FLAGS = {"ignorecase": "i", "multiline": "m", "dotall": "s"}


def _re2_pattern(regex: str, flags: Sequence[str]) -> Any:
    """A pack's regex compiled with RE2: matching is linear in the text
    whatever the pattern, so a pack cannot bring a backtracking blow-up
    (`(a+)+$`) to user input. Raises re2.error for what RE2 cannot take."""
    options = re2.Options()
    options.max_mem = 8 << 20
    letters = "".join(_REGEX_FLAGS[f] for f in flags)
    return re2.compile(f"(?{letters}){regex}" if letters else regex, options)

SHIPPED_POLICY_DIR = Path(__file__).resolve().parent / "policies"


class PolicyError(ValueError):
    """A policy folder that cannot be used; one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# --- the pack file's schema -------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MatchSpec(_Strict):
    """Exactly one of detector, regex, keywords, classifier, any or all.

    `any` and `all` combine other matchers: the rule fires when any (all)
    of them do, so a rule can ask for a learned model's score together
    with a heuristic's, each with its own threshold. `classifier` names a
    built-in classifier or a model of the pack's `models`."""

    detector: str | None = None
    regex: str | None = None
    flags: list[Literal["ignorecase", "multiline", "dotall"]] = []
    keywords: list[str] | None = None
    classifier: str | None = None
    # A classifier's score at which the rule fires.
    threshold: float = Field(0.5, gt=0, le=1)
    any: list[MatchSpec] | None = Field(None, min_length=1)
    all: list[MatchSpec] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_matcher(self) -> MatchSpec:
        given = [k for k in ("detector", "regex", "keywords", "classifier", "any", "all") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of detector, regex, keywords, classifier, any, all "
                             f"(got {given or 'none'})")
        if self.detector is not None and self.detector not in detectors.REGISTRY:
            raise ValueError(f"detector: unknown detector {self.detector!r} (known: {sorted(detectors.REGISTRY)})")
        if "threshold" in self.model_fields_set and self.classifier is None:
            raise ValueError("threshold: only a classifier has a threshold")
        if self.flags and self.regex is None:
            raise ValueError("flags: only a regex has flags")
        if self.regex is not None:
            try:
                compiled = _re2_pattern(self.regex, self.flags)
            except re2.error as exc:
                reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
                raise ValueError(f"regex: does not compile: {reason} (regexes run with RE2, in time linear in "
                                 "the text: no look-arounds or back-references)") from None
            if compiled.search(""):
                raise ValueError("regex: matches the empty string, so it would fire on every text")
        if self.keywords is not None and (not self.keywords or any(not k.strip() for k in self.keywords)):
            raise ValueError("keywords: give at least one keyword, none blank")
        return self

    def classifiers(self) -> list[str]:
        """Every classifier name this matcher uses, nested ones included."""
        if self.classifier is not None:
            return [self.classifier]
        return [name for part in (self.any or self.all or ()) for name in part.classifiers()]


class ModelSpec(_Strict):
    """An operator-supplied ONNX classifier (onnx_model.OnnxClassifier):
    paths are relative to the pack file's folder; nothing is downloaded."""

    path: str
    tokenizer: str
    positive_label: int | str = 1
    max_tokens: int = Field(512, ge=8, le=8192)
    stride: int = Field(64, ge=0, le=4096)
    batch: int = Field(8, ge=1, le=256)
    threads: int = Field(1, ge=1, le=64)


class RuleSpec(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,79}$")
    description: str = Field(min_length=10)
    applies: Literal["input", "output", "both"]
    match: MatchSpec
    action: ActionName
    severity: SeverityName
    # The placeholder's type for redaction, e.g. PROJECT_CODE -> [PROJECT_CODE_1].
    # Detectors use their own name (EMAIL); other matchers default to the rule id's last part.
    placeholder: str | None = Field(None, pattern=r"^[A-Z][A-Z0-9_]{0,31}$")
    # Whose words an input rule reads: the operator's system prompt, the
    # user's and assistant's turns (tool results are the user's), the tools'
    # descriptions and schemas. Injection rules skip the system prompt: it is
    # the operator's own instructions, full of rules addressed to "you".
    reads: list[Literal["system", "user", "assistant", "tools"]] = Field(
        default=["system", "user", "assistant", "tools"], min_length=1)


class RuleChange(_Strict):
    """A profile's or tenant's change to one rule: only the fields given apply.
    `thresholds` sets a classifier's threshold wherever the rule's matcher
    names it ({injection_model: 0.95})."""

    action: ActionName | None = None
    severity: SeverityName | None = None
    enabled: bool | None = None
    thresholds: dict[str, float] | None = None

    @field_validator("thresholds")
    @classmethod
    def _in_range(cls, thresholds: dict[str, float] | None) -> dict[str, float] | None:
        for name, value in (thresholds or {}).items():
            if not 0 < value <= 1:
                raise ValueError(f"thresholds: {name}: {value} is not in (0, 1]")
        return thresholds


class ProfileSpec(_Strict):
    description: str = Field(min_length=10)
    # Rule ids; a trailing * takes every rule with that prefix ("pii.*").
    rules: list[str] = Field(min_length=1)
    overrides: dict[str, RuleChange] = {}


class TenantSpec(_Strict):
    # Rules of the pack beyond the tenant's profile.
    add: list[str] = []
    overrides: dict[str, RuleChange] = {}


class OutputSpec(_Strict):
    # Characters of the answer held back so a value split across chunks is
    # seen whole before any of it is delivered; the longest value caught
    # whole when it arrives in pieces.
    holdback_chars: int = Field(64, ge=8, le=4096)
    # Held text is scanned and released once this many characters are past
    # the holdback window: fewer scans per answer, slightly later text.
    release_chars: int = Field(16, ge=1, le=4096)


class PackSpec(_Strict):
    pack: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
    description: str = ""
    output: OutputSpec = OutputSpec()
    # Operator-supplied classifier models, by the name rules give them.
    models: dict[str, ModelSpec] = {}
    rules: list[RuleSpec] = Field(min_length=1)
    profiles: dict[str, ProfileSpec] = Field(min_length=1)
    tenants: dict[str, TenantSpec] = {}

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: list[RuleSpec]) -> list[RuleSpec]:
        seen: set[str] = set()
        for rule in rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        return rules


# --- compiled form -------------------------------------------------------------------

Matcher = Callable[[Text], list[Finding]]


@dataclass(frozen=True)
class Rule:
    """A rule as a profile applies it (after overrides)."""

    id: str
    description: str
    on_input: bool
    on_output: bool
    action: verdict_pb2.Action
    severity: verdict_pb2.Severity
    matcher_name: str  # "detector:email", "regex", "keywords", "classifier:jailbreak"
    match: Matcher
    reads: frozenset[str] = frozenset({"system", "user", "assistant", "tools"})


@dataclass(frozen=True)
class Profile:
    """The rules that apply to one tenant, and the pack version they come from."""

    name: str
    policy_version: str
    input_rules: tuple[Rule, ...]
    output_rules: tuple[Rule, ...]
    holdback_chars: int
    release_chars: int


Classify = Callable[[Text], tuple[float, list[Finding]]]


def _matcher(rule: RuleSpec, classifiers: dict[str, Classify], thresholds: dict[str, float]) -> tuple[str, Matcher]:
    label = (rule.placeholder or re.sub(r"[^A-Za-z0-9]+", "_", rule.id.rsplit(".", 1)[-1]).upper()).lower()
    return _compile(rule.match, label, classifiers, thresholds)


def _compile(spec: MatchSpec, label: str, classifiers: dict[str, Classify],
             thresholds: dict[str, float]) -> tuple[str, Matcher]:
    if spec.detector is not None:
        detector = detectors.REGISTRY[spec.detector]
        return f"detector:{spec.detector}", detector.find
    if spec.classifier is not None:
        name, classify = spec.classifier, classifiers[spec.classifier]
        threshold = thresholds.get(name, spec.threshold)

        def by_score(text: Text) -> list[Finding]:
            found = text.scores.get(name)
            if found is None:
                found = text.scores[name] = classify(text)
            score, findings = found
            return [Finding(label, f.start, f.end, f.value) for f in findings] if score >= threshold else []

        return f"classifier:{spec.classifier}", by_score
    if spec.any is not None or spec.all is not None:
        parts = [_compile(part, label, classifiers, thresholds) for part in (spec.any or spec.all or ())]
        name = ("any(" if spec.any is not None else "all(") + ",".join(kind for kind, _ in parts) + ")"
        matchers = [match for _, match in parts]
        if spec.any is not None:
            def any_of(text: Text) -> list[Finding]:
                return [f for match in matchers for f in match(text)]

            return name, any_of

        def all_of(text: Text) -> list[Finding]:
            found: list[Finding] = []
            for match in matchers:
                part = match(text)
                if not part:
                    return []  # the rest need not run
                found += part
            return found

        return name, all_of
    if spec.regex is not None:
        pattern, kind = _re2_pattern(spec.regex, spec.flags), "regex"
    else:
        words = sorted({k.strip() for k in spec.keywords or ()}, key=len, reverse=True)
        # Whole words or phrases, any case, any run of spaces between words.
        alternatives = "|".join(r"\s+".join(map(re.escape, w.split())) for w in words)
        pattern, kind = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE), "keywords"
        # No keyword's first word in the text: no regex scan.
        anchors = tuple({w.split()[0].lower() for w in words})

        def find_keywords(text: Text) -> list[Finding]:
            if not any(a in text.lower for a in anchors):
                return []
            return [text.finding(label, m.start(), m.end()) for m in pattern.finditer(text.norm)]

        return kind, find_keywords

    def find(text: Text) -> list[Finding]:
        return [text.finding(label, m.start(), m.end()) for m in pattern.finditer(text.norm) if m.end() > m.start()]

    return kind, find


def _apply(base: dict[str, Any], change: RuleChange) -> None:
    for key in ("action", "severity", "enabled"):
        value = getattr(change, key)
        if value is not None:
            base[key] = value
    if change.thresholds:
        base["thresholds"] = {**base["thresholds"], **change.thresholds}


def _select(pattern: str, rule_ids: list[str]) -> list[str]:
    return [r for r in rule_ids if fnmatch.fnmatchcase(r, pattern)] if pattern.endswith("*") else (
        [pattern] if pattern in rule_ids else [])


@dataclass(frozen=True)
class Pack:
    spec: PackSpec
    path: Path
    digest: str
    # Classifiers rules may name: the built-in ones and the pack's models.
    classifiers: dict[str, Classify]

    @property
    def version(self) -> str:
        return f"{self.spec.pack}@{self.spec.version}#{self.digest[:12]}"

    def profile(self, name: str, tenant_id: str) -> Profile:
        spec = self.spec
        ids = [r.id for r in spec.rules]
        chosen: list[str] = []
        profile = spec.profiles[name]
        tenant = spec.tenants.get(tenant_id, TenantSpec())
        for pattern in [*profile.rules, *tenant.add]:
            chosen += [r for r in _select(pattern, ids) if r not in chosen]
        settings: dict[str, dict[str, Any]] = {
            r.id: {"action": r.action, "severity": r.severity, "enabled": True, "thresholds": {}}
            for r in spec.rules}
        for overrides in (profile.overrides, tenant.overrides):
            for rule_id, change in overrides.items():
                _apply(settings[rule_id], change)
        rules = []
        by_id = {r.id: r for r in spec.rules}
        for rule_id in chosen:
            s, spec_rule = settings[rule_id], by_id[rule_id]
            if not s["enabled"]:
                continue
            kind, match = _matcher(spec_rule, self.classifiers, s["thresholds"])
            rules.append(Rule(rule_id, spec_rule.description, spec_rule.applies in ("input", "both"),
                              spec_rule.applies in ("output", "both"), ACTIONS[s["action"]],
                              SEVERITIES[s["severity"]], kind, match, frozenset(spec_rule.reads)))
        return Profile(name, self.version, tuple(r for r in rules if r.on_input),
                       tuple(r for r in rules if r.on_output), spec.output.holdback_chars, spec.output.release_chars)


class Policy:
    """Every pack of a folder; hands out a tenant's profile, compiled once."""

    def __init__(self, packs: list[Pack]) -> None:
        self.packs = packs
        self._pack_of_profile = {name: pack for pack in packs for name in pack.spec.profiles}
        self._profiles: dict[tuple[str, str], Profile] = {}

    @property
    def versions(self) -> list[str]:
        return [p.version for p in self.packs]

    @property
    def profile_names(self) -> list[str]:
        return sorted(self._pack_of_profile)

    def profile(self, name: str, tenant_id: str) -> Profile | None:
        pack = self._pack_of_profile.get(name)
        if pack is None:
            return None
        # Tenants without changes of their own share one compiled profile.
        key = (name, tenant_id if tenant_id in pack.spec.tenants else "")
        found = self._profiles.get(key)
        if found is None:
            found = self._profiles[key] = pack.profile(name, key[1])
        return found


# --- loading ---------------------------------------------------------------------------

def _where(raw: Any, loc: tuple[Any, ...]) -> str:
    """Turns a pydantic error location into words: rule 'pii.email' field 'match.detector'."""
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rule_id = None
        try:
            rule_id = raw["rules"][loc[1]].get("id")
        except (KeyError, IndexError, TypeError, AttributeError):
            pass
        who = f"rule {rule_id!r}" if rule_id else f"rule #{loc[1] + 1}"
        rest = [str(p) for p in loc[2:] if not str(p).startswith("function-")]
        return f"{who} field {'.'.join(rest) or '(rule)'!r}"
    if len(loc) >= 2 and loc[0] in ("profiles", "tenants"):
        kind = "profile" if loc[0] == "profiles" else "tenant"
        rest = [str(p) for p in loc[2:]]
        return f"{kind} {loc[1]!r} field {'.'.join(rest) or '(whole)'!r}"
    return f"field {'.'.join(map(str, loc)) or '(file)'!r}"


def _references(spec: PackSpec) -> list[str]:
    """Profiles and tenants may only name rules of their own pack."""
    ids = [r.id for r in spec.rules]
    problems = []
    groups = [(f"profile {n!r}", p.rules, p.overrides) for n, p in spec.profiles.items()]
    groups += [(f"tenant {n!r}", t.add, t.overrides) for n, t in spec.tenants.items()]
    for who, selections, overrides in groups:
        for pattern in selections:
            if not _select(pattern, ids):
                problems.append(f"{who} field 'rules': {pattern!r} names no rule of this pack")
        for rule_id in overrides:
            if rule_id not in ids:
                problems.append(f"{who} field 'overrides': {rule_id!r} is not a rule of this pack")
    return problems


def load_pack(path: Path) -> Pack:
    """One pack file, validated; PolicyError names the file, rule and field."""
    try:
        data = path.read_bytes()
        raw = yaml.safe_load(data)
    except OSError as exc:
        raise PolicyError([f"{path}: cannot read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise PolicyError([f"{path}: not valid YAML: {exc}".replace("\n", " ")]) from None
    if not isinstance(raw, dict):
        raise PolicyError([f"{path}: a pack is a mapping with pack, version, rules and profiles"])
    try:
        spec = PackSpec.model_validate(raw)
    except ValidationError as exc:
        raise PolicyError([f"{path}: {_where(raw, e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
                           for e in exc.errors()]) from None
    problems = _references(spec)
    classifiers, model_problems = _classifiers(spec, path.parent)
    problems += model_problems
    for rule in spec.rules:
        for name in rule.match.classifiers():
            if name not in classifiers:
                problems.append(f"rule {rule.id!r} field 'match.classifier': unknown classifier {name!r} "
                                f"(known: {sorted(classifiers)})")
    for who, overrides in [*((f"profile {n!r}", p.overrides) for n, p in spec.profiles.items()),
                           *((f"tenant {n!r}", t.overrides) for n, t in spec.tenants.items())]:
        for rule_id, change in overrides.items():
            used = next((r.match.classifiers() for r in spec.rules if r.id == rule_id), [])
            for name in change.thresholds or {}:
                if name not in used:
                    problems.append(f"{who} field 'overrides.{rule_id}.thresholds': rule {rule_id!r} "
                                    f"uses no classifier {name!r}")
    if problems:
        raise PolicyError([f"{path}: {p}" for p in problems])
    return Pack(spec, path, hashlib.sha256(data).hexdigest(), classifiers)


def _classifiers(spec: PackSpec, folder: Path) -> tuple[dict[str, Classify], list[str]]:
    """The classifiers a pack's rules may name, and the problems loading its
    models: the heuristics, the shipped injection model (when its artifact
    is there), and each model of the pack's `models`."""
    found: dict[str, Classify] = {name: c.classify for name, c in heuristics.CLASSIFIERS.items()}
    shipped = model.loaded()
    if shipped is not None:
        found[model.NAME] = shipped.classify
    problems: list[str] = []
    for name, spec_model in spec.models.items():
        if name in found:
            problems.append(f"field 'models.{name}': the name is taken by a built-in classifier")
            continue
        try:
            from sluice.safety.onnx_model import OnnxClassifier

            onnx = OnnxClassifier(name, folder / spec_model.path, folder / spec_model.tokenizer,
                                  spec_model.positive_label, spec_model.max_tokens, spec_model.stride,
                                  spec_model.batch, spec_model.threads)
        except ValueError as exc:
            problems.append(f"field 'models.{name}': {exc}")
            continue
        found[name] = onnx.classify
    return found, problems


def load_policy(folder: Path) -> Policy:
    """Every *.yaml / *.yml pack of the folder, or PolicyError listing every problem."""
    files = sorted(p for p in folder.glob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    if not files:
        raise PolicyError([f"{folder}: no policy packs (*.yaml) found"])
    packs, problems = [], []
    for path in files:
        try:
            packs.append(load_pack(path))
        except PolicyError as exc:
            problems += exc.problems
    owner: dict[str, Path] = {}
    for pack in packs:
        for name in pack.spec.profiles:
            if name in owner:
                problems.append(f"{pack.path}: profile {name!r} is also defined in {owner[name]}")
            owner[name] = pack.path
    if problems:
        raise PolicyError(problems)
    return Policy(packs)


def fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """What changes when a pack file is added, removed or edited (cheap to poll)."""
    found = []
    for path in sorted(folder.glob("*")):
        if path.suffix in (".yaml", ".yml"):
            try:
                st = path.stat()
            except OSError:
                continue
            found.append((path.name, st.st_mtime_ns, st.st_size))
    return tuple(found)
