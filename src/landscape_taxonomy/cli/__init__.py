"""The `landscape-taxonomy` console script (app.py) and its commands, grouped by what they
work on.
"""
