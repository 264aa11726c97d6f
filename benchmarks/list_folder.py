"""Seconds to list a large image folder (class subfolders, empty files: listing only, no decode).

    python benchmarks/list_folder.py --files 200000 [--root /tmp/many]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from selfsup.data import open_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--root", default=None)
    args = parser.parse_args()
    root = Path(args.root or tempfile.mkdtemp(prefix="selfsup-list-"))
    root.mkdir(parents=True, exist_ok=True)
    per_class = args.files // args.classes
    if not any(root.iterdir()):
        for c in range(args.classes):
            folder = root / f"class{c:03d}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                (folder / f"{i:07d}.jpg").touch()
    start = time.perf_counter()
    coll = open_source(str(root))["all"]
    seconds = time.perf_counter() - start
    print("| files | classes | listing seconds | files/s |\n|---|---|---|---|")
    print(f"| {len(coll):,} | {coll.num_classes} | {seconds:.2f} | {len(coll) / seconds:,.0f} |")


if __name__ == "__main__":
    main()
