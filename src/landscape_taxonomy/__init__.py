"""Loss-landscape taxonomy (Yang et al., NeurIPS 2021) as a DVC pipeline and a library.

From a notebook:

    from landscape_taxonomy.api import load_cell, hessian, mode_connectivity, cka
"""

__version__ = "0.1.0"
