"""Fixtures of the node tests."""
from __future__ import annotations

import pytest
from stub_pack import stubbed_pack


@pytest.fixture()
def comfy(monkeypatch, tmp_path):
    """The pack imported as ComfyUI imports it, over stand-ins (:func:`stub_pack.stubbed_pack`)."""
    yield from stubbed_pack(monkeypatch, tmp_path)
