"""Stage train-grid. DVC runs:

    python stages/train_grid.py --params params.yaml --data data/prepared --out models
"""
import typer

from landscape_taxonomy.cli.compute import train_command

if __name__ == "__main__":
    typer.run(train_command)
