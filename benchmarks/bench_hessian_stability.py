"""How many training points the Hessian needs on the default data.

    python benchmarks/bench_hessian_stability.py [--repeats 5]

For trained default-grid models, the top eigenvalue and trace are estimated on `repeats`
independent random samples of each size (and on the whole set, where only the random
vectors vary). The coefficient of variation (std / mean) across samples shows how far one
estimate can be trusted; PyHessian's issue 5 reports tenfold swings on small batches.
"""

from __future__ import annotations

import argparse

from common import digits_train, machine, trained_model

from landscape_taxonomy.metrics.cell import hessian_of


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(machine())
    x, y = digits_train()
    print("| model | samples | top eig mean | top CV | trace mean | trace CV |")
    print("|---|---|---|---|---|---|")
    for width, bs in ((2, 256), (8, 64)):
        model = trained_model(width, 0, x, y, epochs=20, batch_size=bs)
        # sizes under the training set's, then all of it
        for samples in [*(k for k in (50, 200, 500, 1000) if k < len(y)), "all"]:
            h = hessian_of(model, x, y, samples=samples, max_iter=100, tol=1e-3,
                           repeats=args.repeats, chunk=1000, seed=0)
            n = len(y) if samples == "all" else samples
            print(f"| cnn w{width} b{bs} | {n} | {h['top']:.3g} | "
                  f"{h['top_repeat_std'] / abs(h['top']):.1%} | {h['trace']:.4g} | "
                  f"{h['trace_repeat_std'] / abs(h['trace']):.1%} |", flush=True)


if __name__ == "__main__":
    main()
