"""Stage check-params, the pipeline's first. DVC runs:

    python stages/check_params.py params.yaml --stamp reports/params.ok

It depends on the whole params.yaml, so any edit reruns it (an unknown key, which no other
stage declares, included); the other stages depend on its stamp, so a bad file stops
`dvc repro` and `dvc exp run` before any of them touches its outputs. The stamp's bytes
never change, so a good edit reruns only the stages whose own params changed.
"""
import typer

from landscape_taxonomy.cli.check_params import check_params_command

if __name__ == "__main__":
    typer.run(check_params_command)
