"""Stage findings. DVC runs:

    python stages/findings.py reports/metrics.csv --phases reports/phases.csv \
        --summary reports/summary.json --out reports/findings.json \
        --detail reports/findings_detail.json
"""
import typer

from landscape_taxonomy.cli.report import findings_command

if __name__ == "__main__":
    typer.run(findings_command)
