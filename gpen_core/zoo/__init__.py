"""Official weights: the table of official files (:mod:`gpen_core.official_files`), their check (:mod:`.verify`), one
downloader (:mod:`.download`) and the resolver from a name to a file (:mod:`.locate`)."""
