"""PII and secret detectors on a labelled corpus: precision and recall per
detector with floors, unicode tricks, redaction and large inputs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from sluice.safety.detectors import REGISTRY, Detector, Placeholders, detect, redact, register

CORPUS = yaml.safe_load((Path(__file__).parent / "data" / "pii_corpus.yaml").read_text())
FLOOR = {"precision": 0.9, "recall": 0.9}


def _scores() -> dict[str, dict[str, float]]:
    tp, fp, fn = Counter(), Counter(), Counter()
    for case in CORPUS:
        for name, detector in REGISTRY.items():
            expected = Counter(case.get(name, []))
            found = Counter(f.value for f in detector.find(case["text"]))
            tp[name] += sum((expected & found).values())
            fp[name] += sum((found - expected).values())
            fn[name] += sum((expected - found).values())
    return {name: {"precision": tp[name] / max(tp[name] + fp[name], 1),
                   "recall": tp[name] / max(tp[name] + fn[name], 1), "support": tp[name] + fn[name]}
            for name in REGISTRY}


def test_every_detector_meets_its_precision_and_recall_floor():
    scores = _scores()
    report = "\n".join(f"{n:<14} precision {s['precision']:.2f} recall {s['recall']:.2f} (n={s['support']:.0f})"
                       for n, s in scores.items())
    print(report)
    for name, s in scores.items():
        assert s["support"] >= 2, f"{name} has too few labelled examples"
        assert s["precision"] >= FLOOR["precision"] and s["recall"] >= FLOOR["recall"], report


def test_redaction_uses_typed_placeholders_consistent_within_a_request():
    text = "Mail a@example.com, then b@example.com, then a@example.com again; card 4111-1111-1111-1111."
    out = redact(text, detect(text), Placeholders())
    assert out == "Mail [EMAIL_1], then [EMAIL_2], then [EMAIL_1] again; card [PAYMENT_CARD_1]."


def test_unicode_tricks_do_not_hide_values_and_offsets_stay_in_the_original():
    text = "ssn １２３-４５-６７８９ and mail ј\u200bane@еxample.com"  # full-width digits, Cyrillic ј and е
    out = redact(text, detect(text), Placeholders())
    assert out == "ssn [US_SSN_1] and mail [EMAIL_1]"


def test_a_one_megabyte_input_is_scanned_whole():
    filler = "lorem ipsum dolor sit amet " * 40_000
    text = filler + " reach me at late@example.com " + filler
    assert len(text) > 1_000_000
    assert [f.value for f in detect(text, ["email", "payment_card", "us_ssn", "secret"])] == ["late@example.com"]


def test_new_detectors_plug_in_by_name():
    name = "employee_id_test"
    if name not in REGISTRY:
        register(Detector(name, lambda text: [(i, i + 8) for i in range(len(text)) if text.startswith("EMP-", i)]))
    assert [f.value for f in detect("badge EMP-1234 ok", [name])] == ["EMP-1234"]
    with pytest.raises(ValueError):
        register(Detector(name, lambda text: []))
