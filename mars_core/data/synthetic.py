"""Compatibility names for the built-in demo suites, which now live in three modules:

``suites.py`` (settings, Bradley-Terry labels), ``text_suite.py`` (the text demo; its templates are data in
``text_templates.json``) and ``toy.py`` (the 2-D feature toy). New code imports from those directly.
"""

from mars_core.data.suites import SuiteDraw, SuiteSettings, bradley_terry_labels
from mars_core.data.text_suite import (
    ATTRIBUTES,
    GOLD_DESCRIPTION,
    GOLD_WEIGHTS,
    PROMPT_FAMILIES,
    TEMPLATE_JITTER,
    attribute_reward,
    gold_reward,
    response_attributes,
    template_jitter,
    text_prompts,
    text_suite,
    text_suite_with_info,
)
from mars_core.data.toy import (
    TOY_DECIMALS,
    TOY_PROMPT,
    ToyParaphraser,
    format_toy_vector,
    parse_toy_vector,
    toy_features,
    toy_gold_reward,
    toy_gold_weights,
    toy_suite,
    toy_suite_with_info,
)

__all__ = [
    "ATTRIBUTES", "GOLD_DESCRIPTION", "GOLD_WEIGHTS", "PROMPT_FAMILIES", "TEMPLATE_JITTER", "TOY_DECIMALS",
    "TOY_PROMPT", "SuiteDraw", "SuiteSettings", "ToyParaphraser", "attribute_reward", "bradley_terry_labels",
    "format_toy_vector", "gold_reward", "parse_toy_vector", "response_attributes", "template_jitter",
    "text_prompts", "text_suite", "text_suite_with_info", "toy_features", "toy_gold_reward", "toy_gold_weights",
    "toy_suite", "toy_suite_with_info",
]
