"""Stage compute-metrics. DVC runs:

    python stages/compute_metrics.py --params params.yaml --data data/prepared --models models \
        --out reports/metrics.csv --curves reports/curves.csv --cells reports/cells \
        --density reports/density.csv
"""
import typer

from landscape_taxonomy.cli.compute import metrics_command

if __name__ == "__main__":
    typer.run(metrics_command)
