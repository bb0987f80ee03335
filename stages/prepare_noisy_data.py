"""Stage prepare-noisy-data. DVC runs:

    python stages/prepare_noisy_data.py --params params.yaml --out data/prepared
"""
import typer

from landscape_taxonomy.cli.compute import prepare_command

if __name__ == "__main__":
    typer.run(prepare_command)
