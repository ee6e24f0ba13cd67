"""The GPEN network: hyper-parameters, tensor ops, parameter layout, decoder levels, generator and tiling."""
