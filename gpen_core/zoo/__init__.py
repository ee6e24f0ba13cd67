"""The model zoo: every network this package loads, what its files are, where they live (:mod:`.registry`)."""
