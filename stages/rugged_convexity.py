"""Stage rugged-convexity: the one-dimensional model (ours; rugged.py says why). DVC runs:

    python stages/rugged_convexity.py --params params.yaml --out-dir reports/rugged

It reads only the `rugged:` section of params.yaml and writes metrics.csv, phases.csv,
summary.json and figures/ there.
"""
import typer

from landscape_taxonomy.cli.rugged import rugged_command

if __name__ == "__main__":
    typer.run(rugged_command)
