"""Helpers for the ComfyUI end-to-end tests (``test_comfyui_e2e.py``, ``test_browser_e2e.py``): HTTP, the
test server's base folder and process, workflow files.

Nothing here imports ComfyUI: the tests talk to a real server over HTTP (and a real browser) only.
Set ``COMFYUI_DIR`` (a ComfyUI checkout) and ``COMFYUI_PYTHON`` (its interpreter) to run them; ``COMFYUI_ARGS``
replaces the default ``--cpu``. ``bash tests/e2e/setup_comfyui.sh COMFYUI_SRC`` builds such a ComfyUI from a
ComfyUI source folder and prints both variables.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from helpers import REPO_ROOT

WORKFLOWS_DIR = REPO_ROOT / "workflows"
API_DIR = WORKFLOWS_DIR / "api"
PACK_NAME = "ComfyUI-GPEN"

UI_ONLY_TYPES = frozenset({"Note", "MarkdownNote"})
"""Frontend-only node types: no server class, left out of the API format."""
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})


def ui_workflows() -> list[Path]:
    """The UI-format workflows the server lists as templates (top level of ``workflows/``)."""
    return sorted(WORKFLOWS_DIR.glob("*.json"))


def api_workflows() -> list[Path]:
    return sorted(API_DIR.glob("*.json"))


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------- HTTP
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str, data: Any = None, timeout: float = 30) -> tuple[int, bytes, str]:
    """GET (or POST ``data`` as JSON): (status, body, content type). HTTP errors are returned, not raised."""
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")


def http_json(url: str, data: Any = None, timeout: float = 30) -> Any:
    status, body, _ = http(url, data, timeout)
    if status != 200:
        raise AssertionError(f"{url} answered {status}: {body[:2000].decode(errors='replace')}")
    return json.loads(body)


# ------------------------------------------------------------------------------------------- server
class ComfyServer:
    """A ComfyUI process started by the test: ``main.py --base-directory BASE`` on 127.0.0.1."""

    def __init__(self, python: str, comfyui_dir: Path, base: Path, port: int, extra_args: list[str]) -> None:
        self.base = base
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = base / "comfyui.log"
        cmd = [python, "main.py", "--listen", "127.0.0.1", "--port", str(port), "--base-directory", str(base),
               "--database-url", "sqlite:///:memory:", *extra_args]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - open while the server runs; closed in stop()
        # the weights are placed by prepare_base: the pack must never fetch official files from the internet here
        env = {**os.environ, "GPEN_NO_DOWNLOAD": "1"}
        self.proc = subprocess.Popen(cmd, cwd=comfyui_dir, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)

    def log_tail(self, chars: int = 6000) -> str:
        self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return text[-chars:]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"ComfyUI exited with code {self.proc.returncode} before answering.\n"
                                     f"--- log tail ({self.log_path}) ---\n{self.log_tail()}")
            try:
                if http(self.url + "/system_stats", timeout=5)[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"ComfyUI did not answer within {timeout:.0f} s.\n"
                             f"--- log tail ({self.log_path}) ---\n{self.log_tail()}")

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        self._log.close()

    def get(self, path: str) -> Any:
        return http_json(self.url + path)

    def run_prompt(self, prompt: dict, timeout: float) -> dict:
        """POST /prompt, then poll /history/<id> until it is there: the history entry."""
        status, body, _ = http(self.url + "/prompt", {"prompt": prompt, "client_id": "gpen-e2e"})
        assert status == 200, f"/prompt refused the workflow ({status}): {body.decode(errors='replace')[:4000]}"
        answer = json.loads(body)
        assert answer.get("node_errors") == {}, answer
        return self.wait_history(answer["prompt_id"], timeout)

    def wait_history(self, prompt_id: str, timeout: float) -> dict:
        """Poll /history/<id> until the prompt is there (finished, either way): its history entry.

        After ``timeout`` seconds the prompt is interrupted and the assertion names it, with the log's tail.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get(f"/history/{urllib.parse.quote(prompt_id)}")
            if prompt_id in history:
                return history[prompt_id]
            assert self.alive(), f"ComfyUI died while running the prompt.\n{self.log_tail()}"
            time.sleep(0.5)
        http(self.url + "/interrupt", {"prompt_id": prompt_id})
        raise AssertionError(f"prompt {prompt_id} not finished after {timeout:.0f} s.\n{self.log_tail()}")


def execution_error(entry: dict) -> str:
    """The execution_error message of a history entry, formatted for an assertion message."""
    for event, data in entry.get("status", {}).get("messages", []):
        if event == "execution_error":
            return (f"node {data.get('node_id')} ({data.get('node_type')}): {data.get('exception_type')}: "
                    f"{data.get('exception_message')}\n" + "".join(data.get("traceback") or []))
    return json.dumps(entry.get("status"), indent=1)[:4000]


# ------------------------------------------------------------------------- the test server's folder
def comfyui_from_env() -> tuple[Path, str, list[str]] | str:
    """(ComfyUI folder, its Python, extra server arguments) from the environment, or why the tests skip."""
    comfyui_dir = os.environ.get("COMFYUI_DIR")
    if not comfyui_dir:
        return "set COMFYUI_DIR to a ComfyUI checkout (and COMFYUI_PYTHON to its interpreter) to run"
    if not (Path(comfyui_dir) / "main.py").is_file():
        return f"COMFYUI_DIR={comfyui_dir} has no main.py"
    python = os.environ.get("COMFYUI_PYTHON") or sys.executable
    return Path(comfyui_dir), python, shlex.split(os.environ.get("COMFYUI_ARGS", "--cpu"))


def model_entries(workflow: dict) -> list[dict]:
    """Every ``models`` entry (name, url, directory) of a UI workflow: its nodes' ``properties.models``, then its
    top-level ``models`` (the order in which the frontend's missing-models dialog lists them)."""
    entries = [m for node in workflow["nodes"] for m in node.get("properties", {}).get("models", [])]
    return entries + list(workflow.get("models", []))


def model_names(prompts: list[dict]) -> set[str]:
    """Weights file names the workflows load: ``model_name`` of every GPEN node."""
    return {node["inputs"]["model_name"] for prompt in prompts for node in prompt.values()
            if node["class_type"].startswith("GPEN") and isinstance(node["inputs"].get("model_name"), str)}


def image_names(prompts: list[dict]) -> set[str]:
    return {node["inputs"]["image"] for prompt in prompts for node in prompt.values()
            if node["class_type"] == "LoadImage"}


def video_names(prompts: list[dict]) -> set[str]:
    return {node["inputs"]["file"] for prompt in prompts for node in prompt.values()
            if node["class_type"] == "LoadVideo"}


def provide_mtcnn_weights(dest: Path) -> None:
    """Copy MTCNN's weights (from this environment's facenet-pytorch) where the detector loader looks.

    Without facenet-pytorch here, the face workflows rely on ComfyUI's environment having it (or
    RetinaFace weights); otherwise they fail with the loader's message saying what to install.
    """
    from gpen_core.face.detection.mtcnn import find_facenet_pytorch_data_dir

    found = find_facenet_pytorch_data_dir()
    if found is None:
        return
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("pnet.pt", "rnet.pt", "onet.pt"):
        shutil.copyfile(found / name, dest / name)


def provide_parser_weights(dest: Path) -> None:
    """A small seeded ParseNet under facexlib's file name: mask 'auto' then runs the parse path (the
    loader reads the layout from the shapes; the official 512 layout costs seconds per face on a CPU)."""
    import torch

    from gpen_core.face.parsing import ParseNetConfig, seeded_parsenet_state_dict

    small = ParseNetConfig(in_size=64, out_size=64, min_feat_size=16, base_ch=4, res_depth=2, ch_range=(4, 8))
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(seeded_parsenet_state_dict(small, base=6, gain=0.9), dest)


def prepare_base(base: Path, model_size: int) -> None:
    """A ``--base-directory`` for the test server: the pack symlinked into custom_nodes/, seeded GPEN weights of
    ``model_size`` (no download; the images are noise, the sizes and plumbing real) under every model name the
    workflows use, MTCNN's weights and a small seeded face parser. The input folder stays empty: the pack
    copies the templates' example inputs there when it loads (``nodes/example_inputs.py``).
    """
    import torch

    import gpen_core as g

    (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
    (base / "custom_nodes" / PACK_NAME).symlink_to(REPO_ROOT, target_is_directory=True)
    prompts = [load_json(p) for p in api_workflows()]
    weights = g.seeded_state_dict(g.GPENConfig(model_size, 1, 0.5), 1)
    for name in sorted(model_names(prompts) | {"GPEN-BFR-512.pth"}):
        (base / "models" / "gpen" / name).parent.mkdir(parents=True, exist_ok=True)
        torch.save(weights, base / "models" / "gpen" / name)
    del weights
    provide_mtcnn_weights(base / "models" / "facedetection" / "mtcnn")
    provide_parser_weights(base / "models" / "facedetection" / "parsing_parsenet.pth")


@contextmanager
def running_comfy(base: Path, model_size: int, start_timeout: float) -> Iterator[ComfyServer]:
    """Prepare ``base`` (see :func:`prepare_base`), start ComfyUI on a free port, stop it on exit.

    Raises ``pytest.skip`` when the environment names no ComfyUI (see :func:`comfyui_from_env`).
    """
    import pytest

    found = comfyui_from_env()
    if isinstance(found, str):
        pytest.skip(found)
    comfyui_dir, python, extra_args = found
    prepare_base(base, model_size)
    server = ComfyServer(python, comfyui_dir, base, free_port(), extra_args)
    try:
        server.wait_ready(start_timeout)
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------------------ UI -> API conversion
def _is_widget(spec: list) -> bool:
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return (isinstance(kind, list) or kind in WIDGET_TYPES) and not options.get("forceInput")


def convert_ui_to_api(workflow: dict, object_info: dict) -> dict:
    """A minimal UI -> API converter (what the frontend's "Export (API)" does) for flat graphs.

    Maps ``widgets_values`` onto the widget inputs in /object_info ``input_order`` (skipping the
    control_after_generate and upload-button values), links onto ``[source id, slot]``. Notes are
    dropped, muted nodes left out. Not handled (raises): bypassed nodes, subgraphs, primitives, reroutes.
    """
    links = {link[0]: link for link in workflow["links"]}
    skipped = {n["id"] for n in workflow["nodes"] if n["type"] in UI_ONLY_TYPES or n.get("mode", 0) == 2}
    api: dict[str, dict] = {}
    for node in workflow["nodes"]:
        if node["id"] in skipped:
            continue
        if node.get("mode", 0) != 0 or node["type"] not in object_info:
            raise NotImplementedError(f"node {node['id']} ({node['type']}, mode {node.get('mode')}): "
                                      "the minimal converter handles only plain server nodes")
        info = object_info[node["type"]]
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        order = info["input_order"].get("required", []) + info["input_order"].get("optional", [])
        inputs: dict[str, Any] = {}
        linked = {}
        for slot in node.get("inputs", []):
            if slot.get("link") is not None:
                _, src, src_slot, *_ = links[slot["link"]]
                if src not in skipped:
                    linked[slot["name"]] = [str(src), src_slot]
        values = list(node.get("widgets_values") or [])
        for name in order:
            spec = specs[name]
            if not _is_widget(spec) or not values:
                continue
            value = values.pop(0)
            if name not in linked:
                inputs[name] = value
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            seed_like = spec[0] == "INT" and name in ("seed", "noise_seed")
            if (options.get("control_after_generate") or seed_like) and values and values[0] in CONTROL_VALUES:
                values.pop(0)
            if any(key.endswith("_upload") and flag for key, flag in options.items()) and values:
                values.pop(0)  # the upload button's value (LoadImage: "image")
        inputs.update(linked)
        title = node.get("title") or info.get("display_name") or node["type"]
        api[str(node["id"])] = {"inputs": inputs, "class_type": node["type"], "_meta": {"title": title}}
    return api


def convert(workflow: dict, object_info: dict) -> tuple[dict, str]:
    """Convert with comfy-cli's converter when it is importable here, else with the minimal one."""
    try:
        from comfy_cli.workflow_to_api import convert_ui_to_api as comfy_cli_convert
    except ImportError:
        return convert_ui_to_api(workflow, object_info), "tests/e2e_support.py"
    return comfy_cli_convert(workflow, object_info), "comfy-cli"


def class_types(api: dict) -> Counter:
    return Counter(node["class_type"] for node in api.values())


def check_ui_structure(workflow: dict) -> list[str]:
    """Problems in a UI-format (schema 0.4) workflow: missing keys, dangling or inconsistent links."""
    problems = [f"missing key {k!r}" for k in ("last_node_id", "last_link_id", "nodes", "links", "version")
                if k not in workflow]
    if problems:
        return problems
    nodes = {}
    for n in workflow["nodes"]:
        missing = [k for k in ("id", "type", "pos", "size", "flags", "order", "mode", "properties") if k not in n]
        if missing:
            problems.append(f"node {n.get('id')}: missing {missing}")
        if n.get("id") in nodes:
            problems.append(f"duplicate node id {n['id']}")
        nodes[n.get("id")] = n
    ids = [n for n in nodes if isinstance(n, int)]
    if ids and workflow["last_node_id"] < max(ids):
        problems.append("last_node_id is below the largest node id")
    link_ids = [link[0] for link in workflow["links"]]
    if len(set(link_ids)) != len(link_ids):
        problems.append("duplicate link ids")
    if link_ids and workflow["last_link_id"] < max(link_ids):
        problems.append("last_link_id is below the largest link id")
    for link_id, src, src_slot, dst, dst_slot, _type in workflow["links"]:
        if src not in nodes or dst not in nodes:
            problems.append(f"link {link_id}: unknown node")
            continue
        outputs = nodes[src].get("outputs") or []
        inputs = nodes[dst].get("inputs") or []
        if src_slot >= len(outputs) or link_id not in (outputs[src_slot].get("links") or []):
            problems.append(f"link {link_id}: not listed on output {src_slot} of node {src}")
        if dst_slot >= len(inputs) or inputs[dst_slot].get("link") != link_id:
            problems.append(f"link {link_id}: not the link of input {dst_slot} of node {dst}")
    for n in nodes.values():
        for slot in n.get("inputs") or []:
            if slot.get("link") is not None and slot["link"] not in link_ids:
                problems.append(f"node {n['id']} input {slot['name']}: unknown link {slot['link']}")
        for slot in n.get("outputs") or []:
            for link_id in slot.get("links") or []:
                if link_id not in link_ids:
                    problems.append(f"node {n['id']} output {slot['name']}: unknown link {link_id}")
    return problems


# -------------------------------------------------------------------------------- expected outputs
def expected_sizes(api: dict, ref: list, input_dir: Path, model_size: int) -> list[tuple[int, int]] | None:
    """(width, height) of each image of the IMAGE at ``ref`` = [node id, slot]; None where not predictable.

    Knows the nodes the shipped workflows use; any other node (e.g. one added later) gives None, and the
    test then only checks that the images are plausible.
    """
    node = api[ref[0]]
    kind, inputs = node["class_type"], node["inputs"]

    def upstream(name: str):
        value = inputs.get(name)
        return expected_sizes(api, value, input_dir, model_size) if isinstance(value, list) else None

    if kind == "LoadImage":
        from PIL import Image

        with Image.open(input_dir / inputs["image"]) as im:
            return [im.size]
    if kind == "ImageCrop":  # same clamping as ComfyUI's ImageCrop
        sizes = upstream("image")
        if sizes is None:
            return None
        out = []
        for w, h in sizes:
            x, y = min(inputs["x"], w - 1), min(inputs["y"], h - 1)
            out.append((min(x + inputs["width"], w) - x, min(y + inputs["height"], h) - y))
        return out
    if kind == "ImageBatch":  # image2 is resized to image1's size
        first, second = upstream("image1"), upstream("image2")
        if first is None or second is None:
            return None
        return first + [first[0]] * len(second)
    if kind == "RepeatImageBatch":
        sizes = upstream("image")
        return None if sizes is None else sizes * inputs["amount"]
    if kind == "GPENVRAMReport" and ref[1] == 0:
        return upstream("passthrough")
    if kind == "GPENEnhance":
        sizes = upstream("image")
        if sizes is None:
            return None
        return sizes if inputs["output_size"] == "input size" else [(model_size, model_size)] * len(sizes)
    if kind == "ImageScaleBy":  # ComfyUI rounds the scaled sides
        sizes = upstream("image")
        scale = inputs["scale_by"]
        return None if sizes is None else [(round(w * scale), round(h * scale)) for w, h in sizes]
    if kind == "MaskToImage":
        return upstream("mask")
    if kind == "GPENFaceRestore" and ref[1] in (0, 3):  # image and paste_mask: the upscaled image's size if
        if isinstance(inputs.get("upscaled_image"), list):  # one is connected, else the photo's times the factor
            return upstream("upscaled_image")
        sizes = upstream("image")
        factor = inputs.get("upscale_factor", 1.0)
        return None if sizes is None else [(round(w * factor), round(h * factor)) for w, h in sizes]
    return None


# ------------------------------------------------------------------------------------------ browser
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
ARTIFACTS_DIR = REPO_ROOT / "tests" / "artifacts"
"""Where the browser test writes its screenshots (ignored by git); ``E2E_ARTIFACTS`` overrides it."""


def chromium_path() -> str | None:
    """A Chromium to drive: ``CHROMIUM_PATH``, else Debian's ``/usr/bin/chromium`` (or a sibling), else None.

    Playwright's own browser download is not used (it cannot be reached from CI): any system Chromium works.
    """
    named = os.environ.get("CHROMIUM_PATH")
    if named:
        return named if Path(named).is_file() else None
    for path in CHROMIUM_PATHS:
        if Path(path).is_file():
            return path
    return shutil.which("chromium")


def artifacts_dir(name: str) -> Path:
    """``tests/artifacts/<name>/`` (or ``$E2E_ARTIFACTS/<name>/``), created."""
    root = Path(os.environ.get("E2E_ARTIFACTS") or ARTIFACTS_DIR)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def mentions_pack(text: str) -> bool:
    """Whether a console line or URL names this pack (its folder, its nodes, its extension)."""
    return "gpen" in text.lower()
