"""The model zoo: every network this package loads and what its files are (:mod:`.registry`), their check
(:mod:`.verify`), one downloader (:mod:`.download`) and the resolver from a name to a file (:mod:`.locate`); the
table of the official files is :mod:`gpen_core.official_files`."""
