"""Write the benchmark data of issue 10 (BENCHMARKS 10): moving-digit videos and procedural volumes.

    python benchmarks/make_video_volume_data.py bench-out/data10

- OUT/moving-digits/{train,test}/DIGIT/*.mp4: 60 train and 20 test clips per digit (600 / 200), 32
  frames of 32 x 32, H.264 via PyAV; one sklearn digit moving right, left, up, down, zooming in or out
  (the motion drawn at random); the label is the digit: "what moves".
- OUT/shapes/{train,test}/SHAPE/*.npy: 60 train and 30 test volumes per shape (ellipsoid, tube, blob;
  180 / 90), 32³, random pose, size and scanner-like intensity scale, noisy background.
Seeded: the same command writes the same files.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from selfsup.data.synthetic import make_moving_digits, make_procedural_volumes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    args = parser.parse_args()
    out = Path(args.out)
    t0 = time.perf_counter()
    make_moving_digits(out / "moving-digits", per_class=60, test_per_class=20, frames=32, size=32, label="digit", seed=0)
    t1 = time.perf_counter()
    make_procedural_volumes(out / "shapes", per_class=60, test_per_class=30, size=32, seed=0)
    print(f"videos {t1 - t0:.0f} s, volumes {time.perf_counter() - t1:.0f} s -> {out}")


if __name__ == "__main__":
    main()
