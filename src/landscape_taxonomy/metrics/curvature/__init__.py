"""The loss landscape's curvature: Hessian-vector products (hessian.py, second_order.py
with layer_rules.py, ggn.py), the estimators on top of them (power iteration, Hutchinson's
trace, Lanczos: estimators.py), the eigenvalue density (density.py) and BatchNorm folding
(fold.py).
"""
