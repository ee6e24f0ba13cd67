// Shows the text a GPEN node returns (ui.text) on the node itself, as the core PreviewAny node does.
import { app } from "../../scripts/app.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

const TEXT_NODES = new Set(["GPENVRAMReport", "GPENBenchmark"]);

app.registerExtension({
    name: "ComfyUI-GPEN.ShowText",
    async beforeRegisterNodeDef(nodeType, nodeData) {
        if (!TEXT_NODES.has(nodeData.name)) return;
        const onExecuted = nodeType.prototype.onExecuted;
        nodeType.prototype.onExecuted = function (message) {
            onExecuted?.apply(this, arguments);
            const text = (message?.text ?? []).join("\n");
            let widget = this.widgets?.find((w) => w.name === "gpen_text");
            if (!widget) {
                widget = ComfyWidgets["STRING"](this, "gpen_text", ["STRING", { multiline: true }], app).widget;
                widget.inputEl.readOnly = true;
                widget.inputEl.style.fontFamily = "monospace";
                widget.serialize = false;
            }
            widget.value = text;
            this.setSize([Math.max(this.size[0], 520), this.computeSize()[1]]);
        };
    },
});
