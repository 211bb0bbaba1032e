"""Write scikit-learn's bundled 8x8 digits (1,797 images, 10 classes) as a `--data` file.

    python examples/residual_crossover/make_data.py [OUT.pt]

The file holds {"inputs": float32 N x 1 x 8 x 8 in [0, 1], "targets": int64 N}. The data ships
inside the scikit-learn package, so nothing is downloaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from sklearn.datasets import load_digits


def main(out: Path) -> None:
    digits = load_digits()
    inputs = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    targets = torch.tensor(digits.target, dtype=torch.int64)
    torch.save({"inputs": inputs, "targets": targets}, out)
    print(f"wrote {out}: {len(targets)} images {tuple(inputs.shape[1:])}, {int(targets.max()) + 1} classes")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("digits.pt"))
