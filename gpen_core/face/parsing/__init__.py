"""Face parsing (ParseNet) for the paste mask: network, weights, input preparation, class tables."""

from .compare import MaskDifference, mask_difference
from .face_parser import FaceParser
from .inputs import PARSE_SIZE, parser_input, to_levels
from .load import (
    PARSER_DOWNLOADS,
    ParserWeightsNotFoundError,
    find_parser_weights,
    load_parser,
    load_parser_for_mask,
    parsenet_config_from_state_dict,
    read_parser_state_dict,
    require_parser_weights,
)
from .masks import (
    CLASS_NAMES,
    class_mask,
    facexlib_paste_mask,
    gpen_paste_mask,
    kept_classes,
)
from .network import ParseNet, ParseNetConfig
from .precision import PARSER_PRECISIONS, resolve_parser_dtype
from .resize import cv2_resize_uint8
from .run import parse_classes, parse_paste_masks, parser_peak_bytes
from .seeded import seeded_parse_images, seeded_parsenet_state_dict, state_dict_digest
from .workspace import PadWorkspace

__all__ = [
    "CLASS_NAMES",
    "FaceParser",
    "MaskDifference",
    "PARSER_DOWNLOADS",
    "PARSER_PRECISIONS",
    "PARSE_SIZE",
    "PadWorkspace",
    "ParseNet",
    "ParseNetConfig",
    "ParserWeightsNotFoundError",
    "class_mask",
    "cv2_resize_uint8",
    "facexlib_paste_mask",
    "find_parser_weights",
    "gpen_paste_mask",
    "kept_classes",
    "load_parser",
    "load_parser_for_mask",
    "mask_difference",
    "parse_classes",
    "parse_paste_masks",
    "parsenet_config_from_state_dict",
    "parser_input",
    "parser_peak_bytes",
    "read_parser_state_dict",
    "require_parser_weights",
    "resolve_parser_dtype",
    "seeded_parse_images",
    "seeded_parsenet_state_dict",
    "state_dict_digest",
    "to_levels",
]
