"""Peak memory (RSS) of loading each hostile weights file, at the probe's sizes: a benchmark, not a test.

Writes the files once (``--dir``), then loads each in a fresh Python process of the checkout ``--repo``
under ``/usr/bin/time -f %M`` and prints a table: the file, its size, the peak RSS of the process and how
the load ended. ``--limit-gb N`` caps each process's address space (``RLIMIT_AS``), for runs of code that
would otherwise try to allocate what a file declares (the 13.6 GB network of ``huge_13GB.pth``).

    python tests/weights/rss_hostile.py --repo . --dir /tmp/hostile
    python tests/weights/rss_hostile.py --repo /tmp/old-checkout --dir /tmp/hostile --limit-gb 6
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

GPEN_LOAD = "import gpen_core as g; g.load_model({path!r}, device='cpu')"
PARSER_LOAD = "from gpen_core.face.parsing import load_parser; load_parser({path!r})"
CASES = {
    # name: (maker name in make_hostile, what the huge file declares, loader)
    "valid.pth": ("valid", None, GPEN_LOAD),
    "bomb_2GiB.pth": ("bomb.pth", None, GPEN_LOAD),
    "oversized.pth": ("oversized.pth", None, GPEN_LOAD),
    "deep.pth": ("deep.pth", None, GPEN_LOAD),
    "legacy_huge.pth": ("legacy_huge.pth", None, GPEN_LOAD),
    "expanded.pth": ("expanded.pth", None, GPEN_LOAD),
    "huge_1GB.pth": ("huge.pth", (512, 2, 2), GPEN_LOAD),
    "huge_13GB.pth": ("huge.pth", (256, 2, 8), GPEN_LOAD),
    "parsenet_huge_1GB.pth": ("huge.pth", "parsenet", PARSER_LOAD),
    "bool.pth": ("bool.pth", None, GPEN_LOAD),
    "nan.pth": ("nan.pth", None, GPEN_LOAD),
}


def write_files(folder: Path) -> None:
    sys.path[:0] = [str(REPO), str(REPO / "tests")]
    import torch
    from weights.make_hostile import bomb, hostile_makers, meta_shapes

    import gpen_core as g
    from gpen_core.face.parsing import ParseNet, ParseNetConfig

    folder.mkdir(parents=True, exist_ok=True)
    state = g.seeded_state_dict(g.GPENConfig(64, 2, 0.125), 7)
    for name, (maker, declared, _) in CASES.items():
        path = folder / name
        if path.exists():
            continue
        if maker == "valid":
            torch.save(state, path)
            continue
        if declared == "parsenet":
            shapes = meta_shapes(lambda: ParseNet(ParseNetConfig(base_ch=128, ch_range=(128, 1024))))
        else:
            size, multiplier, narrow = declared or (64, 2, 0.125)
            shapes = meta_shapes(lambda s=size, m=multiplier, n=narrow: g.GPEN(g.GPENConfig(s, m, n)))
        make = bomb(2 << 30) if maker == "bomb.pth" else hostile_makers(shapes)[maker]
        make(path, state)


def measure(repo: Path, path: Path, load: str, limit_gb: float | None) -> tuple[int, str]:
    """Peak RSS in KiB of a fresh process loading ``path``, and the last line it printed."""
    code = f"""
try:
    {load.format(path=str(path))}
    print("loaded")
except BaseException as err:
    print(type(err).__name__ + ": " + " ".join(str(err).split()))
"""

    def cap() -> None:
        if limit_gb:
            limit = int(limit_gb * (1 << 30))
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = {**os.environ, "PYTHONPATH": str(repo)}
    with tempfile.NamedTemporaryFile("r") as peak:
        done = subprocess.run(
            ["/usr/bin/time", "-o", peak.name, "-f", "%M", sys.executable, "-c", code],
            cwd=repo, env=env, capture_output=True, text=True, preexec_fn=cap, check=False,
        )
        kib = int(peak.read().strip().splitlines()[-1])
    lines = (done.stdout + done.stderr).strip().splitlines()
    return kib, (lines[-1] if lines else f"exit {done.returncode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout whose gpen_core loads the files")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "gpen-hostile-files")
    parser.add_argument("--limit-gb", type=float, default=None, help="address-space cap per process (RLIMIT_AS)")
    parser.add_argument("--only", nargs="*", default=list(CASES), help="file names to load (default: all)")
    args = parser.parse_args()
    write_files(args.dir)
    baseline, _ = measure(args.repo.resolve(), Path("-"), "import gpen_core, gpen_core.face.parsing", args.limit_gb)
    print(f"checkout: {args.repo.resolve()}   address-space cap: {args.limit_gb or 'none'} GiB")
    print(f"{'file':24} {'size':>10} {'peak RSS':>10}  result")
    print(f"{'(import only)':24} {'':>10} {baseline / 1024:>7.0f} MB")
    for name in args.only:
        path = args.dir / name
        kib, result = measure(args.repo.resolve(), path, CASES[name][2], args.limit_gb)
        size = path.stat().st_size
        shown = f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.1f} KB"
        print(f"{name:24} {shown:>10} {kib / 1024:>7.0f} MB  {result[:150]}")


if __name__ == "__main__":
    main()
