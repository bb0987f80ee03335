"""Training: the data (datasets, label noise, the prepared folder), the models (a registry
and import-path models), the recipe (SGD, schedule, stopping), and the loops that train a
cell's seeds one by one (loop.py) or stacked into one model (batched.py, stacked.py).
"""
