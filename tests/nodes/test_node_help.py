"""Help where users look: every node has its help page ``web/docs/<node id>.md`` (what ComfyUI's node help panel
shows for a custom node), and a tooltip on every input and output. Against the stand-ins (``comfy_stubs``)."""
from __future__ import annotations

import asyncio
import re

import comfy_stubs
import pytest

from helpers import REPO_ROOT, forget_pack, import_pack

PACK = "gpen_pack_node_help"
DOCS_DIR = REPO_ROOT / "web" / "docs"
SECTIONS = ("## Inputs", "## Outputs", "## Typical use", "## Memory")
"""The sections every help page has, in this order."""


@pytest.fixture(scope="module")
def schemas(tmp_path_factory):
    """Every node's schema, the pack imported as ComfyUI imports it."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        comfy_stubs.install(monkeypatch, tmp_path_factory.mktemp("help") / "models")
        forget_pack(PACK)
        try:
            pack = import_pack(PACK)
            nodes = asyncio.run(asyncio.run(pack.comfy_entrypoint()).get_node_list())
            yield [node.define_schema() for node in nodes]
        finally:
            forget_pack(PACK)


def output_name(output) -> str:
    return output.display_name or output.id


def listed_names(page: str, section: str) -> list[str]:
    """The names the list under ``section`` describes, in order (items ``- `name`: what it is``)."""
    body = page.split(section, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^- `([^`]+)`: ", body, flags=re.MULTILINE)


def test_every_input_and_output_has_a_tooltip(schemas):
    missing = []
    for schema in schemas:
        missing += [f"{schema.node_id} input {i.id}" for i in schema.inputs if not (i.tooltip or "").strip()]
        missing += [f"{schema.node_id} output {output_name(o)}" for o in schema.outputs
                    if not (o.tooltip or "").strip()]
    assert missing == []


def test_every_node_has_its_help_page(schemas):
    ids = sorted(schema.node_id for schema in schemas)
    assert sorted(p.stem for p in DOCS_DIR.glob("*.md")) == ids, "one web/docs/<node id>.md per node, no other"
    for schema in schemas:
        page = (DOCS_DIR / f"{schema.node_id}.md").read_text(encoding="utf-8")
        assert page.startswith(f"# {schema.display_name}\n"), f"{schema.node_id}: title"
        positions = [page.find(f"\n{s}\n") for s in SECTIONS]
        assert -1 not in positions and positions == sorted(positions), f"{schema.node_id}: sections {SECTIONS}"
        assert listed_names(page, "## Inputs") == [i.id for i in schema.inputs], f"{schema.node_id}: inputs list"
        assert listed_names(page, "## Outputs") == [output_name(o) for o in schema.outputs], \
            f"{schema.node_id}: outputs list"

