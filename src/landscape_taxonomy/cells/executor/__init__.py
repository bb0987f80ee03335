"""Fan grid cells out to workers: run.py's run_tasks over local processes (local.py) or a
Ray cluster (ray_cluster.py); settings.py checks the executor: section, signals.py stops
the workers on SIGINT/SIGTERM and ties their lifetime to the stage's, guard.py runs one
task and reports its failure.
"""
