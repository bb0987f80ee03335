"""Stage classify-phase. DVC runs:

    python stages/classify_phase.py reports/metrics.csv --params params.yaml \
        --out reports/phases.csv --summary reports/summary.json \
        --correlations reports/correlations.csv --thresholds-dir thresholds
"""
import typer

from landscape_taxonomy.cli.report import classify_command

if __name__ == "__main__":
    typer.run(classify_command)
