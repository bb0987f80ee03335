"""Stage plot. DVC runs:

    python stages/plot.py --metrics reports/metrics.csv --phases reports/phases.csv \
        --curves reports/curves.csv --density reports/density.csv \
        --findings reports/findings_detail.json --summary reports/summary.json \
        --out reports/figures
"""
import typer

from landscape_taxonomy.cli.report import plot_command

if __name__ == "__main__":
    typer.run(plot_command)
