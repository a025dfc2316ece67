"""The injection model's finding for a text scored in one window is the whole text without the
white space at its ends, computed without per-character work: the same span the general mapping
gives (any text, any white space, any lower-casing that keeps or changes the length)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.safety import model
from sluice.safety.detectors import Text

TEXT = st.text(alphabet=st.sampled_from(list("ab c  dé中İ\u3000\t\n\u00a0\u2028XY!?.-'")), min_size=1, max_size=300)


@settings(max_examples=400, deadline=None)
@given(TEXT)
def test_the_one_window_span_is_the_general_mapping_of_the_whole_text(raw):
    text = Text(raw)
    n = len(model.prepared(text))
    assert model._in_norm(text, 0, n, whole=True) == model._in_norm(text, 0, n)
