"""The report: tables in, phases, findings and figures out. Reads tables only (ours or a
published study's) and never imports torch (tests/test_findings.py checks every module).
"""
