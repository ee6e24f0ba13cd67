"""ComfyUI-GPEN: GPEN face restoration nodes for ComfyUI (see README.md).

ComfyUI imports this package and calls :func:`comfy_entrypoint`. Importing it elsewhere needs
no ComfyUI: the ComfyUI-facing modules are imported only when ComfyUI asks for the nodes.
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    """The ComfyUI v3 extension with every GPEN node."""
    from .nodes.extension import GPENExtension

    return GPENExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
