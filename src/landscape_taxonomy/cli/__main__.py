"""`python -m landscape_taxonomy.cli ...`: the console script without its installed wrapper."""

from .app import app

if __name__ == "__main__":
    app()
