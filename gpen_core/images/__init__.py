"""Images in and out: tensor layout and value ranges (``tensors``), image files (``files``), and opening
only regular files (``regular``: no FIFO, device or broken link is ever read)."""
