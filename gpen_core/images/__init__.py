"""Images in and out: tensor layout and value ranges (``tensors``), image files (``files``)."""
