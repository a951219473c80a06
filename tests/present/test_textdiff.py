"""Word diffs must reconstruct both texts exactly, whatever they are."""

from hypothesis import given
from hypothesis import strategies as st

from mars_core.present.textdiff import changed_word_fraction, word_diff


def _side(segments, keep):
    return "".join(text for op, text in segments if op in ("equal", keep))


@given(st.text(), st.text())
def test_segments_rebuild_both_texts(a, b):
    segments = word_diff(a, b)
    assert _side(segments, "delete") == a
    assert _side(segments, "insert") == b


def test_changed_words_are_marked():
    segments = word_diff("I cannot help with that.", "I can help with that.")
    assert ("delete", "cannot") in segments and ("insert", "can") in segments
    assert abs(changed_word_fraction("I cannot help with that.", "I can help with that.") - 0.2) < 1e-12
    assert changed_word_fraction("same words here", "same words here") == 0.0
