"""The claims report: verdicts on the document's claims from the runs MLflow recorded.

evidence.py reads and aggregates runs, verdicts.py holds the rules, plots.py draws the figures,
__main__.py writes report.md and report.html (`python -m grubench.report`).
"""
