"""Running GPEN on a device: precision, memory counting, strategy and out-of-memory ladder, memory report."""
