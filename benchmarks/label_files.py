"""How long the official-layout readers take to parse their label files (no images).

    python benchmarks/label_files.py [--rows 300000] [--repeats 3] [--out PATH]

Writes, in a temporary folder, an AffectNet ``training.csv`` of ``--rows`` rows (the official
columns with 68 quoted landmarks per row, as in the real file) and label files of the real
sizes of RAF-DB basic (15,339 lines), ExpW (91,793) and FER+ (35,887), then times each
reader (best of ``--repeats``). AffectNet is also read at a quarter and a half of the rows,
so the seconds per row show the reader is linear in its size. Prints the results and writes
JSON (default ``benchmarks/results/label_files.json``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from emotion_lightning.data.affectnet import read_affectnet_list
from emotion_lightning.data.expw import read_expw_labels
from emotion_lightning.data.ferplus import VOTE_COLUMNS, read_ferplus_votes
from emotion_lightning.data.rafdb import read_rafdb_labels
from emotion_lightning.records import write_json
from emotion_lightning.runtime import machine_record

REPO = Path(__file__).resolve().parents[1]
RAFDB_LINES, EXPW_LINES, FERPLUS_ROWS = 15_339, 91_793, 35_887
AFFECTNET_HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,"
                    "facial_landmarks,expression,valence,arousal")


def write_affectnet_list(path: Path, rows: int, rng: np.random.Generator) -> None:
    """``rows`` AffectNet rows: 64 distinct landmark strings reused (writing stays fast)."""
    landmarks = [";".join(f"{v:.2f}" for v in rng.uniform(0, 400, 136)) for _ in range(64)]
    expression = rng.integers(0, 11, rows)
    with path.open("w") as f:
        f.write(AFFECTNET_HEADER + "\n")
        for i in range(rows):
            f.write(f'{i % 1000}/{i:040x}.jpg,{i % 97},{i % 89},{200 + i % 50},{210 + i % 40},'
                    f'"{landmarks[i % 64]}",{expression[i]},{(i % 200 - 100) / 100:.4f},'
                    f'{(i % 180 - 90) / 100:.4f}\n')


def write_small_lists(folder: Path, rng: np.random.Generator) -> dict[str, Path]:
    rafdb = folder / "list_patition_label.txt"
    rafdb.write_text("".join(f"{'train' if i < 12_271 else 'test'}_{i:05d}.jpg "
                             f"{rng.integers(1, 8)}\n" for i in range(RAFDB_LINES)))
    expw = folder / "label.lst"
    expw.write_text("".join(f"photo_{i // 2}.jpg {i % 2} 30 40 140 150 {rng.uniform(20, 90):.6f} "
                            f"{rng.integers(0, 7)}\n" for i in range(EXPW_LINES)))
    ferplus = folder / "fer2013new.csv"
    usages = ["Training"] * 28_709 + ["PublicTest"] * 3_589 + ["PrivateTest"] * 3_589
    ferplus.write_text("Usage,Image name," + ",".join(VOTE_COLUMNS) + "\n" + "".join(
        f"{u},fer{i:07d}.png," + ",".join(map(str, rng.multinomial(10, [0.1] * 10))) + "\n"
        for i, u in enumerate(usages)))
    return {"rafdb": rafdb, "expw": expw, "ferplus": ferplus}


def best_seconds(read: Callable[[Path], object], path: Path, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        read(path)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "label_files.json")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    result: dict = {"affectnet": {}, **machine_record()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for rows in (args.rows // 4, args.rows // 2, args.rows):
            path = folder / f"training_{rows}.csv"
            write_affectnet_list(path, rows, rng)
            seconds = best_seconds(read_affectnet_list, path, args.repeats)
            result["affectnet"][str(rows)] = {
                "rows": rows, "megabytes": round(path.stat().st_size / 2**20, 1),
                "seconds": round(seconds, 3), "us_per_row": round(1e6 * seconds / rows, 2)}
            path.unlink()
        readers = {"rafdb": read_rafdb_labels, "expw": read_expw_labels,
                   "ferplus": read_ferplus_votes}
        for name, path in write_small_lists(folder, rng).items():
            seconds = best_seconds(readers[name], path, args.repeats)
            lines = sum(1 for _ in path.open())
            result[name] = {"lines": lines, "seconds": round(seconds, 3),
                            "us_per_line": round(1e6 * seconds / lines, 2)}
    print(json.dumps(result, indent=2))
    write_json(result, args.out)


if __name__ == "__main__":
    main()
