"""The stages, one module each, from their inputs on disk to their outputs on disk:

    check_params.py  check-params: what can fail before any work (pre-flight)
    prepare.py       prepare-noisy-data -> data/prepared
    train.py         train-grid -> models/ (its driver and the worker that trains a cell)
    metrics.py       compute-metrics -> reports/metrics.csv (driver and worker)

keys.py derives each cell's key, running.py fans cells out to the executor, checks.py holds
the checks a grid must pass before training or measuring. The report stages (classify,
findings, plot) read tables only: report/stages.py.
"""
