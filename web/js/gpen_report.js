// Shows the text a GPEN node returns (ui.text) on the node itself, as the core PreviewAny node does.
//
// The ComfyUI frontend (a bundled app since 1.2) puts its modules on `window.comfyAPI`; the files under
// /scripts/ are only shims re-exporting from there. Reading `window.comfyAPI` directly works wherever this
// file is served (ComfyUI serves WEB_DIRECTORY = ./web at /extensions/ComfyUI-GPEN/, so this file is at
// /extensions/ComfyUI-GPEN/js/, where a relative "../../scripts/app.js" would 404) and behind a reverse
// proxy under a sub-path, and it is the form the frontend recommends over importing its legacy shims.
const { app } = window.comfyAPI.app;
const { ComfyWidgets } = window.comfyAPI.widgets;

const WIDGET_NAME = "gpen_text";
// wrap: lines wrap at the node's width (the report: short sentences). Without it, rows stay whole and the
// node widens to show them (the benchmark: a table, whose columns wrapping would break).
const TEXT_NODES = {
    GPENVRAMReport: { wrap: true },
    GPENBenchmark: { wrap: false },
};
const MIN_TEXT_NODE_SIZE = [200, 60]; // below the multiline default (400x200): the templates' layout decides

/** The read-only multiline text widget of `node`, created on first use. */
function textWidget(node, wrap) {
    let widget = node.widgets?.find((w) => w.name === WIDGET_NAME);
    if (!widget) {
        widget = ComfyWidgets["STRING"](node, WIDGET_NAME, ["STRING", { multiline: true }], app).widget;
        widget.serialize = false;
        if (widget.options) widget.options.minNodeSize = MIN_TEXT_NODE_SIZE;
        const element = widget.element ?? widget.inputEl;
        if (element) {
            element.readOnly = true;
            element.style.fontFamily = "monospace";
            element.style.whiteSpace = wrap ? "pre-wrap" : "pre";
            element.style.overflow = "auto";
        }
    }
    return widget;
}

/**
 * Grows `node` until its text widget shows the whole text (no scrolling): taller always, wider only when
 * `widen`. The text area has a size only once the canvas has drawn the node on screen, so this runs from the
 * node's draw hook while `node.gpenFitPending` is set, and stops once nothing is missing.
 */
function fitToText(node, widget, widen) {
    const element = widget.element ?? widget.inputEl;
    // Not laid out at the node's width yet (hidden, or a first frame where it is a few pixels wide): next draw.
    if (!element?.isConnected || element.clientWidth < node.size[0] / 2) return;
    const seen = `${element.clientWidth}x${element.clientHeight}`;
    if (node.gpenFitSeen === seen) return; // the text area has not followed the last resize yet
    const taller = element.scrollHeight - element.clientHeight;
    const wider = widen ? element.scrollWidth - element.clientWidth : 0;
    node.gpenFitTries = (node.gpenFitTries ?? 0) + 1;
    if ((taller > 1 || wider > 1) && node.gpenFitTries <= 8) {
        node.gpenFitSeen = seen;
        node.setSize([node.size[0] + Math.max(0, wider), node.size[1] + Math.max(0, taller)]);
        node.setDirtyCanvas(true, true);
        return; // measured again at a later draw, once the text area has its new size
    }
    node.gpenFitPending = false;
}

app.registerExtension({
    name: "ComfyUI-GPEN.ShowText",
    async beforeRegisterNodeDef(nodeType, nodeData) {
        const options = TEXT_NODES[nodeData.name];
        if (!options) return;

        const onExecuted = nodeType.prototype.onExecuted;
        nodeType.prototype.onExecuted = function (message) {
            onExecuted?.apply(this, arguments);
            const text = message?.text;
            textWidget(this, options.wrap).value = Array.isArray(text) ? text.join("\n") : String(text ?? "");
            this.setSize([this.size[0], Math.max(this.size[1], this.computeSize()[1])]);
            Object.assign(this, { gpenFitPending: true, gpenFitTries: 0, gpenFitSeen: null });
            this.setDirtyCanvas(true, true);
        };

        const onDrawForeground = nodeType.prototype.onDrawForeground;
        nodeType.prototype.onDrawForeground = function () {
            const result = onDrawForeground?.apply(this, arguments);
            const widget = this.gpenFitPending && this.widgets?.find((w) => w.name === WIDGET_NAME);
            if (widget) fitToText(this, widget, !options.wrap);
            return result;
        };
    },
});
