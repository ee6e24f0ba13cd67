"""End to end in a real browser: ComfyUI's own page (headless Chromium) loads the pack's extension, every UI
workflow as a dropped file is loaded, runs it from the page, and shows GPEN VRAM Report / GPEN Benchmark text
on the node.

Runs when ``COMFYUI_DIR`` names a ComfyUI checkout (``COMFYUI_PYTHON`` its interpreter, as for
``test_comfyui_e2e.py``), playwright is importable here and a system Chromium exists (``/usr/bin/chromium``,
Debian's ``chromium`` package, or ``CHROMIUM_PATH``); otherwise it skips. Playwright drives that Chromium:
its own browser download is never used. The server is the one of ``e2e_support.running_comfy`` (seeded
GPEN-BFR-256 weights, MTCNN weights, the inputs the pack copies). Screenshots of every workflow after its run go to
``tests/artifacts/browser/`` (``E2E_ARTIFACTS`` overrides the root): look at them.

Every ``workflows/*.json`` is exercised, including ones added later: it loads with no missing input image (the
pack copied its example inputs into the input folder) and the frontend's missing-models dialog lists exactly the
weights of its ``models`` links that the server lacks. Each node's help panel (the selection toolbox's info
button) shows the node's page ``web/docs/<node id>.md``; screenshots ``help_<node id>.png``. With the weights
moved away, the missing-models dialog is shown and photographed (``missing_models.png``).
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import e2e_support as s

MODEL_SIZE = 256
START_TIMEOUT = 120
RUN_TIMEOUT = 300
PAGE_TIMEOUT_MS = 90_000
TEXT_NODES = ("GPENVRAMReport", "GPENBenchmark")
"""The pack's nodes whose text the page extension shows on the node."""
EXTENSION_NAME = "ComfyUI-GPEN.ShowText"
TEXT_WIDGET = "gpen_text"
UI_FILES = s.ui_workflows()
HELP_PAGES = sorted((s.REPO_ROOT / "web" / "docs").glob("*.md"))
HELP_SECTIONS = ("Inputs", "Outputs", "Typical use", "Memory")
MISSING_MODELS_DIALOG = ".comfy-missing-models"
"""The list of ComfyUI's missing-models dialog (its items: label ``directory / name``, error, buttons)."""
INPUT_LOADERS = {"LoadImage": "image", "LoadVideo": "file"}
"""Core nodes that load a file of the input folder, and the widget naming it."""
VIEWPORT = {"width": 1920, "height": 1080}

APP = "window.comfyAPI.app.app"
"""The frontend's ``app`` object, as extensions see it."""


@dataclass
class PageLog:
    """What the page said: console lines; errors (console errors, uncaught exceptions, failed and 4xx/5xx
    requests to the server); requests to other hosts, which the test blocks (the frontend asks its registry
    about node types and releases: not the pack's doing, and this machine has no network)."""

    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    bad_requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def pack_errors(self, since: int = 0) -> list[str]:
        return [e for e in self.errors[since:] if s.mentions_pack(e)]


# ------------------------------------------------------------------------------------ fixtures
try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
except ImportError:  # the tests that need it skip (see _sync_playwright)
    PlaywrightTimeoutError = TimeoutError  # type: ignore[misc,assignment]


def _sync_playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed here (pip install playwright; no browser download needed)")
    return sync_playwright


@pytest.fixture(scope="module")
def comfy(tmp_path_factory) -> Iterator[s.ComfyServer]:
    found = s.comfyui_from_env()
    if isinstance(found, str):
        pytest.skip(found)
    sync_playwright = _sync_playwright()  # skip before starting a server that nothing would use
    if s.chromium_path() is None:
        pytest.skip("no Chromium: apt-get install chromium (or set CHROMIUM_PATH)")
    del sync_playwright
    with s.running_comfy(tmp_path_factory.mktemp("comfyui-base"), MODEL_SIZE, START_TIMEOUT) as server:
        # A first visit opens the template browser over the canvas; a person who dropped a file has closed it.
        status, body, _ = s.http(f"{server.url}/settings", {"Comfy.TutorialCompleted": True})
        assert status == 200, body
        yield server


@pytest.fixture(scope="module")
def browser(comfy):
    sync_playwright = _sync_playwright()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=s.chromium_path(), headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def page_log() -> PageLog:
    return PageLog()


@pytest.fixture(scope="module")
def page(browser, comfy, page_log):
    """ComfyUI's page, opened once, with every console error and failed request recorded in ``page_log``."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)

    local = comfy.url + "/"

    def route(request_route) -> None:
        if request_route.request.url.startswith(local):
            request_route.continue_()
        else:
            page_log.blocked.append(request_route.request.url)
            request_route.abort()

    def on_console(msg) -> None:
        where = msg.location.get("url", "") if msg.location else ""
        line = f"[{msg.type}] {msg.text} ({where})"
        page_log.console.append(line)
        if msg.type == "error" and not (where in page_log.blocked and msg.text.startswith("Failed to load resource")):
            page_log.errors.append(line)

    def on_response(response) -> None:
        if response.status >= 400:
            page_log.bad_requests.append(f"{response.status} {response.url}")
            page_log.errors.append(f"[http {response.status}] {response.url}")

    def on_request_failed(request) -> None:
        if request.url not in page_log.blocked:
            page_log.errors.append(f"[requestfailed] {request.url} {request.failure}")

    context.route("**/*", route)
    page.on("console", on_console)
    page.on("pageerror", lambda exc: page_log.errors.append(f"[pageerror] {exc}"))
    page.on("requestfailed", on_request_failed)
    page.on("response", on_response)
    page.goto(comfy.url + "/")
    # Ready: the app is up and the node definitions are registered (before that a loaded graph would have
    # nodes of unknown types, which the page queues without a class_type).
    page.wait_for_function("""() => { const app = window.comfyAPI?.app?.app;
        return !!(app && app.graph && app.vueAppReady && window.LiteGraph?.registered_node_types?.GPENEnhance); }""")
    try:
        yield page
    finally:
        if page_log.errors:
            print("console errors and failed requests in the page:\n  " + "\n  ".join(page_log.errors))
        if page_log.blocked:
            print(f"blocked {len(page_log.blocked)} requests to other hosts, e.g. {page_log.blocked[0]}")
        context.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = s.artifacts_dir("browser")
    print(f"screenshots: {folder}")
    return folder


# ------------------------------------------------------------------------------------ page helpers
def load_as_dropped(page, workflow: dict, name: str) -> None:
    """What the page does with a dropped ``.json`` file (``app.handleFile``): ``loadGraphData(json, true, true,
    name)``."""
    page.evaluate(f"async ([wf, name]) => {{ await {APP}.loadGraphData(wf, true, true, name); }}", [workflow, name])


def queue_from_page(page) -> dict:
    """The Queue button: ``app.queuePrompt(0, 1)``. The server's answer to the page's POST /prompt."""
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.rstrip("/").endswith("/prompt"),
                              timeout=PAGE_TIMEOUT_MS) as answer:
        page.evaluate(f"async () => {{ await {APP}.queuePrompt(0, 1); }}")
    response = answer.value
    body = response.text()
    assert response.status == 200, f"the server refused the page's prompt ({response.status}): {body[:4000]}"
    return json.loads(body)


def graph_state(page) -> list[dict[str, Any]]:
    """Every node of the page's graph: id, type, whether its class is registered, widget values, shown text."""
    return page.evaluate(f"""() => {{
        const app = {APP};
        const registered = window.LiteGraph?.registered_node_types ?? {{}};
        return app.graph.nodes.map((n) => {{
            const text = n.widgets?.find((w) => w.name === "{TEXT_WIDGET}");
            const el = text?.element ?? text?.inputEl;
            return {{
                id: n.id, type: n.type, registered: n.type in registered,
                widgets_values: n.serialize().widgets_values ?? null,
                text: text ? text.value : null,
                text_in_dom: el ? (el.isConnected && el.value === text.value) : null,
                text_box: el ? [el.clientWidth, el.clientHeight, el.scrollWidth, el.scrollHeight] : null,
                images: (app.nodeOutputs[String(n.id)]?.images ?? []).length,
            }};
        }});
    }}""")


def wait_for_texts(page, node_ids: list[int]) -> None:
    """Until every one of ``node_ids`` shows non-empty text (websocket 'executed' messages trail /history) and
    the node has grown to show all of it (the extension resizes it over the next few frames)."""
    page.wait_for_function(f"""(ids) => {{
        const app = {APP};
        return ids.every((id) => {{
            const node = app.graph.getNodeById(id);
            const w = node?.widgets?.find((w) => w.name === "{TEXT_WIDGET}");
            return w && typeof w.value === "string" && w.value.length > 0 && !node.gpenFitPending;
        }});
    }}""", arg=node_ids, timeout=30_000)


def history_text(entry: dict, node_id: int | str) -> str:
    text = entry["outputs"].get(str(node_id), {}).get("text")
    assert isinstance(text, list) and text, f"node {node_id}: no text in the history entry: {entry['outputs']}"
    return "\n".join(text)


def check_shown_texts(page, entry: dict, text_nodes: list[int]) -> dict[int, str]:
    """Every text node's on-node widget holds exactly the text the server sent; it is in the page's DOM."""
    wait_for_texts(page, text_nodes)
    shown = {n["id"]: n for n in graph_state(page) if n["id"] in text_nodes}
    for node_id in text_nodes:
        expected = history_text(entry, node_id)
        assert shown[node_id]["text"] == expected, f"node {node_id} shows {shown[node_id]['text']!r}"
        assert shown[node_id]["text_in_dom"], f"node {node_id}: the text widget is not in the page"
        width, height, text_width, text_height = shown[node_id]["text_box"]
        assert height > 0 and text_height <= height + 1 and text_width <= width + 1, \
            f"node {node_id}: the text needs {text_width}x{text_height} px, its box is {width}x{height}"
    return {node_id: shown[node_id]["text"] for node_id in text_nodes}


def run_in_page(page, comfy: s.ComfyServer) -> dict:
    """Queue the page's graph and wait for its history entry; assert that the run succeeded."""
    answer = queue_from_page(page)
    assert answer.get("node_errors") == {}, answer
    entry = comfy.wait_history(answer["prompt_id"], RUN_TIMEOUT)
    assert entry["status"]["status_str"] == "success", s.execution_error(entry)
    assert entry["status"]["completed"]
    return entry


def missing_models_shown(page) -> list[dict[str, str]]:
    """The entries of the missing-models dialog on screen (label and error text), and close it; [] if none."""
    page.wait_for_timeout(300)  # the dialog opens at the end of loadGraphData; one frame to render
    dialog = page.locator(MISSING_MODELS_DIALOG)
    if dialog.count() == 0:
        return []
    shown = page.evaluate(f"""() => [...document.querySelectorAll("{MISSING_MODELS_DIALOG} li")].map((li) => ({{
        label: li.querySelector("span[title]")?.innerText ?? "",
        url: li.querySelector("span[title]")?.title ?? "",
        error: li.querySelector(".p-message")?.innerText ?? "",
        buttons_disabled: [...li.querySelectorAll("button")].every((b) => b.disabled),
    }}))""")
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")
    return shown


def expected_missing(workflow: dict, models_dir: Path) -> list[str]:
    """``directory / name`` of the workflow's model links whose file is not in ``models_dir``, in dialog order."""
    return [f"{m['directory']} / {m['name']}" for m in s.model_entries(workflow)
            if not (models_dir / m["directory"] / m["name"]).is_file()]


def input_files_offered(page, workflow: dict) -> dict[str, bool]:
    """For each file a loader node of the workflow names: whether its widget offers it (the server lists the input
    folder's files as the widget's choices; a missing file is shown but not among them)."""
    return page.evaluate("""([ids, loaders]) => Object.fromEntries(ids.map((id) => {
        const node = window.comfyAPI.app.app.graph.getNodeById(id);
        const widget = node.widgets.find((w) => w.name === loaders[node.type]);
        return [widget.value, (widget.options?.values ?? []).includes(widget.value)];
    }))""", [[n["id"] for n in workflow["nodes"] if n["type"] in INPUT_LOADERS], INPUT_LOADERS])


def new_blank_workflow(page) -> None:
    page.evaluate(f"async () => {{ await {APP}.extensionManager.command.execute('Comfy.NewBlankWorkflow'); }}")


def add_node(page, node_type: str, pos: tuple[int, int]) -> int:
    """Add a node of ``node_type`` at ``pos`` in a view at scale 1 with the origin at the canvas's top left corner,
    and select it with a click on its title, as a person does (the selection toolbox then shows above it): its id.

    The click point is read from the canvas's transform and position just before each click; the page may still
    be settling (a closing side panel resizes the canvas), so a click that selected nothing is repeated, 3 at most.
    """
    node_id = page.evaluate(f"""([type, pos]) => {{
        const app = {APP};
        app.canvas.ds.scale = 1;
        app.canvas.ds.offset = [0, 0];
        const node = window.LiteGraph.createNode(type);
        node.pos = pos;
        app.graph.add(node);
        app.graph.setDirtyCanvas(true, true);
        return node.id;
    }}""", [node_type, list(pos)])
    for _ in range(3):
        x, y = page.evaluate(f"""(id) => {{
            const app = {APP};
            const node = app.graph.getNodeById(id);
            const rect = app.canvas.canvas.getBoundingClientRect();
            const [x, y] = app.canvas.ds.convertCanvasToOffset([node.pos[0] + 60, node.pos[1] - 15]);
            return [rect.left + x, rect.top + y];  // a point of the title bar, which sits above pos
        }}""", node_id)
        page.mouse.click(x, y)
        try:
            page.wait_for_function(f"""(id) => !!{APP}.canvas.selected_nodes?.[id]
                && !!document.querySelector('[data-testid="info-button"]')""", arg=node_id, timeout=3000)
            return node_id
        except PlaywrightTimeoutError:
            page.wait_for_timeout(500)
    raise AssertionError(f"three clicks on the title of {node_type} at ({x:.0f}, {y:.0f}) did not select it")


def help_panel_text(page) -> tuple[str, str]:
    """Click the selection toolbox's info button (as a person does); (header, rendered page text) of the help
    panel once the page is rendered. A node without a page would show the fallback (description and tables)."""
    page.locator('[data-testid="info-button"]').click()
    content = page.locator(".node-help-content .markdown-content")
    content.wait_for(state="visible")
    page.wait_for_function("""() => {
        const el = document.querySelector(".node-help-content .markdown-content");
        return el && el.innerText.trim().length > 0;
    }""")
    header = page.locator(".node-help-content").locator("xpath=..").locator("span.font-semibold").first.inner_text()
    return header, content.inner_text()


# ------------------------------------------------------------------------------------ tests
def test_mentions_pack():
    assert s.mentions_pack("Error loading extension /extensions/ComfyUI-GPEN/js/gpen_report.js")
    assert s.mentions_pack("GPENVRAMReport: widget")
    assert not s.mentions_pack("Failed to load resource: favicon.ico")


def test_extension_has_no_relative_imports():
    """The extension reads ``window.comfyAPI``: relative imports of the frontend's shims depend on the folder
    depth the server mounts it at (the bug this file once had: ``../../scripts/app.js`` from ``web/js/``)."""
    for path in sorted((s.REPO_ROOT / "web").rglob("*.js")):
        lines = [line for line in path.read_text(encoding="utf-8").splitlines()
                 if line.lstrip().startswith("import ") and "scripts/" in line]
        assert lines == [], f"{path.name}: {lines}"


@pytest.mark.e2e
def test_extension_loads_in_the_page(page, page_log, comfy):
    listed = s.http_json(comfy.url + "/extensions")
    ours = [url for url in listed if url.startswith(f"/extensions/{s.PACK_NAME}/")]
    assert ours == [f"/extensions/{s.PACK_NAME}/js/gpen_report.js"], listed
    names = page.evaluate(f"() => {APP}.extensions.map((e) => e.name)")
    assert EXTENSION_NAME in names, f"{EXTENSION_NAME} not registered; page errors: {page_log.errors}"
    assert page_log.pack_errors() == []
    assert [r for r in page_log.bad_requests if s.mentions_pack(r) or "/scripts/" in r] == []


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_ui_workflow_runs_from_the_page(path, page, page_log, comfy, artifacts):
    workflow = s.load_json(path)
    errors_before = len(page_log.errors)
    load_as_dropped(page, workflow, path.stem)
    shown = missing_models_shown(page)
    assert [m["label"] for m in shown] == expected_missing(workflow, comfy.base / "models"), shown
    offered = input_files_offered(page, workflow)
    assert offered and all(offered.values()), f"input files not in the input folder: {offered}"

    loaded = {n["id"]: n for n in graph_state(page)}
    assert sorted(loaded) == sorted(n["id"] for n in workflow["nodes"]), "the page's graph lost or added nodes"
    unknown = sorted({n["type"] for n in loaded.values() if not n["registered"]})
    assert unknown == [], f"node types the page does not know: {unknown}"
    for node in workflow["nodes"]:  # loaded as written: no widget value shifted or reset
        if node.get("widgets_values") is not None and node["type"] not in s.UI_ONLY_TYPES:
            assert loaded[node["id"]]["widgets_values"] == node["widgets_values"], (node["id"], node["type"])

    entry = run_in_page(page, comfy)

    text_nodes = [n["id"] for n in workflow["nodes"] if n["type"] in TEXT_NODES]
    shown = check_shown_texts(page, entry, text_nodes)
    for node_id, text in shown.items():
        print(f"{path.stem} node {node_id} shows:\n{text}")
    state = {n["id"]: n for n in graph_state(page)}
    for node_id, outputs in entry["outputs"].items():  # the page received every image the run made
        if outputs.get("images"):
            assert state[int(node_id)]["images"] == len(outputs["images"]), f"node {node_id}"

    page.wait_for_timeout(500)  # one more frame: the DOM widgets follow the canvas
    shot = artifacts / f"{path.stem}.png"
    page.screenshot(path=str(shot))
    print(f"screenshot: {shot}")
    assert page_log.pack_errors(errors_before) == []
    named = set(offered)
    assert [r for r in page_log.bad_requests if any(name in r for name in named)] == []


@pytest.mark.e2e
@pytest.mark.parametrize("doc", HELP_PAGES, ids=lambda p: p.stem)
def test_help_panel_shows_the_nodes_page(doc, page, page_log, comfy, artifacts):
    """Select the node on the canvas, click the toolbox's info button: the panel shows web/docs/<node id>.md."""
    node_type = doc.stem
    info = s.http_json(f"{comfy.url}/object_info/{node_type}")[node_type]
    assert info["python_module"] == f"custom_nodes.{s.PACK_NAME}"
    errors_before = len(page_log.errors)
    new_blank_workflow(page)
    add_node(page, node_type, (420, 260))
    header, text = help_panel_text(page)
    assert header == info["display_name"]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines[0] == info["display_name"], lines[:3]  # the page's "# title"
    assert [line for line in lines if line in HELP_SECTIONS] == list(HELP_SECTIONS)
    declared = [*info["input"].get("required", {}), *info["input"].get("optional", {})]
    assert [name for name in declared if name not in text] == []
    assert [name for name in info["output_name"] if name not in text] == []
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts / f"help_{node_type}.png"))
    page.locator('[data-testid="info-button"]').click()  # the same button closes the help again
    page.locator(".node-help-content").wait_for(state="detached")
    # The frontend asks for docs/<node id>/<locale>.md first, then docs/<node id>.md: the first may be a 404.
    locale_page = f"/extensions/{s.PACK_NAME}/docs/{node_type}/"
    assert [e for e in page_log.pack_errors(errors_before) if locale_page not in e] == []


@pytest.mark.e2e
def test_missing_models_dialog_lists_the_weights_a_template_needs(page, comfy, artifacts):
    """With the weights away, loading a face template shows ComfyUI's missing-models dialog with one entry per
    file (``directory / name``). The frontend offers its Download button only for .safetensors files from a few
    hosts: every GPEN entry says so and its buttons are disabled."""
    path = s.WORKFLOWS_DIR / "gpen_face_restore_group.json"
    workflow = s.load_json(path)
    models, away = comfy.base / "models", comfy.base / "weights-away"
    moved = [m for m in s.model_entries(workflow) if (models / m["directory"] / m["name"]).is_file()]
    away.mkdir(exist_ok=True)
    try:
        for m in moved:
            (models / m["directory"] / m["name"]).rename(away / m["name"])
        load_as_dropped(page, workflow, path.stem)
        page.locator(MISSING_MODELS_DIALOG).wait_for(state="visible")
        page.wait_for_timeout(300)
        page.screenshot(path=str(artifacts / "missing_models.png"))
        shown = missing_models_shown(page)
    finally:
        for m in moved:
            (away / m["name"]).rename(models / m["directory"] / m["name"])
    entries = s.model_entries(workflow)
    assert [m["label"] for m in shown] == [f"{e['directory']} / {e['name']}" for e in entries]
    for entry, item in zip(entries, shown, strict=True):
        assert item["url"] == entry["url"]
        assert item["error"].startswith(f"Download not allowed from source '{entry['url']}'"), item
        assert item["buttons_disabled"], item


@pytest.mark.e2e
@pytest.mark.slow
def test_benchmark_node_shows_its_table(page, page_log, comfy, artifacts):
    """A person adds GPEN Benchmark to an empty canvas, sets it small and queues it."""
    errors_before = len(page_log.errors)
    page.evaluate(f"async () => {{ await {APP}.extensionManager.command.execute('Comfy.NewBlankWorkflow'); }}")
    node_id = page.evaluate(f"""() => {{
        const app = {APP};
        const node = window.LiteGraph.createNode("GPENBenchmark");
        node.pos = [80, 80];
        app.graph.add(node);
        const set = (name, value) => {{ node.widgets.find((w) => w.name === name).value = value; }};
        set("size", "256"); set("precisions", "fp32"); set("tile_size", 128); set("repeat", 1);
        set("backward", false);
        const preview = window.LiteGraph.createNode("PreviewImage");
        preview.pos = [80, 520];
        preview.size = [640, 320];
        app.graph.add(preview);
        node.connect(1, preview, 0);
        app.graph.setDirtyCanvas(true, true);
        return node.id;
    }}""")
    entry = run_in_page(page, comfy)
    text = check_shown_texts(page, entry, [node_id])[node_id]
    lines = text.splitlines()
    assert lines[0].startswith("GPEN benchmark on ") and len(lines) >= 3, text
    print(text)
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts / "gpen_benchmark_node.png"))
    assert page_log.pack_errors(errors_before) == []
