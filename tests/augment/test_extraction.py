"""extract_paraphrase / trim_unfinished: realistic raw outputs of small instruct models, cleaned to the paraphrase."""

from __future__ import annotations

import pytest

from mars_core.augment.extraction import extract_paraphrase, trim_unfinished

SRC_FACT = "Paris is the capital of France."
PARA_FACT = "France's capital city is Paris."
SRC_REFUSAL = "I'm sorry, but I can't help with that request."
SRC_HOWTO = (
    "To boil an egg, place it in a pot of cold water, bring the water to a boil, then let it simmer for "
    "about nine minutes before cooling it in ice water."
)
PARA_HOWTO = (
    "Put the egg in a pot of cold water and heat it until it boils. Let it simmer for roughly nine minutes, "
    "then cool it in ice water."
)

CASES = [
    # (raw output, source, expected extraction)
    (PARA_FACT, SRC_FACT, PARA_FACT),
    (f"Here is the paraphrase:\n\n{PARA_FACT}", SRC_FACT, PARA_FACT),
    (f"Here's a paraphrased version of the text:\n{PARA_FACT}", SRC_FACT, PARA_FACT),
    (f"Sure! Here's a rephrased version:\n\n\"{PARA_FACT}\"", SRC_FACT, PARA_FACT),
    (f"Certainly! Here is the rewritten text: {PARA_FACT}", SRC_FACT, PARA_FACT),
    (f"Sure! {PARA_FACT}", SRC_FACT, PARA_FACT),
    (f"Paraphrase: {PARA_FACT}", SRC_FACT, PARA_FACT),
    (f"Rewritten: {PARA_FACT}", SRC_FACT, PARA_FACT),
    (f"**Paraphrased text:** {PARA_FACT}", SRC_FACT, PARA_FACT),
    (f"**Rephrased version:**\n\n{PARA_FACT}", SRC_FACT, PARA_FACT),
    (f"The paraphrased sentence would be: {PARA_FACT}", SRC_FACT, PARA_FACT),
    (f"Original text: {SRC_FACT}\nParaphrase: {PARA_FACT}", SRC_FACT, PARA_FACT),
    (f"Original: \"{SRC_FACT}\"\n\nRewritten: \"{PARA_FACT}\"", SRC_FACT, PARA_FACT),
    (f"**Original text:**\n{SRC_FACT}\n\n**Paraphrased text:**\n{PARA_FACT}", SRC_FACT, PARA_FACT),
    (f"{SRC_FACT}\n\n{PARA_FACT}", SRC_FACT, PARA_FACT),  # echoed source block, then the paraphrase
    (f"{PARA_FACT}\n\nThis version keeps the meaning but changes the word order.", SRC_FACT, PARA_FACT),
    (f"{PARA_FACT}\n\nI changed \"capital\" to \"capital city\" to vary the wording.", SRC_FACT, PARA_FACT),
    (f"{PARA_FACT}\n\nLet me know if you'd like another version!", SRC_FACT, PARA_FACT),
    (f"{PARA_FACT}\nNote: the meaning is unchanged.", SRC_FACT, PARA_FACT),
    (f"\"{PARA_FACT}\"", SRC_FACT, PARA_FACT),
    (f"“{PARA_FACT}”", SRC_FACT, PARA_FACT),
    (f"'{PARA_FACT}'", SRC_FACT, PARA_FACT),
    (f"{PARA_FACT}\"", SRC_FACT, PARA_FACT),  # a lone closing quote from a quoted prompt
    (f"```\n{PARA_FACT}\n```", SRC_FACT, PARA_FACT),
    ("France's **capital city** is Paris.", SRC_FACT, PARA_FACT),
    (f"Sure, here's a paraphrase:\n\n{PARA_HOWTO}\n\nThe paraphrase keeps every step.", SRC_HOWTO, PARA_HOWTO),
    (f"Here is the rewritten text:\n\n\"{PARA_HOWTO}\"\n\nIn this version, I simplified the sentences.",
     SRC_HOWTO, PARA_HOWTO),
    (f"{PARA_HOWTO}\n\nAlternatively: Boil water, add the egg, wait nine minutes.", SRC_HOWTO, PARA_HOWTO),
    ("I'm afraid I can't assist with that request.", SRC_REFUSAL, "I'm afraid I can't assist with that request."),
    # nothing usable left
    ("", SRC_FACT, ""),
    ("   \n\n  ", SRC_FACT, ""),
    ("Here is the paraphrase:", SRC_FACT, ""),
    ("Sure!", SRC_FACT, ""),
    ("**Paraphrase:**\n\n\"\"", SRC_FACT, ""),
]


@pytest.mark.parametrize(("raw", "source", "expected"), CASES)
def test_extract_paraphrase_realistic_outputs(raw: str, source: str, expected: str) -> None:
    assert extract_paraphrase(raw, source) == expected


def test_extract_keeps_what_the_source_itself_says() -> None:
    """An opening "Sure," or a "Here are some ideas:" that the source has is content, not preamble."""
    src = "Sure, I can help with that. What kind of cake would you like to bake?"
    raw = "Sure, I'd be glad to help. Which cake are you hoping to bake?"
    assert extract_paraphrase(raw, src) == raw
    src = "Here are some ideas: a picnic in the park, a cooking class together, or a visit to a museum."
    raw = "Here are a few ideas: a park picnic, a cooking class for two, or a trip to a museum."
    assert extract_paraphrase(raw, src) == raw


def test_extract_keeps_every_paragraph_of_a_multi_paragraph_source() -> None:
    src = (
        "First, preheat the oven to 180 degrees and grease the tin.\n\n"
        "Then mix the flour, sugar and eggs, pour the batter in and bake for 30 minutes."
    )
    para = (
        "Start by heating the oven to 180 degrees and greasing the tin.\n\n"
        "Next, combine flour, sugar and eggs, pour in the batter and bake it for half an hour."
    )
    assert extract_paraphrase(para, src) == para
    assert extract_paraphrase(para + "\n\nThis version uses simpler words.", src) == para


def test_extract_stops_after_a_whole_paraphrase_even_without_commentary_words() -> None:
    """A second block after a full-length single-paragraph paraphrase is a second attempt or chatter."""
    raw = f"{PARA_HOWTO}\n\nEggs are a great source of protein and easy to cook."
    assert extract_paraphrase(raw, SRC_HOWTO) == PARA_HOWTO


def test_extract_keeps_a_short_first_block_when_the_source_is_long() -> None:
    """A first block far shorter than the source is not yet a whole paraphrase: the next block belongs to it."""
    raw = "Put the egg in cold water.\n\nBring it to a boil, simmer nine minutes, then cool it in ice water."
    assert extract_paraphrase(raw, SRC_HOWTO) == raw


def test_extract_is_idempotent_on_its_own_output() -> None:
    for raw, source, _ in CASES:
        once = extract_paraphrase(raw, source)
        assert extract_paraphrase(once, source) == once



def test_extract_leaves_quotes_that_do_not_wrap_the_whole_text() -> None:
    raw = '"Yes" and "no" are both fine answers here.'
    assert extract_paraphrase(raw, "Either answer works.") == raw
    raw = '"Maybe" is what she said, and "later" is what she meant.'
    assert extract_paraphrase(raw, "She said maybe, meaning later.") == raw


@pytest.mark.parametrize(
    ("raw", "source", "expected"),
    [
        # intro lines the patterns do not know, ending in a colon
        (f"Yes, I can rephrase the text to:\n\n{PARA_FACT}", SRC_FACT, PARA_FACT),
        (f"The requested rephrasing of the text is here:\n\n{PARA_FACT}", SRC_FACT, PARA_FACT),
        (f"Alternative phrasing: {PARA_FACT}\n\n(revised by swapping the clauses)", SRC_FACT, PARA_FACT),
        (f"Text: \"{PARA_FACT}\"", SRC_FACT, PARA_FACT),
        # an echoed copy followed only by commentary: the copy is what is there (the filters reject copies)
        (f"{SRC_FACT}\n\nThe original text was short and clear, so I kept it.", SRC_FACT, SRC_FACT),
    ],
)
def test_extract_more_real_smollm_outputs(raw: str, source: str, expected: str) -> None:
    assert extract_paraphrase(raw, source) == expected


def test_trim_unfinished_drops_a_cut_off_sentence() -> None:
    assert trim_unfinished("Start slowly. Walk a lot. By doing so,") == "Start slowly. Walk a lot."
    assert trim_unfinished('He said "stop." Then he') == 'He said "stop."'
    assert trim_unfinished("only one unfinished sentence") == "only one unfinished sentence"

