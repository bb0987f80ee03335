"""The machinery under the grid: its cells and their keys' code hash (grid.py, code_hash.py),
the content-addressed cell store and its gc, atomic writes, the tasks workers run, the
executor that runs them, progress lines and the CPU kernels numbers depend on. Nothing here
decides a number; grid.NO_NUMBERS keeps the store and file handling out of the keys.
"""
