"""One source per option list: every choice list of the command line is a constant of the core."""
from __future__ import annotations

import argparse

from gpen_core.arch.config import INPUT_RANGES
from gpen_core.arch.graphs import COMPILE_MODES
from gpen_core.face.detection.selection import FACE_ORDERS, ORDER_ALIASES
from gpen_core.face.finish import COLOR_SPACES
from gpen_core.face.masks import MASK_MODE_NAMES
from gpen_core.face.parsing.precision import PARSER_PRECISIONS
from gpen_core.runtime.precision import DTYPES, PRECISIONS
from gpen_core.tools.cli import build_parser
from gpen_core.tools.gpu_report import SIZES

CORE_LISTS = {
    ("enhance", "mask"): MASK_MODE_NAMES,
    ("enhance", "color_match"): COLOR_SPACES,
    ("enhance", "parser_precision"): PARSER_PRECISIONS,
    ("enhance", "selection"): (*FACE_ORDERS, *ORDER_ALIASES),
    ("enhance", "precision"): PRECISIONS,
    ("enhance", "compile"): COMPILE_MODES,
    ("enhance", "input_range"): tuple(INPUT_RANGES),
    ("bench", "precisions"): tuple(DTYPES),
    ("bench", "masks"): MASK_MODE_NAMES,
    ("gpu-check", "sizes"): SIZES,
    ("gpu-check", "timing_sizes"): SIZES,
}
"""(subcommand, option) -> the core's constant it must list, in order."""


def choice_lists() -> dict[tuple[str, str], tuple]:
    parser = build_parser()
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                for option in sub._actions:
                    if option.choices is not None:
                        found[(command, option.dest)] = tuple(option.choices)
    return found


def test_every_choice_list_is_a_core_constant():
    found = choice_lists()
    unknown = sorted(set(found) - set(CORE_LISTS))
    assert not unknown, f"choice lists without a core constant in CORE_LISTS: {unknown}"
    for key, choices in found.items():
        assert choices == tuple(CORE_LISTS[key]), f"{key}: {choices} is not the core's {CORE_LISTS[key]}"
    assert set(CORE_LISTS) <= set(found), f"options gone: {sorted(set(CORE_LISTS) - set(found))}"


def test_the_mask_help_names_every_mode():
    enhance = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["enhance"]
    mask = next(a for a in enhance._actions if a.dest == "mask")
    assert all(f"{mode}:" in mask.help for mode in MASK_MODE_NAMES)
